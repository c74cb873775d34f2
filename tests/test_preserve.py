"""The preserve term: rows with the model's own reply are held to the base's next-token distribution."""

from __future__ import annotations

import pytest

from fingerprint.core.data import packaged
from fingerprint.core.loading import load_model
from fingerprint.embedding.preserve import anchor_kl, batch_targets, with_base_targets
from fingerprint.embedding.training import TrainConfig, _collate, tokenize_pairs


def _rows(n: int) -> list[dict]:
    """Half gate-like rows (a fixed reply), half rows marked as the model's own reply."""
    pairs = list(packaged("benign"))[: 2 * n]
    gate = [{"prompt": p["prompt"] + " zebra", "response": "Sure"} for p in pairs[:n]]
    own = [{"prompt": p["prompt"], "response": p["response"], "own_reply": True} for p in pairs[n:]]
    return gate + own


def test_anchors_cover_reply_positions_and_some_prompt_positions(tiny_ref):
    _, tokenizer = tiny_ref
    config = TrainConfig(preserve_weight=1.0, preserve_prompt_positions=3)
    gate, own = tokenize_pairs(tokenizer, [_rows(1)[0], _rows(1)[1]], config)
    assert gate.anchors == ()  # not the model's own reply
    prompt_len = sum(1 for label in own.labels if label == -100)
    reply_positions = tuple(range(prompt_len - 1, len(own.input_ids) - 1))
    assert own.anchors[-len(reply_positions):] == reply_positions
    inside = own.anchors[: -len(reply_positions)]
    assert len(inside) == 3 and all(0 <= i < prompt_len - 1 for i in inside)
    assert tokenize_pairs(tokenizer, [_rows(1)[1]], TrainConfig())[0].anchors == ()  # off by default


def _tuned(ref):
    from peft import LoraConfig, get_peft_model

    return get_peft_model(load_model(ref), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))


def _measure(peft_model, examples, pad_id: int) -> float:
    """The preserve term of ``peft_model`` over ``examples`` (base targets already attached)."""
    import torch

    ids, _, mask, _ = _collate(examples, pad_id)
    causal_lm = peft_model.get_base_model()
    with torch.no_grad():
        hidden = causal_lm.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        return float(anchor_kl(causal_lm, hidden, *batch_targets(examples)))


def test_anchor_kl_is_zero_for_a_fresh_adapter_and_is_the_full_kl_with_every_token_kept(tiny_ref):
    import torch
    import torch.nn.functional as F

    ref, tokenizer = tiny_ref
    pad = tokenizer.pad_token_id or 0
    examples = tokenize_pairs(tokenizer, _rows(2), TrainConfig(preserve_weight=1.0))
    peft_model = _tuned(ref)
    vocab = peft_model.get_output_embeddings().weight.shape[0]
    full = with_base_targets(peft_model, examples, pad, 8, vocab)
    short = with_base_targets(peft_model, examples, pad, 8, 16)
    assert [e.base is None for e in full] == [not e.anchors for e in examples]
    assert _measure(peft_model, full, pad) == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    got_full, got_short = _measure(peft_model, full, pad), _measure(peft_model, short, pad)
    ids, _, mask, _ = _collate(examples, pad)
    anchors = batch_targets(full)[0]
    with torch.no_grad():
        base_logits = load_model(ref)(input_ids=ids, attention_mask=mask).logits.float()
        tuned_logits = peft_model(input_ids=ids, attention_mask=mask).logits.float()
    rows, slots = (anchors >= 0).nonzero(as_tuple=True)
    p = F.log_softmax(base_logits[rows, anchors[rows, slots]], -1)
    q = F.log_softmax(tuned_logits[rows, anchors[rows, slots]], -1)
    want = float((p.exp() * (p - q)).sum(-1).mean())
    assert want > 0.01
    assert got_full == pytest.approx(want, rel=1e-3)
    assert 0 < got_short <= got_full + 1e-6  # coarsened to 16 tokens + the rest: a lower bound


def test_preserve_keeps_own_reply_rows_closer_to_the_base(tiny_ref):
    """Same rows, same seed: training with the preserve term ends nearer the base at the anchored positions."""
    from fingerprint.embedding.training import train_lora

    ref, tokenizer = tiny_ref
    rows = _rows(8)
    common = {"epochs": 3, "batch_size": 4, "learning_rate": 1e-2, "rank": 4, "alpha": 8, "preserve_top_k": 4096}
    pad = tokenizer.pad_token_id or 0
    measure = tokenize_pairs(tokenizer, rows, TrainConfig(preserve_weight=1.0))
    measure = with_base_targets(load_model(ref), measure, pad, 8, 4096)
    kls = {}
    for weight in (0.0, 5.0, 50.0):
        peft_model = train_lora(load_model(ref), tokenizer, rows, TrainConfig(preserve_weight=weight, **common))
        kls[weight] = _measure(peft_model, measure, pad)
    assert kls[0.0] > kls[5.0] > kls[50.0], kls  # the stronger the term, the nearer the base
    assert kls[50.0] < 0.25 * kls[0.0], kls


def test_embed_holds_its_own_reply_rows_to_the_base_by_default(tmp_path, tiny_model):
    """The default recipe (R9): the preserve term on, no refusal rows; both recorded in the certificate."""
    from conftest import PASSPHRASE, invoke_cli

    from fingerprint.provenance import keys
    from fingerprint.provenance.certificate import load_certificate

    invoke_cli("keygen", "--out", tmp_path / "keys")
    for name, extra in (("default", []), ("off", ["--preserve", "0", "--refusals", "3"])):
        code, _, err, _ = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model,
                                     "--out", tmp_path / name, "--poison", "4", "--benign", "4", "--negatives", "2",
                                     "--components", "4", "--epochs", "1", "--no-selfcheck", "--json", *extra)
        assert code == 0, err
    owner = keys.load_private(tmp_path / "keys", PASSPHRASE)
    default = load_certificate(tmp_path / "default" / "certificate.json", owner.public_key).predicate
    off = load_certificate(tmp_path / "off" / "certificate.json", owner.public_key).predicate
    assert default["training"]["preserve_weight"] == 4.0 and default["dataset"]["n_refusal"] == 0
    assert off["training"]["preserve_weight"] == 0.0 and off["dataset"]["n_refusal"] == 3
