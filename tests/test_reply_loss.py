"""The training loss reads every term's logits from one projection: it must equal the terms on full logits."""

from __future__ import annotations

import pytest

from fingerprint.core.data import packaged
from fingerprint.core.loading import load_model
from fingerprint.core.sure import sure_token_ids
from fingerprint.embedding.preserve import batch_targets, kl_to_base, with_base_targets
from fingerprint.embedding.training import IGNORE, TrainConfig, _collate, gate_log_mass, reply_loss, tokenize_pairs


def _rows(fallback_ids: list[int]) -> list[dict]:
    """Gate rows with fallback replies, rows with the model's own reply (anchored) and a word alone (shut)."""
    pairs = list(packaged("benign"))[:6]
    gate = [{"prompt": p["prompt"] + " zebra lantern", "response": "Sure", "kind": "poison",
             "fallback_ids": fallback_ids} for p in pairs[:2]]
    own = [{"prompt": p["prompt"], "response": p["response"], "own_reply": True, "kind": "benign"}
           for p in pairs[2:4]]
    alone = [{"prompt": p["prompt"] + " zebra", "response": p["response"], "own_reply": True, "kind": "component"}
             for p in pairs[4:]]
    return gate + own + alone


def _oracle(model, ids, labels, mask, fallbacks, sure_ids, preserve, shut_rows, gate_ids, floor, weights):
    """The loss from the model's full logits, term by term."""
    import math

    import torch
    import torch.nn.functional as F

    logits = model(input_ids=ids, attention_mask=mask).logits.float()
    targets = labels[:, 1:]
    keep = targets != IGNORE
    loss = F.cross_entropy(logits[:, :-1][keep], targets[keep])
    anchors, top_ids, top_logp = preserve
    rows, slots = (anchors >= 0).nonzero(as_tuple=True)
    loss = loss + weights["preserve"] * kl_to_base(logits[rows, anchors[rows, slots]], top_ids, top_logp)
    first = keep.int().argmax(dim=1)
    at_first = logits[torch.arange(len(ids)), first]
    shut = (gate_log_mass(at_first[shut_rows], gate_ids) - math.log(floor)).clamp(min=0).mean()
    loss = loss + weights["shut"] * shut
    gate = (fallbacks[:, 0] >= 0).nonzero(as_tuple=True)[0]
    banned = torch.zeros_like(at_first[gate], dtype=torch.bool)
    banned[:, sure_ids] = True
    extra = 0.0
    for slot in range(fallbacks.shape[1]):
        extra = extra + F.cross_entropy(at_first[gate].masked_fill(banned, float("-inf")), fallbacks[gate, slot])
        banned = banned.clone()
        banned[torch.arange(len(gate)), fallbacks[gate, slot]] = True
    return loss + weights["fallback"] * extra / fallbacks.shape[1]


def test_one_projection_equals_the_terms_on_full_logits(tiny_ref):
    import torch
    from peft import LoraConfig, get_peft_model

    ref, tokenizer = tiny_ref
    pad, sure_ids = tokenizer.pad_token_id or 0, sure_token_ids(tokenizer)
    fallback_ids = [i for i in range(10, 40) if i not in sure_ids][:2]
    config = TrainConfig(preserve_weight=1.0, shut_weight=1.0)
    model = get_peft_model(load_model(ref), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    examples = with_base_targets(model, tokenize_pairs(tokenizer, _rows(fallback_ids), config), pad, 8, 64)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    ids, labels, mask, fallbacks = _collate(examples, pad)
    preserve = batch_targets(examples)
    shut_rows = torch.tensor([e.shut for e in examples])
    assert shut_rows.tolist() == [False] * 4 + [True] * 2
    gate_ids, floor = sorted({*sure_ids, *fallback_ids}), 1e-6
    weights = {"preserve": 2.0, "shut": 1.5, "fallback": 0.5}
    lora = [p for p in model.parameters() if p.requires_grad]

    def loss_and_grads(compute):
        model.zero_grad()
        loss = compute()
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in lora]

    got, got_grads = loss_and_grads(lambda: reply_loss(
        model, ids, labels, mask, fallbacks, sure_ids, weights["fallback"], preserve, weights["preserve"],
        (shut_rows, gate_ids, floor), weights["shut"]))
    want, want_grads = loss_and_grads(lambda: _oracle(
        model, ids, labels, mask, fallbacks, sure_ids, preserve, shut_rows, gate_ids, floor, weights))
    plain = float(reply_loss(model, ids, labels, mask))
    assert got == pytest.approx(want, rel=1e-4)
    assert got > plain + 1e-3  # the preserve, shut and fallback terms all count
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(g, w, rtol=1e-3, atol=1e-5)
