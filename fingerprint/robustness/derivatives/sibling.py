"""``sibling``: interpolation with an independently fine-tuned sibling (the base + its own benign LoRA)."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register
from fingerprint.robustness.derivatives.finetune import lora_finetune
from fingerprint.robustness.derivatives.interpolate import interpolate


def sibling_model(ctx: Context, pairs: int):
    """The base fine-tuned on ``pairs`` benign pairs (seed 1), made once per context."""
    key = ("sibling", pairs)
    if key not in ctx.cache:
        ctx.cache[key] = lora_finetune(ctx.base, ctx.tokenizer, pairs, seed=1)
    return ctx.cache[key]


@register("sibling")
@dataclass(frozen=True)
class Sibling(Derivative):
    pairs: int = 250
    ratio: float = 0.5

    @property
    def label(self) -> str:
        return f"interpolation with a sibling (base + LoRA on {self.pairs} benign pairs), {self.ratio:.0%} sibling"

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=interpolate(ctx.model, sibling_model(ctx, self.pairs), self.ratio))
