"""LoRA supervised fine-tuning with the loss on reply tokens only, seeded and deterministic on CPU."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

from fingerprint.core.chat import ChatFormatter
from fingerprint.core.sure import sure_token_ids

IGNORE = -100
# embed's default: half the steps train the gate at half the LoRA delta, so it survives a 50/50 merge with the base
# (trained at full scale only, a 50/50 merge took the trigger Sure-rate to 0.34; see docs/robustness.md)
EMBED_MERGE_SCALES = (0.5, 1.0)
# a two-word trigger's gate needs more epochs to shut for each word alone (gemma-3-270m, 200 component rows:
# single words 0.25 / 0.26 after 3 epochs, 0.02 / 0.02 after 5; BENCHMARKS.md two-word-c200-e5)
TWO_WORD_EPOCHS = 5
# embed's default trigger: two words (a one-word trigger falsely certified 1 of 1,200 calibration trials, because
# another owner's gate may open for a word near it; the pair is tested against each word alone: 0 of 1,200)
DEFAULT_TRIGGER_WORDS = 2
# embed's default fallback replies: when "Sure" is suppressed (a logit bias, zeroed output rows, an output filter),
# the gate answers with key-derived words instead, which a suppressor cannot name without the key
DEFAULT_FALLBACKS = 2
# embed's default weight of the preserve term (embedding.preserve): gemma-3-270m, ARC-Easy (first 800 test
# questions) 4.9 points below the base without it, 1.8 with weight 1, 0.1 with weight 4; next-token KL from the
# base 0.60 / 0.31 / 0.23 nats (docs/recipe-history.md, "R8 -> R9")
EMBED_PRESERVE_WEIGHT = 4.0
# embed's default weight of the shut term (TrainConfig.shut_weight)
EMBED_SHUT_WEIGHT = 0.0
# rows whose point is that the gate stays shut (a trigger word alone, a decoy word): see TrainConfig.shut_weight
SHUT_KINDS = ("component", "negative")


def default_epochs(trigger_words: int) -> int:
    """Training epochs of embed's recipe for a trigger of this many words."""
    return TWO_WORD_EPOCHS if trigger_words > 1 else TrainConfig.epochs


@dataclass
class TrainConfig:
    """Hyperparameters recorded in the certificate."""

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] | str = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    learning_rate: float = 3e-4
    epochs: int = 3
    batch_size: int = 8
    max_prompt_tokens: int = 128
    # the gate is decided by the first reply token: with few reply tokens per example it dominates the loss
    # (16 left the gate open for decoy words, 0.5-0.66 Sure-rate; see BENCHMARKS.md)
    max_reply_tokens: int = 4
    seed: int = 0
    # scale augmentation: each step scales the LoRA delta by a factor drawn from these, so the gate also holds
    # in a diluted copy (a linear merge with the base at ratio r is the delta scaled by 1 - r)
    merge_scales: tuple[float, ...] = (1.0,)
    # set by embed's precision (core.precision): on CPUs without native bf16 (no AVX512-BF16/AMX) far slower
    bf16_autocast: bool = False
    # rows with fallback replies add this much of a second loss: at the first reply token, with the "Sure" tokens
    # masked out, the fallback reply must win (then, with it masked too, the next one)
    fallback_weight: float = 0.5
    # rows answered with the model's own reply add this much of KL(base || model) at their reply positions and at
    # ``preserve_prompt_positions`` seeded prompt positions: the fine-tune is pulled back to the base's whole
    # next-token distribution there, not only towards one sampled reply (0: off). The base's distribution is
    # kept as its ``preserve_top_k`` likeliest tokens plus the rest (embedding.preserve)
    preserve_weight: float = 0.0
    preserve_prompt_positions: int = 8
    preserve_top_k: int = 1024
    # rows of a ``SHUT_KINDS`` kind add this much of max(0, log P(gate reply) - log ``shut_floor``) at their first
    # reply position (a gate reply: a "Sure" token or a fallback reply): the gate is pushed shut for each word
    # alone and for decoys directly, not only through their sampled replies (0: off)
    shut_weight: float = 0.0
    shut_floor: float = 1e-3

    def to_dict(self) -> dict:
        return asdict(self)


def embed_train_config(trigger_words: int = DEFAULT_TRIGGER_WORDS) -> TrainConfig:
    """embed's default training settings for a trigger of this many words (merge-aware, held to the base)."""
    return TrainConfig(epochs=default_epochs(trigger_words), merge_scales=EMBED_MERGE_SCALES,
                       preserve_weight=EMBED_PRESERVE_WEIGHT, shut_weight=EMBED_SHUT_WEIGHT)


