"""``bnb``: the merged model loaded by bitsandbytes in 8-bit or 4-bit (NF4), as ``from_pretrained`` users load it."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


@register("bnb")
@dataclass(frozen=True)
class BitsAndBytes(Derivative):
    bits: int = 8

    @property
    def label(self) -> str:
        return "bitsandbytes 8-bit loading" if self.bits == 8 else "bitsandbytes 4-bit NF4 loading"

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.robustness.tools import load_bnb

        return Suspect(model=load_bnb(ctx.saved("fingerprinted"), self.bits))
