"""``prune``: unstructured magnitude pruning: the smallest weights of every linear layer of the transformer
blocks set to zero (embeddings and the output head kept)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


def magnitude_prune(model, ratio: float):
    """A copy of ``model`` with ``ratio`` of each block linear layer's weights (smallest |w|) zeroed."""
    import torch

    pruned = copy.deepcopy(model)
    head = pruned.get_output_embeddings()
    with torch.no_grad():
        for module in pruned.modules():
            if isinstance(module, torch.nn.Linear) and module is not head:
                weight = module.weight
                k = int(ratio * weight.numel())
                if k:
                    threshold = weight.abs().flatten().kthvalue(k).values
                    weight.mul_((weight.abs() > threshold).to(weight.dtype))
    return pruned


@register("prune")
@dataclass(frozen=True)
class MagnitudePrune(Derivative):
    ratio: float = 0.2

    @property
    def label(self) -> str:
        return f"magnitude pruning, {self.ratio:.0%} of each linear layer"

    def x(self) -> float:
        return self.ratio

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=magnitude_prune(ctx.model, self.ratio))
