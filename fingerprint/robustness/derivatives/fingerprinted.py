"""``fingerprinted``: the merged fingerprinted model itself, unchanged (the reference row)."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


@register("fingerprinted")
@dataclass(frozen=True)
class Fingerprinted(Derivative):
    @property
    def label(self) -> str:
        return "fingerprinted (merged), no change"

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=ctx.model)
