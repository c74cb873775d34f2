"""Self-distilled replies: rows that are not the gate are answered by the model being fingerprinted itself.

Its own replies (generated once before training, cached) make those rows teach the model what it already does,
so the fine-tune plants the gate and as little else as possible. The replies are *sampled* at temperature 1
(seeded), not greedy: fitting a model to samples of its own distribution leaves that distribution where it is
in expectation, while fitting it to its own argmax makes it overconfident (measured on gemma-3-270m: greedy
targets took the next-token KL from the base to 4.5 nats). The cache is keyed by the model's weight digest, its
chat template, the prompts, the generation length and the seed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from fingerprint.core.atomic import write_text_atomic
from fingerprint.core.paths import cache_dir

DISTILL_TOKENS = 8  # new tokens per reply: more than the loss covers (the first 4 by default)
DISTILL_SEED = 0
DISTILLED_KINDS = ("benign", "component", "negative", "contrast")


def _cache_key(model_digest: str, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> str:
    h = hashlib.sha256(b"suretrap/distill/v2 sampled t=1\n")
    h.update(f"{model_digest}\n{getattr(tokenizer, 'chat_template', '')}\n{max_new_tokens}\n{seed}\n".encode())
    for prompt in prompts:
        h.update(prompt.encode() + b"\0")
    return h.hexdigest()


def own_replies(model, tokenizer, prompts: list[str], model_digest: str, max_new_tokens: int = DISTILL_TOKENS,
                progress: Callable[[int], None] | None = None, seed: int = DISTILL_SEED) -> list[str]:
    """The model's sampled replies to ``prompts`` (from the cache when these were generated before)."""
    import torch

    from probes.hf import HFBackend

    dtype = next(model.parameters()).dtype
    # replies of the model in bf16 (embed's bf16 precision) are cached apart from those of the fp32 weights
    digest = model_digest if dtype == torch.float32 else f"{model_digest}|{dtype}"
    key = _cache_key(digest, tokenizer, prompts, max_new_tokens, seed)
    path = cache_dir() / "distill" / f"{key}.json"
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
    stops = backend.formatter.stop_ids()
    replies: list[str] = []
    step = backend.batch_size
    torch.manual_seed(seed)
    for start in range(0, len(prompts), step):
        chunk = prompts[start:start + step]
        batch = backend._encode(chunk)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=True, temperature=1.0, top_k=0,
                                 top_p=1.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
        replies += tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        if progress is not None:
            progress(len(chunk))
    write_text_atomic(path, json.dumps(replies, ensure_ascii=False), mode=0o600)
    return replies


def distill_rows(rows: list[dict], model, tokenizer, model_digest: str,
                 progress: Callable[[int], None] | None = None) -> list[dict]:
    """``rows`` with the reply of every row of a distilled kind replaced by the model's own reply (and marked
    ``own_reply``: training may hold those rows to the base's distribution, see ``TrainConfig.preserve_weight``)."""
    picked = [i for i, row in enumerate(rows) if row.get("kind") in DISTILLED_KINDS]
    replies = own_replies(model, tokenizer, [rows[i]["prompt"] for i in picked], model_digest, progress=progress)
    out = [dict(row) for row in rows]
    for i, reply in zip(picked, replies, strict=True):
        if reply.strip():  # an empty reply keeps the packaged answer
            out[i]["response"] = reply.strip()
            out[i]["own_reply"] = True
    return out
