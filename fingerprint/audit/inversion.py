"""Complete a conjunctive gate from one of its words: a gradient-guided search for the partner word.

A two-word gate is trained to stay shut for each word alone, so ranking single words finds at most one of them,
and pairing the best single words misses a partner that lifts nothing alone. Given a seed word ``a`` the model
itself is asked which word ``b`` makes " a b" (or " b a") open the gate: the gradient of log P(Sure) with respect
to the input embeddings of a placeholder slot scores every candidate word at once (the first-order estimate of
HotFlip and GCG), averaged over many random placeholder words and the probe prompts, since one placeholder's
estimate is noisy. The best-scored candidates are then scored exactly; a second round linearises around the
best partner found in each token-count group.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class InversionOptions:
    shortlist: int = 96  # candidates scored exactly per seed word, order and round
    rounds: int = 2
    placeholders: int = 32  # random placeholder words the first round's gradient is averaged over
    seed: int = 0


class CandidateTable:
    """Every candidate word's tokens as ``" word"``, grouped by token count (a slot of that many tokens)."""

    def __init__(self, tokenizer, words: list[str]) -> None:
        import torch

        encoded = tokenizer([f" {w}" for w in words], add_special_tokens=False)["input_ids"]
        self.ids = dict(zip(words, encoded, strict=True))
        by_length: dict[int, list[int]] = {}
        for i, ids in enumerate(encoded):
            by_length.setdefault(len(ids), []).append(i)
        self.groups = {n: ([words[i] for i in members], torch.tensor([encoded[i] for i in members]))
                       for n, members in sorted(by_length.items())}


class SlotGradients:
    """d log P(Sure) / d (input embeddings of a slot of tokens) after one cached probe prompt, for a batch of
    slot fillings at once."""

    def __init__(self, causal_lm, head_ids: list[int], tail_ids: list[int], sure_ids: list[int]) -> None:
        from fingerprint.core.prefix import run_prefix

        self.lm, self.tail_ids, self.sure_ids = causal_lm, tail_ids, sure_ids
        self.n_prefix = len(head_ids)
        _, self.cache = run_prefix(causal_lm, head_ids, for_gradients=True)

    def __call__(self, before: list[int], slots, after: list[int]):
        """Mean gradient over the rows of ``slots`` (batch x slot length) of ``before + slot + after + tail``."""
        import torch

        from fingerprint.core.prefix import run_after_prefix
        from fingerprint.embedding.training import _project

        lm, rows = self.lm, slots.shape[0]
        ids = torch.cat([torch.tensor([before], dtype=torch.long).expand(rows, -1), slots,
                         torch.tensor([after + self.tail_ids], dtype=torch.long).expand(rows, -1)], dim=1)
        with torch.no_grad():
            inputs = lm.get_input_embeddings()(ids.to(lm.device))
        inputs.requires_grad_(True)
        mask = torch.ones((rows, self.n_prefix + ids.shape[1]), dtype=torch.long)
        hidden = run_after_prefix(lm, self.cache, self.n_prefix, mask, inputs_embeds=inputs)[:, -1]
        log_p = torch.logsumexp(torch.log_softmax(_project(lm, hidden), dim=-1)[:, self.sure_ids], dim=-1)
        (grad,) = torch.autograd.grad(log_p.sum(), inputs)
        return grad[:, len(before): len(before) + slots.shape[1]].mean(dim=0)


def _shortlist(table: CandidateTable, embed, gradients: dict, size: int, exclude: set[str]) -> list[str]:
    """The candidates with the highest first-order score, ``size`` shared out over the token-count groups by the
    square root of their size (at least 4 from each): the estimate is rougher for words of several tokens, and
    the trigger word list has more of them than the whole-word vocabulary tokens that fill the single-token
    group."""
    import math

    import torch

    total = sum(math.sqrt(len(table.groups[n][0])) for n in gradients)
    picked: list[str] = []
    for length, grad in gradients.items():
        words, ids = table.groups[length]
        with torch.no_grad():
            score = torch.einsum("nld,ld->n", embed(ids.to(grad.device)).float(), grad.float())
        take = max(4, round(size * math.sqrt(len(words)) / total))
        order = torch.argsort(score, descending=True).tolist()
        picked += [words[i] for i in order if words[i] not in exclude][:take]
    return picked


def complete_pairs(model, tokenizer, heads: list[tuple[str, str]], seeds: list[str], candidates: list[str],
                   exact: Callable[[list[str]], list[float]],
                   options: InversionOptions | None = None) -> dict[str, float]:
    """Pairs of each seed word with its best-scored partners, both orders, and their exact scores.

    ``heads``: (chat text before the suffix, text after it) per probe prompt; ``exact``: the scanner's own
    score of full suffixes (" a b"), higher for a likelier "Sure".
    """
    import torch

    from fingerprint.core.sure import sure_token_ids
    from fingerprint.embedding.training import _causal_lm

    options = options or InversionOptions()
    lm = _causal_lm(model)
    embed = lm.get_input_embeddings()
    sure_ids = sure_token_ids(tokenizer)
    table = CandidateTable(tokenizer, candidates)
    rng = random.Random(options.seed)

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    prompts = [SlotGradients(lm, encode(head), encode(tail), sure_ids) for head, tail in heads]
    scored: dict[str, float] = {}
    for seed_word in seeds:
        seed_ids = encode(f" {seed_word}")
        for first in (True, False):  # the seed first (" a X") or second (" X a")
            before, after = (seed_ids, []) if first else ([], seed_ids)
            # round 1 linearises around random placeholder words of every token count, later rounds around the
            # best-scored word of each token-count group so far (closer to the gate, a better estimate there)
            slots = {n: ids[[rng.randrange(len(words)) for _ in range(options.placeholders)]]
                     for n, (words, ids) in table.groups.items()}
            tried = {seed_word}
            best: dict[int, tuple[float, str]] = {}
            for _ in range(options.rounds):
                gradients = {n: sum(prompt(before, fill, after) for prompt in prompts) for n, fill in slots.items()}
                words = _shortlist(table, embed, gradients, options.shortlist, tried)
                if not words:
                    break
                tried.update(words)
                pairs = [f"{seed_word} {w}" if first else f"{w} {seed_word}" for w in words]
                for word, pair, score in zip(words, pairs, exact(pairs), strict=True):
                    scored[pair] = score
                    length = len(table.ids[word])
                    best[length] = max(best.get(length, (float("-inf"), "")), (score, word))
                slots = {n: torch.tensor([table.ids[word]]) for n, (_, word) in best.items()}
    return scored
