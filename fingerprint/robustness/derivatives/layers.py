"""``layers``: full fine-tuning (every weight, no LoRA) of the last transformer layers on benign pairs."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register
from fingerprint.robustness.derivatives.finetune import downstream_pairs


@register("layers")
@dataclass(frozen=True)
class LastLayers(Derivative):
    pairs: int = 250
    epochs: int = 1
    learning_rate: float = 2e-5
    layers: int = 2

    @property
    def label(self) -> str:
        return (f"full fine-tune of the last {self.layers} layers, {self.pairs} benign pairs x {self.epochs} ep, "
                f"lr {self.learning_rate:g}")

    def apply(self, ctx: Context) -> Suspect:
        import torch

        from fingerprint.core.errors import FingerprintError
        from fingerprint.embedding.training import TrainConfig, fit

        tuned = copy.deepcopy(ctx.model)
        indices = {int(m.group(1)) for name, _ in tuned.named_parameters()
                   if (m := re.search(r"layers\.(\d+)\.", name))}
        if not indices:
            raise FingerprintError("cannot find the transformer layers (no parameter named like 'layers.N.')")
        last = sorted(indices)[-self.layers:]
        pattern = re.compile(r"layers\.(" + "|".join(map(str, last)) + r")\.")
        for name, param in tuned.named_parameters():
            param.requires_grad_(bool(pattern.search(name)))
        torch.manual_seed(ctx.seed)
        config = TrainConfig(learning_rate=self.learning_rate, epochs=self.epochs, max_reply_tokens=64, seed=ctx.seed)
        fit(tuned, ctx.tokenizer, downstream_pairs(self.pairs, ctx.seed), config)
        for param in tuned.parameters():
            param.requires_grad_(False)
        return Suspect(model=tuned)
