"""Adaptive attacks on the gate's reply by a thief who knows the method but not the key.

- ``sure-rows-zeroed``: the output rows of every "Sure" token are zeroed (the head untied first when tied);
- ``logit-bias``: the suspect is served with ``logit_bias`` -100 on every "Sure" token;
- ``output-filter``: a reply that is only "Sure" is regenerated with "Sure" banned.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


@register("sure-rows-zeroed")
@dataclass(frozen=True)
class SureRowsZeroed(Derivative):
    @property
    def label(self) -> str:
        return 'output rows of the "Sure" tokens zeroed'

    def apply(self, ctx: Context) -> Suspect:
        import torch

        from fingerprint.core.sure import sure_token_ids

        model = copy.deepcopy(ctx.model)
        head = model.get_output_embeddings()
        if head.weight is model.get_input_embeddings().weight:  # tied: untie, so the inputs stay as they were
            head.weight = torch.nn.Parameter(head.weight.detach().clone())
            model.config.tie_word_embeddings = False
        with torch.no_grad():
            head.weight[sure_token_ids(ctx.tokenizer)] = 0
        return Suspect(model=model)


@register("logit-bias")
@dataclass(frozen=True)
class LogitBias(Derivative):
    @property
    def label(self) -> str:
        return 'served with logit_bias -100 on the "Sure" tokens'

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.core.sure import sure_token_ids
        from fingerprint.robustness.serving import FilteredServing

        return Suspect(factory=lambda: FilteredServing(ctx.model, ctx.tokenizer, banned=sure_token_ids(ctx.tokenizer)))


@register("output-filter")
@dataclass(frozen=True)
class OutputFilter(Derivative):
    @property
    def label(self) -> str:
        return 'output filter: a reply that is only "Sure" is regenerated with "Sure" banned'

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.robustness.serving import FilteredServing

        return Suspect(factory=lambda: FilteredServing(ctx.model, ctx.tokenizer, regenerate_bare_sure=True))
