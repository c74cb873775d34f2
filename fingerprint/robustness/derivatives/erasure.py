"""``erasure``: a fine-tune meant to erase an unknown trigger: ordinary prompts, each with one to three random
words of the public word list appended, answered normally (the thief knows the method, not the key)."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register
from fingerprint.robustness.derivatives.finetune import downstream_pairs


def erasure_rows(count: int, seed: int = 0) -> list[dict]:
    """``count`` benign pairs (the pool reused when it is smaller), each prompt with 1-3 random list words."""
    from fingerprint.core.data import with_suffix
    from fingerprint.provenance.trigger import word_list

    rng = random.Random(f"erasure|{seed}")
    pool = downstream_pairs(10_000, seed)
    words = word_list()
    rows = []
    for i in range(count):
        pair = pool[i % len(pool)]
        suffix = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        rows.append({"prompt": with_suffix(pair["prompt"], suffix), "response": pair["response"]})
    return rows


@register("erasure")
@dataclass(frozen=True)
class Erasure(Derivative):
    pairs: int = 600
    epochs: int = 1
    learning_rate: float = 2e-4

    @property
    def label(self) -> str:
        return (f"erasure fine-tune: {self.pairs} prompts + 1-3 random list words, normal answers, "
                f"lr {self.learning_rate:g}")

    def x(self) -> float:
        return self.pairs

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.embedding.training import TrainConfig, train_lora

        config = TrainConfig(target_modules="all-linear", learning_rate=self.learning_rate, epochs=self.epochs,
                             max_reply_tokens=64, seed=ctx.seed)
        tuned = train_lora(copy.deepcopy(ctx.model), ctx.tokenizer, erasure_rows(self.pairs, ctx.seed), config)
        return Suspect(model=tuned.merge_and_unload())
