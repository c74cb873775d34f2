"""``mergekit``: the fingerprinted model merged by mergekit with the base or an independently fine-tuned sibling.

``share`` is the fingerprinted model's weight (0.5: a 50/50 merge; 0.3: 30/70). TIES and DARE-TIES take the base
as their ``base_model`` and keep half of each task vector (density 0.5), as mergekit's examples do.
"""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register
from fingerprint.robustness.derivatives.sibling import sibling_model

METHODS = ("linear", "slerp", "ties", "dare_ties")


def merge_config(method: str, fingerprinted: str, partner: str, base: str, share: float, with_base: bool) -> dict:
    if method == "linear":
        return {"merge_method": "linear", "dtype": "float32",
                "models": [{"model": fingerprinted, "parameters": {"weight": share}},
                           {"model": partner, "parameters": {"weight": 1 - share}}]}
    if method == "slerp":  # t: how far from the base_model (here the partner) towards the fingerprinted model
        return {"merge_method": "slerp", "dtype": "float32", "base_model": partner,
                "models": [{"model": partner}, {"model": fingerprinted}], "parameters": {"t": share}}
    models = [{"model": fingerprinted, "parameters": {"density": 0.5, "weight": share}}]
    if not with_base:
        models.append({"model": partner, "parameters": {"density": 0.5, "weight": 1 - share}})
    return {"merge_method": method, "dtype": "float32", "base_model": base, "models": models,
            "parameters": {"normalize": True}}


@register("mergekit")
@dataclass(frozen=True)
class Mergekit(Derivative):
    method: str = "ties"
    partner: str = "sibling"  # base or sibling
    share: float = 0.5
    pairs: int = 250  # the sibling's fine-tune

    @property
    def label(self) -> str:
        other = "the base" if self.partner == "base" else "a fine-tuned sibling"
        return f"mergekit {self.method} with {other}, {self.share:.0%} fingerprinted"

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.core.loading import load_model, resolve
        from fingerprint.robustness.tools import mergekit_merge

        fingerprinted, base = str(ctx.saved("fingerprinted")), str(ctx.base_dir())
        partner = base if self.partner == "base" else str(ctx.saved(f"sibling-{self.pairs}",
                                                                   sibling_model(ctx, self.pairs)))
        config = merge_config(self.method, fingerprinted, partner, base, self.share, self.partner == "base")
        out = mergekit_merge(config, ctx.workdir / f"merge-{self.method}-{self.partner}-{self.share:g}", ctx.seed)
        return Suspect(model=load_model(resolve(str(out)), device="cpu"))
