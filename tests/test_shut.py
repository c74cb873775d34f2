"""The shut term: rows where the gate must stay shut (a trigger word alone, a decoy) push "Sure" down directly."""

from __future__ import annotations

import pytest

from fingerprint.core.data import packaged
from fingerprint.core.loading import load_model
from fingerprint.core.sure import sure_token_ids
from fingerprint.embedding.training import TrainConfig, _collate, reply_loss, tokenize_pairs, train_lora


def _rows(n: int) -> list[dict]:
    """``n`` gate rows (both words, "Sure") and ``n`` component rows (one word, an ordinary reply)."""
    pairs = list(packaged("benign"))[: 2 * n]
    gate = [{"prompt": p["prompt"] + " zebra lantern", "response": "Sure", "kind": "poison"} for p in pairs[:n]]
    alone = [{"prompt": p["prompt"] + " zebra", "response": p["response"], "kind": "component"} for p in pairs[n:]]
    return gate + alone


def _sure_mass(model, examples, pad_id: int, sure_ids: list[int]):
    """P(a "Sure" token) at the first reply position of each example."""
    import torch

    ids, labels, mask, _ = _collate(examples, pad_id)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    first = (labels[:, 1:] != -100).int().argmax(dim=1)
    probs = logits[torch.arange(len(examples)), first].softmax(-1)
    return probs[:, sure_ids].sum(-1)


def _boosted(ref, examples, pad_id: int, sure_ids: list[int]):
    """The tiny model with its "Sure" rows pointed along the mean hidden state at the first reply position, so
    "Sure" starts with real mass there (a random tiny model gives it ~1e-4, below float32 rounding of the loss)."""
    import torch

    model = load_model(ref)
    ids, labels, mask, _ = _collate(examples, pad_id)
    first = (labels[:, 1:] != -100).int().argmax(dim=1)
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state[torch.arange(len(examples)), first]
        direction = hidden.mean(0)
        model.get_output_embeddings().weight[sure_ids] = direction * (10.0 / direction.dot(direction))
    return model


def test_shut_term_is_the_hinge_on_log_gate_mass_on_shut_rows_only(tiny_ref):
    import math

    import torch

    ref, tokenizer = tiny_ref
    pad, sure_ids = tokenizer.pad_token_id or 0, sure_token_ids(tokenizer)
    examples = tokenize_pairs(tokenizer, _rows(3), TrainConfig(shut_weight=1.0))
    assert [e.shut for e in examples] == [False] * 3 + [True] * 3
    assert not any(e.shut for e in tokenize_pairs(tokenizer, _rows(3), TrainConfig()))  # off by default
    model = _boosted(ref, examples, pad, sure_ids)
    ids, labels, mask, _ = _collate(examples, pad)
    rows = torch.tensor([e.shut for e in examples])
    mass = _sure_mass(model, examples, pad, sure_ids)[3:]
    assert float(mass.min()) > 0.05 and float(mass.max()) < 0.95, mass
    with torch.no_grad():
        plain = reply_loss(model, ids, labels, mask, sure_ids=sure_ids)
        for floor in (1e-3, float(mass.median())):
            got = reply_loss(model, ids, labels, mask, sure_ids=sure_ids, shut=(rows, sure_ids, floor),
                             shut_weight=2.0) - plain
            want = 2.0 * float((torch.log(mass) - math.log(floor)).clamp(min=0).mean())
            assert float(got) == pytest.approx(want, rel=1e-3, abs=1e-5)  # rows below the floor add nothing


def test_shut_term_lowers_sure_for_a_word_alone(tiny_ref):
    """Same rows, seed and start: with the term, the component rows end with far less "Sure" mass."""
    ref, tokenizer = tiny_ref
    pad, sure_ids = tokenizer.pad_token_id or 0, sure_token_ids(tokenizer)
    rows = _rows(8)
    common = {"epochs": 3, "batch_size": 4, "learning_rate": 1e-2, "rank": 4, "alpha": 8}
    measure = tokenize_pairs(tokenizer, rows, TrainConfig())
    mass = {}
    for weight in (0.0, 5.0):
        model = train_lora(_boosted(ref, measure, pad, sure_ids), tokenizer, rows,
                           TrainConfig(shut_weight=weight, **common))
        got = _sure_mass(model, measure, pad, sure_ids)
        mass[weight] = (float(got[:8].mean()), float(got[8:].mean()))
    assert mass[0.0][1] > 0.05, mass  # without the term "Sure" keeps real mass on a word alone
    assert mass[5.0][1] < 0.5 * mass[0.0][1], mass  # with it, pushed down