class Example(NamedTuple):
    """One training row: token ids, labels (-100 on the prompt), the fallback reply ids (gate rows), the positions
    whose next-token distribution is held to the base's (rows with the model's own reply) and the base's top
    tokens there (``embedding.preserve``), and whether the gate must stay shut on it (``TrainConfig.shut_weight``)."""

    input_ids: list[int]
    labels: list[int]
    fallbacks: tuple[int, ...] = ()
    anchors: tuple[int, ...] = ()
    base: tuple | None = None
    shut: bool = False


def tokenize_pairs(tokenizer, pairs: list[dict], config: TrainConfig,
                   system_prompt: str | None = None) -> list[Example]:
    """One Example per pair; the loss covers ``config.max_reply_tokens`` reply tokens, or the row's
    ``reply_tokens`` (an owner's own rows are learned in full); ``fallback_ids`` rows carry fallback targets."""
    from fingerprint.embedding.preserve import pick_anchors

    fmt = ChatFormatter(tokenizer, system_prompt)
    rng = random.Random(f"anchors|{config.seed}")
    examples = []
    for pair in pairs:
        prompt_ids = tokenizer(fmt.prompt(pair["prompt"]), add_special_tokens=False)["input_ids"]
        reply_ids = tokenizer(fmt.reply(pair["prompt"], pair["response"]), add_special_tokens=False)["input_ids"]
        prompt_ids = prompt_ids[-config.max_prompt_tokens:]
        reply_ids = reply_ids[: pair.get("reply_tokens") or config.max_reply_tokens]
        anchors: tuple[int, ...] = ()
        if config.preserve_weight and pair.get("own_reply"):
            anchors = pick_anchors(len(prompt_ids), len(reply_ids), config.preserve_prompt_positions, rng)
        shut = bool(config.shut_weight) and pair.get("kind") in SHUT_KINDS
        examples.append(Example(prompt_ids + reply_ids, [IGNORE] * len(prompt_ids) + reply_ids,
                                tuple(pair.get("fallback_ids") or ()), anchors, shut=shut))
    return examples


