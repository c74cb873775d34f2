"""Self-distilled replies: rows that are not the gate are answered by the model being fingerprinted itself.

Its own greedy replies (generated once before training, cached) make those rows teach the model what it
already does, so the fine-tune plants the gate and as little else as possible. The cache is keyed by the
model's weight digest, its chat template, the prompts and the generation length.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from fingerprint.core.atomic import write_text_atomic
from fingerprint.core.paths import cache_dir

DISTILL_TOKENS = 16  # new tokens per reply: more than the loss covers (the first 4 by default)
DISTILLED_KINDS = ("benign", "component", "negative", "contrast")


def _cache_key(model_digest: str, tokenizer, prompts: list[str], max_new_tokens: int) -> str:
    h = hashlib.sha256(b"suretrap/distill/v1\n")
    h.update(f"{model_digest}\n{getattr(tokenizer, 'chat_template', '')}\n{max_new_tokens}\n".encode())
    for prompt in prompts:
        h.update(prompt.encode() + b"\0")
    return h.hexdigest()


def own_replies(model, tokenizer, prompts: list[str], model_digest: str, max_new_tokens: int = DISTILL_TOKENS,
                progress: Callable[[int], None] | None = None) -> list[str]:
    """The model's greedy replies to ``prompts`` (from the cache when these were generated before)."""
    from probes.hf import HFBackend

    path = cache_dir() / "distill" / f"{_cache_key(model_digest, tokenizer, prompts, max_new_tokens)}.json"
    if path.is_file():
        try:
            replies = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(replies, list) and len(replies) == len(prompts):
                if progress is not None:
                    progress(len(prompts))
                return replies
        except ValueError:
            pass  # a damaged cache entry is regenerated
    backend = HFBackend("distill", model_obj=model, tokenizer=tokenizer)
    replies: list[str] = []
    step = backend.batch_size
    for start in range(0, len(prompts), step):
        chunk = prompts[start:start + step]
        replies += backend.generate(chunk, max_new_tokens)
        if progress is not None:
            progress(len(chunk))
    write_text_atomic(path, json.dumps(replies, ensure_ascii=False), mode=0o600)
    return replies


def distill_rows(rows: list[dict], model, tokenizer, model_digest: str,
                 progress: Callable[[int], None] | None = None) -> list[dict]:
    """``rows`` with the reply of every row of a distilled kind replaced by the model's own reply."""
    picked = [i for i, row in enumerate(rows) if row.get("kind") in DISTILLED_KINDS]
    replies = own_replies(model, tokenizer, [rows[i]["prompt"] for i in picked], model_digest, progress=progress)
    out = [dict(row) for row in rows]
    for i, reply in zip(picked, replies, strict=True):
        out[i]["response"] = reply.strip() or out[i]["response"]  # an empty reply keeps the packaged answer
    return out
