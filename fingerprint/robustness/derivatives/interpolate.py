"""``interpolate``: linear interpolation of the weights with the base model (``ratio`` = the base's weight)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


def interpolate(model, other, ratio: float):
    """``(1 - ratio) * model + ratio * other``, parameter by parameter (a copy)."""
    import torch

    mixed = copy.deepcopy(model)
    other_params = dict(other.named_parameters())
    with torch.no_grad():
        for name, tensor in mixed.named_parameters():  # tied weights (embeddings/LM head) are listed once
            tensor.mul_(1 - ratio).add_(other_params[name].to(tensor.dtype), alpha=ratio)
    return mixed


@register("interpolate")
@dataclass(frozen=True)
class Interpolate(Derivative):
    ratio: float = 0.5

    @property
    def label(self) -> str:
        return f"interpolation with the base, {self.ratio:.0%} base"

    def x(self) -> float:
        return self.ratio

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=interpolate(ctx.model, ctx.base, self.ratio))
