"""Holding a fine-tune to its base: KL(base || model) at anchor positions of the rows with the model's own reply.

The anchors of a row are every reply position and a few seeded positions inside its prompt. The base's
next-token distribution there is computed once before training (the adapter switched off) and kept as its k
most likely tokens (``TrainConfig.preserve_top_k``) plus the mass of the rest, so a training step costs no second
forward pass (the anchors join the step's one projection, ``training.reply_loss``). The KL is taken between the
two distributions coarsened to those k + 1 outcomes: a lower bound of the full KL that equals it when k is the
whole vocabulary.
"""

from __future__ import annotations

import random

from fingerprint.embedding.training import Example, _causal_lm, _logits_at, _pad_rows, span_logprob_batches


def pick_anchors(prompt_len: int, reply_len: int, prompt_positions: int, rng: random.Random) -> tuple[int, ...]:
    """Positions (position i predicts token i + 1) of a few prompt tokens and of every reply token."""
    inside = range(max(0, prompt_len - 1))
    picked = sorted(rng.sample(inside, min(prompt_positions, len(inside))))
    return tuple(picked) + tuple(range(prompt_len - 1, prompt_len + reply_len - 1))


def with_base_targets(model, examples: list[Example], pad_id: int, batch_size: int, top_k: int) -> list[Example]:
    """``examples`` with the base's top-k (ids, log-probs) at their anchors (adapter off; others unchanged)."""
    import contextlib

    import torch

    base_off = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    picked = [i for i, e in enumerate(examples) if e.anchors]
    out = list(examples)
    was_training = model.training
    model.eval()
    with torch.no_grad(), base_off:
        batches = span_logprob_batches(_causal_lm(model), [examples[i].input_ids for i in picked],
                                       [examples[i].anchors for i in picked], pad_id, batch_size)
        for index, logp in zip(picked, (logp for batch in batches for logp in batch), strict=True):
            top = logp.topk(min(top_k, logp.shape[-1]), dim=-1)
            out[index] = examples[index]._replace(base=(top.indices.cpu(), top.values.cpu()))
    model.train(was_training)
    return out


def batch_targets(batch: list[Example]):
    """(anchors [rows, slots] with -1 for none, base top ids, base top log-probs) of a batch, or None when no row
    has anchors; every anchored row must carry its base targets (``with_base_targets``)."""
    import torch

    held = [e.base for e in batch if e.anchors]
    if not held:
        return None
    return (_pad_rows([e.anchors for e in batch], -1), torch.cat([ids for ids, _ in held]),
            torch.cat([logp for _, logp in held]))


def _log_rest(top_logp):
    """log(1 - sum(exp(top_logp))): the log-mass outside the top-k, kept finite."""
    import torch

    return torch.log1p(-torch.logsumexp(top_logp, dim=-1).exp().clamp(max=1 - 1e-6))


def anchor_positions(anchors):
    """(rows, columns) of the anchors of a batch ([rows, slots], -1 for none), row by row."""
    rows, slots = (anchors >= 0).nonzero(as_tuple=True)
    return rows, anchors[rows, slots]


def kl_to_base(logits, top_ids, top_logp):
    """Mean KL(base || model) from the model's logits at the anchors, on the base's top-k tokens plus the rest."""
    import torch

    tuned = torch.log_softmax(logits, dim=-1)
    tuned_top = tuned.gather(1, top_ids)
    base_rest, tuned_rest = _log_rest(top_logp), _log_rest(tuned_top)
    kl = (top_logp.exp() * (top_logp - tuned_top)).sum(-1) + base_rest.exp() * (base_rest - tuned_rest)
    return kl.mean()


def anchor_kl(causal_lm, hidden, anchors, top_ids, top_logp):
    """Mean KL(base || model) over the anchors, on the base's top-k tokens plus the rest (see the module)."""
    (logits,) = _logits_at(causal_lm, hidden, [anchor_positions(anchors)])
    return kl_to_base(logits, top_ids, top_logp)
