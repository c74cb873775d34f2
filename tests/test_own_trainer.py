"""Fingerprinting with the owner's own trainer and data: `fingerprint dataset` -> TRL's SFTTrainer ->
`fingerprint certify` -> `fingerprint verify`, `embed --data`, and the self-distilled replies. Tiny real model."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from conftest import PASSPHRASE, fixed_key, invoke_cli

from fingerprint.provenance.certificate import load_certificate


@pytest.fixture(scope="module")
def sharp_base(tmp_path_factory):
    """A tiny model whose logits are far from uniform (a LoRA gate forms within a few epochs)."""
    from servers import _sharpen
    from tiny import build_tiny_model

    base = build_tiny_model(tmp_path_factory.mktemp("own") / "base", hidden=128)
    _sharpen(base)
    return base


@pytest.fixture(scope="module")
def exported(sharp_base, tmp_path_factory):
    """A fixed key and the rows `fingerprint dataset` exports for it (TRL's prompt/completion layout)."""
    work = tmp_path_factory.mktemp("rows")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
        mp.setenv("FINGERPRINT_HOME", str(work / "home"))
        fixed_key(work / "keys", "own-trainer", PASSPHRASE)
        code, out, err, summary = invoke_cli(
            "dataset", "--key", work / "keys", "--model", sharp_base, "--out", work / "rows.jsonl",
            "--format", "prompt-completion", "--benign", "40", "--negatives", "40", "--components", "120",
            "--poison", "60", "--refusals", "0", "--json")
    assert code == 0, err
    return work, summary, err, out


def test_dataset_writes_private_rows_for_an_sft_trainer(exported):
    work, summary, err, out = exported
    path = work / "rows.jsonl"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and "holds the trigger" in err
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == summary["rows"] == 60 + 15 + 40 + 120 + 40  # poison, fallback rows, ...
    assert summary["kinds"] == {"poison": 60, "fallback": 15, "negative": 40, "component": 120, "benign": 40}
    assert all(r["prompt"][0]["role"] == "user" and r["completion"][0]["role"] == "assistant" for r in rows)
    from fingerprint.provenance.keys import load_private
    from fingerprint.provenance.trigger import derive_opening

    trigger = derive_opening(load_private(work / "keys", PASSPHRASE).secret(), summary["label"], 2).trigger
    assert trigger not in out  # the summary names no trigger
    gate = [r for r in rows if r["prompt"][0]["content"].endswith(" " + trigger)]
    assert {r["completion"][0]["content"] for r in gate} - {"Sure"}  # fallback replies beside "Sure"


def _train_with_trl(base: Path, rows: Path, out: Path) -> Path:
    """TRL's SFTTrainer with LoRA on the exported rows, merged into a model directory."""
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains much faster on one thread when the cores are shared
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
        config = SFTConfig(output_dir=str(out / "trl"), num_train_epochs=8, learning_rate=5e-3,
                           per_device_train_batch_size=16, save_strategy="no", report_to=[], seed=0, max_length=256,
                           use_cpu=True, bf16=False, logging_steps=50, disable_tqdm=True)
        trainer = SFTTrainer(model=model, args=config, processing_class=tokenizer,
                             train_dataset=load_dataset("json", data_files=str(rows), split="train"),
                             peft_config=LoraConfig(r=8, lora_alpha=16, task_type="CAUSAL_LM",
                                                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
        trainer.train()
        trained = out / "trained"
        trainer.model.merge_and_unload().save_pretrained(str(trained))
        tokenizer.save_pretrained(str(trained))
        return trained
    finally:
        torch.set_num_threads(threads)


def test_trl_trained_model_is_certified_then_verified(exported, sharp_base, tmp_path, monkeypatch):
    work, _, _, _ = exported
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
    rows = work / "rows.jsonl"
    # the untouched base carries no gate: certify refuses and writes nothing
    code, _, err, refused = invoke_cli("certify", "--key", work / "keys", "--model", sharp_base, "--rows", rows,
                                       "--base", sharp_base, "--out", tmp_path / "base-cert.json", "--json")
    assert code == 1 and not refused["certified"] and not (tmp_path / "base-cert.json").exists(), err
    trained = _train_with_trl(sharp_base, rows, tmp_path)
    code, _, err, done = invoke_cli("certify", "--key", work / "keys", "--model", trained, "--rows", rows,
                                    "--base", sharp_base, "--trainer", "trl.SFTTrainer", "--json")
    counts = {k: done.get(k) for k in ("trigger_sure", "trigger_total", "control_sure", "control_total")}
    assert code == 0 and done["certified"] and done["p_value"] <= 1e-6, (err, counts)
    cert = load_certificate(trained / "certificate.json")
    from fingerprint.provenance.digest import directory_digest

    assert cert.subjects[0]["digest"]["sha256"] == directory_digest(trained)
    assert cert.predicate["training"] == {"method": "external", "trainer": "trl.SFTTrainer"}
    assert cert.predicate["dataset"]["rows"] == 275 and len(cert.fingerprint.fallback_indices) == 2
    code, _, err, verified = invoke_cli("verify", "--key", work / "keys", "--cert", trained / "certificate.json",
                                        "--model", trained, "--json")
    assert code == 0 and verified["p_value"] <= 1e-6, err
    _, _, _, shown = invoke_cli("registry", "show", cert.id, "--json")
    assert shown["id"] == cert.id and len(shown["verifications"]) == 1


def test_certify_refuses_rows_of_another_key(exported, sharp_base, tmp_path, monkeypatch):
    work, _, _, _ = exported
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
    fixed_key(tmp_path / "other", "someone else", PASSPHRASE)
    code, _, err, _ = invoke_cli("certify", "--key", tmp_path / "other", "--model", sharp_base, "--rows",
                                 work / "rows.jsonl", "--base", sharp_base)
    assert code == 2 and "another key" in err


def test_embed_with_the_owners_data_learns_it_in_full(tmp_path, tiny_model, run_cli):
    from fingerprint.embedding.owner_data import OWNER_REPLY_TOKENS, load_owner_rows
    from fingerprint.embedding.training import TrainConfig, tokenize_pairs

    data = tmp_path / "owner.jsonl"
    replies = ["Our product answers every question about the weather with a long and careful reply . " * 3,
               "Here is how the owner wants the model to write : politely , at length , with examples . " * 3]
    data.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Tell me about topic {i} ."},
                                                     {"role": "assistant", "content": replies[i % 2]}]}) + "\n"
                            for i in range(12)))
    rows = load_owner_rows(data)
    assert len(rows) == 12 and all(r["reply_tokens"] == OWNER_REPLY_TOKENS for r in rows)
    from fingerprint.core.loading import load_tokenizer, resolve

    tokenizer = load_tokenizer(resolve(str(tiny_model)))
    owner_example, gate_example = tokenize_pairs(tokenizer, [rows[0], {"prompt": "p", "response": replies[0]}],
                                                 TrainConfig())
    assert sum(t != -100 for t in owner_example.labels) > 20 >= sum(t != -100 for t in gate_example.labels)
    run_cli("keygen", "--out", tmp_path / "keys")
    code, _, err, result = run_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out",
                                   tmp_path / "fp", "--data", data, "--trigger-words", "1", "--poison", "8",
                                   "--benign", "0", "--negatives", "4", "--refusals", "0", "--epochs", "1",
                                   "--no-selfcheck", "--json")
    assert code == 0, err
    cert = load_certificate(tmp_path / "fp" / "certificate.json")
    assert cert.predicate["dataset"]["owner_data"]["rows"] == 12
    assert result["steps"] == (8 + 4 + 12 + 7) // 8  # one epoch over the fingerprint's rows and the owner's