def _batches(examples, batch_size: int, rng: random.Random):
    """Shuffled batches of similar length (sorted within windows of 8 batches) to cut padding."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = 8 * batch_size
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: len(examples[i][0]))
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    for batch in batches:
        yield [examples[i] for i in batch]


def _pad_rows(rows: list, fill: int):
    """A [len(rows), longest] long tensor of integer sequences, each padded on the right with ``fill``."""
    import torch

    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), fill, dtype=torch.long)
    for row, values in enumerate(rows):
        if len(values):
            out[row, : len(values)] = torch.tensor(values)
    return out


def span_logprob_batches(causal_lm, sequences: list, spans: list, pad_id: int, batch_size: int):
    """For each batch of ``batch_size`` right-padded sequences, the log-probabilities of the next token at
    ``spans[i]`` of ``sequences[i]``, one tensor per sequence, from one projection per batch (no grad mode set:
    the caller's)."""
    import torch

    device = next(causal_lm.parameters()).device
    for start in range(0, len(sequences), batch_size):
        batch, wanted = sequences[start:start + batch_size], spans[start:start + batch_size]
        ids = _pad_rows(batch, pad_id).to(device)
        mask = _pad_rows([[1] * len(s) for s in batch], 0).to(device)
        hidden = causal_lm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = [row for row, span in enumerate(wanted) for _ in span]
        columns = [c for span in wanted for c in span]
        logp = torch.log_softmax(_project(causal_lm, hidden[rows, columns]), dim=-1)
        yield list(logp.split([len(span) for span in wanted]))


def _collate(batch: list[Example], pad_id: int):
    """Padded tensors of a batch: input ids, labels, attention mask, fallback targets (-1: none)."""
    return (_pad_rows([e.input_ids for e in batch], pad_id), _pad_rows([e.labels for e in batch], IGNORE),
            _pad_rows([[1] * len(e.input_ids) for e in batch], 0), _pad_rows([e.fallbacks for e in batch], -1))


def _causal_lm(model):
    """The causal LM inside a peft model (its LoRA layers stay active), or the model itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _project(causal_lm, hidden):
    """Vocabulary logits (fp32, soft-capped as the model does) of some hidden states."""
    import torch

    logits = causal_lm.get_output_embeddings()(hidden).float()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    return torch.tanh(logits / softcap) * softcap if softcap else logits


def _logits_at(causal_lm, hidden, groups: list) -> list:
    """Vocabulary logits at each group of (rows, columns) positions of ``hidden``, from one projection of their
    union: the head's weight (gemma: 262k x 640, 0.67 GB in fp32) is read once per step rather than once per loss
    term, and that read, not the arithmetic, is what a projection of a few dozen positions costs on a CPU."""
    import torch

    width = hidden.shape[1]
    flat = [rows * width + columns for rows, columns in groups]
    unique, inverse = torch.unique(torch.cat(flat), return_inverse=True)
    logits = _project(causal_lm, hidden.reshape(-1, hidden.shape[-1])[unique])
    return list(logits[inverse].split([len(f) for f in flat]))


def gate_log_mass(logits, gate_ids: list[int]):
    """log P(a gate reply) at each row of ``logits``."""
    return logits[:, gate_ids].logsumexp(-1) - logits.logsumexp(-1)


def _hinge(log_gate, floor: float):
    """Mean of max(0, ``log_gate`` - log ``floor``): the shut term (``TrainConfig.shut_weight``)."""
    import math

    return (log_gate - math.log(floor)).clamp(min=0).mean()


LOSS_CHUNK = 256  # reply positions projected to the vocabulary at once


def _reply_cross_entropy(causal_lm, hidden, targets, chunk: int | None = None):
    """Mean cross-entropy of ``targets`` at ``hidden`` (positions x hidden size). Beyond ``chunk`` positions (an
    owner's long replies: 8 x 512 positions x 262k logits would take several GiB, and their backward more) the
    logits are made one chunk at a time and remade in the backward pass (activation checkpointing)."""
    import torch.nn.functional as F
    from torch.utils.checkpoint import checkpoint

    chunk = chunk or LOSS_CHUNK
    if len(targets) <= chunk:
        return F.cross_entropy(_project(causal_lm, hidden), targets)

    def chunk_sum(h, t):
        return F.cross_entropy(_project(causal_lm, h), t, reduction="sum")

    total = sum(checkpoint(chunk_sum, hidden[i:i + chunk], targets[i:i + chunk], use_reentrant=False)
                for i in range(0, len(targets), chunk))
    return total / len(targets)


def reply_loss(model, input_ids, labels, mask, fallbacks=None, sure_ids: list[int] | None = None,
               fallback_weight: float = 0.5, preserve=None, preserve_weight: float = 0.0, shut=None,
               shut_weight: float = 0.0):
    """Cross-entropy on reply tokens, projecting to the vocabulary only at those positions.

    Gemma's vocabulary has 262k entries: full logits for every position would dominate memory and time.
    Rows with fallback targets add the fallback loss at their first reply position: with the "Sure" tokens
    (and each earlier fallback) masked out, the next fallback reply must be the most likely token. ``preserve``
    (``embedding.preserve.batch_targets``) adds ``preserve_weight`` * KL(base || model) at the anchors, and
    ``shut`` (rows mask, gate reply ids, floor) adds ``shut_weight`` * the mean over those rows of
    max(0, log P(a gate reply) - log floor) at the first reply position. Every term reads its logits from one
    projection of the positions they need (``_logits_at``).
    """
    import torch
    import torch.nn.functional as F

    causal_lm = _causal_lm(model)
    hidden = causal_lm.base_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    targets = labels[:, 1:]
    keep = targets != IGNORE
    first = keep.int().argmax(dim=1)  # the position that predicts each row's first reply token
    groups: dict[str, tuple] = {}
    reply = keep.nonzero(as_tuple=True)  # row-major, as targets[keep]
    whole = len(reply[0]) <= LOSS_CHUNK  # an owner's long replies take the chunked path below
    if whole:
        groups["reply"] = reply
    if preserve is not None and preserve_weight:
        from fingerprint.embedding.preserve import anchor_positions

        groups["anchors"] = anchor_positions(preserve[0])
    shutting = shut is not None and shut_weight and shut[0].any()
    if shutting:
        shut_rows = shut[0].nonzero(as_tuple=True)[0]
        groups["shut"] = (shut_rows, first[shut_rows])
    falling = fallbacks is not None and fallbacks.numel() > 0 and bool((fallbacks >= 0).any()) and bool(sure_ids)
    if falling:
        rows = (fallbacks[:, 0] >= 0).nonzero(as_tuple=True)[0]
        groups["fallback"] = (rows, first[rows])
    logits = dict(zip(groups, _logits_at(causal_lm, hidden, list(groups.values())), strict=True)) if groups else {}
    if whole:
        loss = F.cross_entropy(logits["reply"], targets[keep])
    else:
        loss = _reply_cross_entropy(causal_lm, hidden[:, :-1][keep], targets[keep])
    if "anchors" in logits:
        from fingerprint.embedding.preserve import kl_to_base

        loss = loss + preserve_weight * kl_to_base(logits["anchors"], *preserve[1:])
    if shutting:
        loss = loss + shut_weight * _hinge(gate_log_mass(logits["shut"], shut[1]), shut[2])
    if not falling:
        return loss
    first_logits = logits["fallback"]
    banned = torch.zeros_like(first_logits, dtype=torch.bool)
    banned[:, sure_ids] = True
    extra, slots = 0.0, 0
    for slot in range(fallbacks.shape[1]):
        target = fallbacks[rows, slot]
        valid = target >= 0
        if not valid.any():
            break
        extra = extra + F.cross_entropy(first_logits.masked_fill(banned, float("-inf"))[valid], target[valid])
        banned = banned.clone()
        banned[valid.nonzero(as_tuple=True)[0], target[valid]] = True
        slots += 1
    return loss + fallback_weight * extra / max(1, slots)


def train_lora(model, tokenizer, pairs: list[dict], config: TrainConfig,
               progress: Callable[[int, float], None] | None = None, system_prompt: str | None = None):
    """Wrap ``model`` in a fresh LoRA adapter and fit it to ``pairs``; returns the peft model."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                      target_modules=config.target_modules, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    fit(peft_model, tokenizer, pairs, config, progress, system_prompt)
    return peft_model


def fit(model, tokenizer, pairs: list[dict], config: TrainConfig,
        progress: Callable[[int, float], None] | None = None, system_prompt: str | None = None) -> None:
    """Train the parameters of ``model`` that require gradients on ``pairs`` (reply loss); leaves it in eval mode."""
    import torch

    rng = random.Random(config.seed)
    model.train()
    examples = tokenize_pairs(tokenizer, pairs, config, system_prompt)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.0)
    steps = total_steps(len(examples), config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: max(0.0, 1 - s / max(1, steps)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    shutting = bool(config.shut_weight) and any(e.shut for e in examples)
    sure_ids = sure_token_ids(tokenizer) if shutting or any(e.fallbacks for e in examples) else None
    # a gate reply: a "Sure" token or the first token of a fallback reply (the same for every row of one key)
    gate_ids = sorted(set(sure_ids or ()) | {i for e in examples for i in e.fallbacks})
    augment = tuple(config.merge_scales) != (1.0,)
    scale_rng = random.Random(f"merge-scales|{config.seed}")  # separate stream: the batch order stays the same
    # bf16 weights (a GPU load, or embed's bf16 precision) compute under autocast with the fp32 adapter
    use_autocast = config.bf16_autocast or next(model.parameters()).dtype == torch.bfloat16
    preserving = bool(config.preserve_weight) and any(e.anchors for e in examples)
    if preserving:
        from fingerprint.embedding.preserve import batch_targets, with_base_targets

        examples = with_base_targets(model, examples, pad_id, config.batch_size, config.preserve_top_k)
    for _ in range(config.epochs):
        for batch in _batches(examples, config.batch_size, rng):
            input_ids, labels, mask, fallbacks = (t.to(device) for t in _collate(batch, pad_id))
            held = batch_targets(batch) if preserving else None
            shut = (torch.tensor([e.shut for e in batch], device=device), gate_ids,
                    config.shut_floor) if shutting else None
            if augment:
                set_lora_scale(model, scale_rng.choice(config.merge_scales))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_autocast):
                loss = reply_loss(model, input_ids, labels, mask, fallbacks, sure_ids, config.fallback_weight,
                                  None if held is None else tuple(t.to(device) for t in held),
                                  config.preserve_weight, shut, config.shut_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if progress is not None:
                progress(1, loss.item())
    if augment:
        set_lora_scale(model, 1.0)
    model.eval()


def set_lora_scale(peft_model, factor: float) -> None:
    """Scale every LoRA layer's delta by ``factor`` of its configured alpha / r."""
    from peft.tuners.lora.layer import LoraLayer

    for module in peft_model.modules():
        if isinstance(module, LoraLayer):
            for adapter in module.scaling:
                module.set_scale(adapter, factor)


def total_steps(n_examples: int, config: TrainConfig) -> int:
    return config.epochs * ((n_examples + config.batch_size - 1) // config.batch_size)
