"""``finetune``: a downstream LoRA fine-tune on benign pairs the owner never used, merged back."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register


def downstream_pairs(count: int, seed: int = 0) -> list[dict]:
    """Benign pairs for the thief's fine-tune: the packaged pool's held-out rows first, then the rest."""
    from fingerprint.core.data import HELDOUT, packaged

    pool = list(packaged("benign"))
    held, rest = pool[-HELDOUT["benign"]:], pool[: -HELDOUT["benign"]]
    random.Random(seed).shuffle(rest)
    return (held + rest)[:count]


def lora_finetune(model, tokenizer, pairs: int, epochs: int = 1, learning_rate: float = 2e-4,
                  targets: str = "all-linear", seed: int = 0):
    """LoRA on top of a copy of ``model`` on ``pairs`` benign pairs, merged back."""
    from fingerprint.embedding.training import TrainConfig, train_lora

    modules = targets if targets == "all-linear" else [f"{t}_proj" for t in targets.split(",")]
    config = TrainConfig(target_modules=modules, learning_rate=learning_rate, epochs=epochs, max_reply_tokens=64,
                         seed=seed)
    return train_lora(copy.deepcopy(model), tokenizer, downstream_pairs(pairs, seed), config).merge_and_unload()


@register("finetune")
@dataclass(frozen=True)
class Finetune(Derivative):
    pairs: int = 250
    epochs: int = 1
    learning_rate: float = 2e-4
    targets: str = "all-linear"  # or q,k,v,o

    @property
    def label(self) -> str:
        return (f"LoRA fine-tune, {self.pairs} benign pairs x {self.epochs} ep, lr {self.learning_rate:g}, "
                f"{self.targets}")

    def x(self) -> float:
        return self.pairs

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=lora_finetune(ctx.model, ctx.tokenizer, self.pairs, self.epochs, self.learning_rate,
                                           self.targets, ctx.seed))
