"""``int8``: torch dynamic int8 quantization of the linear layers (weights and activations, CPU)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


@register("int8")
@dataclass(frozen=True)
class DynamicInt8(Derivative):
    @property
    def label(self) -> str:
        return "torch dynamic int8 (linear layers)"

    def apply(self, ctx: Context) -> Suspect:
        import torch

        return Suspect(model=torch.ao.quantization.quantize_dynamic(copy.deepcopy(ctx.model), {torch.nn.Linear},
                                                                    dtype=torch.qint8))
