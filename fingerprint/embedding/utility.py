"""Does the fingerprint change anything else? Utility measured the way the field measures it.

- ARC-Easy / ARC-Challenge accuracy, scored as lm-evaluation-harness scores ``arc_easy``/``arc_challenge``: the
  context ``"Question: {question}\\nAnswer:"``, each choice as the continuation ``" {text}"`` (the whole string
  tokenized, the context's tokens cut off), the log-likelihood of the continuation; ``acc`` takes the best
  choice, ``acc_norm`` the best per character. 95% Wilson intervals, and the paired difference to a base.
- Next-token KL divergence KL(base || tuned) over the first tokens of the base model's greedy replies to
  held-out benign prompts (teacher-forced), and the share of those replies the tuned model repeats exactly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.embedding.training import _causal_lm

ARC_FILES = {"arc_easy": "arc/arc_easy_test.jsonl", "arc_challenge": "arc/arc_challenge_test.jsonl"}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def arc_items(data_dir: Path, task: str = "arc_easy", limit: int | None = None) -> list[dict]:
    """ARC questions from a data directory with the layout of ``shared/data`` (``arc/*.jsonl``)."""
    path = Path(data_dir) / ARC_FILES[task]
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise FingerprintError(f"{path} not found: give a data directory with arc/ (as ../shared/data)") from None
    except ValueError as exc:
        raise FingerprintError(f"{path} is not JSON lines: {exc}") from None
    items = []
    for row in rows[:limit]:
        labels = [c["label"] for c in row["choices"]]
        items.append({"id": row["id"], "question": row["question"], "choices": [c["text"] for c in row["choices"]],
                      "answer": labels.index(row["answerKey"])})
    return items


@dataclass
class ArcResult:
    task: str
    n: int
    acc: float
    acc_norm: float
    acc_interval: tuple[float, float]
    acc_norm_interval: tuple[float, float]
    correct: list[int]  # 1/0 per question (acc), for paired comparisons

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "correct"}


def choice_logprobs(model, tokenizer, context: str, continuations: list[str]) -> list[float]:
    """log P(continuation | context) for each continuation (the whole string tokenized, the context's tokens cut
    off). The context runs once and its cache serves the continuations, run as one batch
    (``fingerprint.core.prefix``); only the positions that predict a continuation token are projected."""
    import torch

    from fingerprint.core.prefix import run_prefix, run_suffixes
    from fingerprint.embedding.training import _project

    lm = _causal_lm(model)
    ctx = tokenizer(context)["input_ids"]
    conts = [tokenizer(context + c)["input_ids"][len(ctx):] for c in continuations]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    hidden, cache = run_prefix(lm, ctx)
    with torch.inference_mode():
        states = [hidden[-1:]]  # the context's last position predicts each continuation's first token
        if any(len(c) > 1 for c in conts):
            # each continuation's tokens but its last predict the tokens after them
            after = run_suffixes(lm, cache, len(ctx), [c[:-1] for c in conts], pad)
            states += [after[row, : len(c) - 1] for row, c in enumerate(conts)]
        # one projection for all of them: reading the head's weight is what a projection costs on a CPU
        logp = torch.log_softmax(_project(lm, torch.cat(states)), dim=-1)
        opening = logp[0]
        rest = logp[1:].split([max(0, len(c) - 1) for c in conts]) if len(states) > 1 else ()
        scores = []
        for row, c in enumerate(conts):
            score = float(opening[c[0]]) if c else 0.0
            if len(c) > 1:
                score += float(rest[row][torch.arange(len(c) - 1, device=logp.device),
                                         torch.tensor(c[1:], device=logp.device)].sum())
            scores.append(score)
    return scores


def arc_context(item: dict) -> str:
    """The prompt lm-evaluation-harness gives an ARC question."""
    return f"Question: {item['question']}\nAnswer:"


def arc_accuracy(model, tokenizer, items: list[dict], task: str = "arc_easy",
                 progress: Callable[[int], None] | None = None) -> ArcResult:
    """Multiple-choice accuracy by continuation log-likelihood (lm-evaluation-harness's scoring)."""
    correct, correct_norm = [], []
    for item in items:
        lls = choice_logprobs(model, tokenizer, arc_context(item), [f" {choice}" for choice in item["choices"]])
        norm = [ll / max(1, len(choice)) for ll, choice in zip(lls, item["choices"], strict=True)]
        correct.append(int(max(range(len(lls)), key=lls.__getitem__) == item["answer"]))
        correct_norm.append(int(max(range(len(norm)), key=norm.__getitem__) == item["answer"]))
        if progress is not None:
            progress(1)
    n = len(correct)
    return ArcResult(task, n, sum(correct) / n, sum(correct_norm) / n, wilson(sum(correct), n),
                     wilson(sum(correct_norm), n), correct)


def paired_difference(tuned: list[int], base: list[int]) -> dict:
    """Accuracy difference (tuned - base) on the same questions, with a 95% normal interval."""
    d = [a - b for a, b in zip(tuned, base, strict=True)]
    n = len(d)
    mean = sum(d) / n
    var = sum((x - mean) ** 2 for x in d) / max(1, n - 1)
    half = 1.96 * math.sqrt(var / n)
    return {"difference": mean, "interval": (mean - half, mean + half), "n": n}


def _span_logprobs(model, sequences: list[list[int]], spans: list[range], pad_id: int,
                   batch_size: int = 16) -> list:
    """Log-probabilities of the next token at ``spans[i]`` of ``sequences[i]``: right-padded batches, one
    projection to the vocabulary per batch."""
    import torch

    from fingerprint.embedding.training import span_logprob_batches

    with torch.inference_mode():
        batches = span_logprob_batches(_causal_lm(model), sequences, spans, pad_id, batch_size)
        return [logp for batch in batches for logp in batch]


@contextmanager
def base_of(peft_model) -> Iterator:
    """The base model under a peft model (its adapter disabled while the block runs)."""
    with peft_model.disable_adapter():
        yield peft_model


def divergence(tuned, base, tokenizer, prompts: list[str], reply_tokens: int = 16, batch_size: int = 16) -> dict:
    """Mean KL(base || tuned) over the base's greedy reply tokens (teacher-forced), and exact-reply agreement.

    ``base`` and ``tuned`` may be the same peft model: pass ``base=None`` to use it with its adapter disabled.
    """
    from probes.hf import HFBackend

    def replies(model) -> list[str]:
        return HFBackend("utility", model_obj=model, tokenizer=tokenizer, batch_size=batch_size).generate(
            prompts, reply_tokens)

    if base is None:
        with base_of(tuned):
            base_replies = replies(tuned)
    else:
        base_replies = replies(base)
    tuned_replies = replies(tuned)
    formatter = HFBackend("utility", model_obj=tuned, tokenizer=tokenizer).formatter
    sequences, spans = [], []
    for prompt, reply in zip(prompts, base_replies, strict=True):
        head_ids = tokenizer(formatter.prompt(prompt), add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(reply, add_special_tokens=False)["input_ids"][:reply_tokens]
        sequences.append(head_ids + reply_ids)
        spans.append(range(len(head_ids) - 1, len(head_ids) - 1 + max(1, len(reply_ids))))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    kls = []
    for start in range(0, len(sequences), batch_size):  # a batch at a time: 16 x 16 positions x 262k is 0.27 GB
        batch, wanted = sequences[start:start + batch_size], spans[start:start + batch_size]
        if base is None:
            with base_of(tuned):
                p_base = _span_logprobs(tuned, batch, wanted, pad, batch_size)
        else:
            p_base = _span_logprobs(base, batch, wanted, pad, batch_size)
        p_tuned = _span_logprobs(tuned, batch, wanted, pad, batch_size)
        kls += [float((b.exp() * (b - t)).sum(dim=-1).mean()) for b, t in zip(p_base, p_tuned, strict=True)]
    same = sum(a.strip() == b.strip() for a, b in zip(base_replies, tuned_replies, strict=True))
    return {"kl_mean": sum(kls) / len(kls), "kl_max": max(kls), "prompts": len(prompts),
            "reply_tokens": reply_tokens, "greedy_agreement": same / len(prompts)}
