"""``temperature``: the suspect samples its first token at a temperature instead of answering greedily."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


@register("temperature")
@dataclass(frozen=True)
class Temperature(Derivative):
    temperature: float = 0.7

    @property
    def label(self) -> str:
        return f"first token sampled at temperature {self.temperature:g}"

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=ctx.model, backend_args={"temperature": self.temperature, "seed": ctx.seed})