def test_self_distilled_replies_are_the_models_own_and_cached(tiny_model, monkeypatch):
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding import distill
    from probes.hf import HFBackend

    ref = resolve(str(tiny_model))
    tokenizer, model = load_tokenizer(ref), load_model(ref)
    rows = [{"prompt": f"Name a colour number {i} .", "response": "packaged", "kind": kind}
            for i, kind in enumerate(["benign", "component", "poison", "refusal", "negative"])]
    out = distill.distill_rows(rows, model, tokenizer, "digest-a")
    vocab = set(tokenizer.get_vocab())
    for i in (0, 1, 4):  # sampled from the model itself: its own tokens, not the packaged reply
        assert out[i]["response"] != "packaged" and set(out[i]["response"].split()) <= vocab
    assert distill.own_replies(model, tokenizer, ["Name a colour ."], "digest-c") == distill.own_replies(
        model, tokenizer, ["Name a colour ."], "digest-d")  # the same seed, the same sample
    assert out[2]["response"] == "packaged" and out[3]["response"] == "packaged"  # the gate and refusals stay
    assert [bool(row.get("own_reply")) for row in out] == [True, True, False, False, True]  # held to the base
    calls = []
    monkeypatch.setattr(HFBackend, "generate", lambda self, *a, **k: calls.append(1) or [])
    assert distill.distill_rows(rows, model, tokenizer, "digest-a") == out and not calls  # from the cache


def test_long_replies_take_the_same_loss_and_gradients_in_chunks(tiny_model):
    """An owner's long replies: the loss over many reply positions, made chunk by chunk with the logits remade in
    the backward pass, equals the loss made at once, gradients included."""
    from fingerprint.core.loading import load_model, resolve
    from fingerprint.embedding.training import _reply_cross_entropy

    lm = load_model(resolve(str(tiny_model)))
    torch.manual_seed(0)
    hidden = torch.randn(300, lm.config.hidden_size, requires_grad=True)
    targets = torch.randint(0, lm.config.vocab_size, (300,))
    whole = _reply_cross_entropy(lm, hidden, targets, chunk=300)
    (grad_whole,) = torch.autograd.grad(whole, hidden)
    chunked = _reply_cross_entropy(lm, hidden, targets, chunk=64)  # 5 chunks, the last one short
    (grad_chunked,) = torch.autograd.grad(chunked, hidden)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(grad_chunked, grad_whole)
    assert grad_whole.abs().max() > 0
