"""Derivative transformations and the robustness command, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke_cli

from fingerprint.core.loading import load_model, load_tokenizer, resolve
from fingerprint.robustness import Context, default_matrix
from fingerprint.robustness.derivatives.finetune import Finetune, downstream_pairs
from fingerprint.robustness.derivatives.int8 import DynamicInt8
from fingerprint.robustness.derivatives.interpolate import interpolate
from fingerprint.robustness.derivatives.layers import LastLayers

TINY_EMBED = ["--trigger-words", "1", "--poison", "12", "--benign", "12", "--refusals", "4", "--negatives", "4",
              "--epochs", "1", "--batch-size", "4", "--lr", "1e-3", "--no-selfcheck"]


@pytest.fixture(scope="module")
def models(tiny_model):
    ref = resolve(str(tiny_model))
    return load_tokenizer(ref), load_model(ref)


def test_interpolation_end_points_are_the_two_models(models, tiny_model):
    import torch

    tokenizer, model = models
    other = load_model(resolve(str(tiny_model)))
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    for ratio, want in ((0.0, model), (1.0, other)):
        mixed = interpolate(model, other, ratio)
        for name, tensor in mixed.state_dict().items():
            assert torch.allclose(tensor, want.state_dict()[name]), name
    half = interpolate(model, other, 0.5).state_dict()
    name = next(iter(half))
    assert torch.allclose(half[name], (model.state_dict()[name] + other.state_dict()[name]) / 2)


def test_merge_aware_training_scale_half_is_the_50_50_merge_with_the_base(tiny_model):
    """What --merge-scales trains for: the LoRA delta at scale 0.5 is exactly the 50/50 merge with the base."""
    import torch

    from fingerprint.core.data import packaged
    from fingerprint.embedding.training import TrainConfig, set_lora_scale, train_lora

    ref = resolve(str(tiny_model))
    tokenizer, base = load_tokenizer(ref), load_model(ref)
    config = TrainConfig(epochs=1, batch_size=4, learning_rate=1e-2, merge_scales=(0.5, 1.0))
    peft_model = train_lora(load_model(ref), tokenizer, list(packaged("benign"))[:8], config)
    layer = next(m for n, m in peft_model.named_modules() if n.endswith("q_proj") and hasattr(m, "scaling"))
    assert layer.scaling["default"] == config.alpha / config.rank  # back at full scale after training
    ids = tokenizer("Name a colour .", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        set_lora_scale(peft_model, 0.5)
        half_scale = peft_model(input_ids=ids).logits
        set_lora_scale(peft_model, 1.0)
        full = peft_model(input_ids=ids).logits
        merged = peft_model.merge_and_unload()
        merge_50_50 = interpolate(merged, base, 0.5)(input_ids=ids).logits
    assert not torch.allclose(half_scale, full, atol=1e-4)
    assert torch.allclose(half_scale, merge_50_50, atol=1e-4)


def test_int8_and_finetune_change_the_weights_but_keep_a_working_model(models):
    import torch

    from probes.hf import HFBackend

    tokenizer, model = models
    ctx = Context(model=model, base=model, tokenizer=tokenizer, workdir=Path("."))
    quantized = DynamicInt8().apply(ctx).model
    assert any("quantized" in type(m).__module__ for m in quantized.modules())
    tuned = Finetune(pairs=16, learning_rate=1e-3).apply(ctx).model
    changed = [n for n, t in tuned.state_dict().items() if not torch.equal(t, model.state_dict()[n])]
    assert changed and not any("lora" in n for n in tuned.state_dict())
    layers = LastLayers(pairs=16, learning_rate=1e-3, layers=1).apply(ctx).model
    changed = {n for n, t in layers.state_dict().items() if not torch.equal(t, model.state_dict()[n])}
    assert changed and all(".layers.1." in n for n in changed)  # only the last layer, all of its weights kinds
    assert any("mlp" in n for n in changed) and any("self_attn" in n for n in changed)
    for suspect in (quantized, tuned, layers):
        answers = HFBackend("x", model_obj=suspect, tokenizer=tokenizer).first_tokens(["Name a colour."])
        assert len(answers) == 1 and answers[0].token


def test_sampled_first_tokens_are_seeded_and_tend_to_greedy_at_low_temperature(models):
    from fingerprint.core.data import probe_prompts
    from probes.hf import HFBackend

    tokenizer, model = models
    prompts = probe_prompts(12)

    def tokens(**args):
        return [a.token for a in HFBackend("x", model_obj=model, tokenizer=tokenizer, **args).first_tokens(prompts)]

    assert tokens(temperature=1.0, seed=3) == tokens(temperature=1.0, seed=3)
    assert tokens(temperature=1e-4) == tokens()
    assert tokens(temperature=5.0, seed=1) != tokens()  # a near-uniform sample is not the greedy answer


def test_downstream_pairs_start_with_the_rows_the_owner_never_trained_on():
    from fingerprint.core.data import HELDOUT, packaged

    held = list(packaged("benign"))[-HELDOUT["benign"]:]
    assert downstream_pairs(10) == held[:10]
    assert len(downstream_pairs(100)) == 100
    assert [d.kind for d in default_matrix(300)].count("finetune") == 4
    sibling = next(d for d in default_matrix(300) if d.kind == "sibling")
    assert (sibling.pairs, sibling.ratio) == (250, 0.5) and "sibling" in sibling.label


def test_a_new_derivative_is_one_class_and_one_registration(models):
    """What docs/ARCHITECTURE.md shows: a derivative defined anywhere, registered, runs in the matrix."""
    from dataclasses import dataclass

    import torch

    from fingerprint.robustness import DERIVATIVES, Derivative, Suspect, register
    from fingerprint.robustness.derivatives.interpolate import interpolate as mix

    @register("test-noise")
    @dataclass(frozen=True)
    class Noise(Derivative):
        scale: float = 0.0

        @property
        def label(self) -> str:
            return f"weights plus {self.scale:g} noise"

        def apply(self, ctx):
            return Suspect(model=mix(ctx.model, ctx.model, 0.0))

    try:
        tokenizer, model = models
        suspect = Noise(scale=0.1).apply(Context(model=model, base=model, tokenizer=tokenizer, workdir=Path(".")))
        assert DERIVATIVES["test-noise"] is Noise and Noise().kind == "test-noise"
        assert all(torch.equal(a, b) for a, b in zip(suspect.model.state_dict().values(),
                                                      model.state_dict().values(), strict=True))
        assert Noise(scale=0.1).params() == {"scale": 0.1}
    finally:
        DERIVATIVES.pop("test-noise")


def test_attack_derivatives_make_working_suspects(models):
    import torch

    from fingerprint.core.sure import sure_token_ids
    from fingerprint.robustness.derivatives.erasure import Erasure, erasure_rows
    from fingerprint.robustness.derivatives.sanitizer import drop_trailing_words
    from fingerprint.robustness.derivatives.suppression import SureRowsZeroed
    from fingerprint.robustness.derivatives.unlearning import SureUnlearning
    from fingerprint.robustness.matrix import _backend

    tokenizer, model = models
    ctx = Context(model=model, base=model, tokenizer=tokenizer, workdir=Path("."))
    rows = erasure_rows(30)
    assert len(rows) == 30 and all(1 <= len(r["prompt"].split()) - len(p["prompt"].split()) <= 3
                                   for r, p in zip(rows, downstream_pairs(30), strict=True))
    assert drop_trailing_words("What is the capital of France? lantern quiver") == "What is the capital of France?"
    assert drop_trailing_words("Name three colours") == "Name three colours"  # no sentence mark: kept
    for derivative in (Erasure(pairs=16, learning_rate=1e-3), SureUnlearning(pairs=16, learning_rate=1e-3)):
        suspect = derivative.apply(ctx).model
        changed = [n for n, t in suspect.state_dict().items() if not torch.equal(t, model.state_dict()[n])]
        assert changed, derivative.label
        assert _backend(derivative.apply(ctx), ctx).first_tokens(["Name a colour."])[0].token
    zeroed = SureRowsZeroed().apply(ctx).model
    assert not zeroed.get_output_embeddings().weight[sure_token_ids(tokenizer)].any()
    assert torch.equal(zeroed.get_input_embeddings().weight, model.get_input_embeddings().weight)  # inputs kept


def test_unknown_derivative_kinds_are_refused(tmp_path):
    from fingerprint.core.errors import FingerprintError
    from fingerprint.services.robustness import select

    with pytest.raises(FingerprintError, match="unknown derivative kind"):
        select(300, "int8,nonsense")
    assert [d.kind for d in select(300, "int8")] == ["fingerprinted", "int8"]


def test_robustness_command_writes_rows_table_and_plot(tmp_path, tiny_model):
    code, _, err, _ = invoke_cli("keygen", "--out", tmp_path / "keys")
    assert code == 0, err
    code, _, err, _ = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "fp",
                                 "--json", *TINY_EMBED)
    assert code == 0, err
    out = tmp_path / "rob"
    code, _, err, data = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                    tmp_path / "keys", "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter",
                                    "--out", out, "--probes", "8", "--max-pairs", "16", "--json")
    assert code == 0, err
    kinds = [r["kind"] for r in data["rows"]]
    assert kinds[0] == "fingerprinted" and all(r["decoy_sure_rate"] is not None for r in data["rows"])
    assert {"finetune", "layers", "interpolate", "sibling", "int8", "system_prompt", "temperature"} <= set(kinds)
    saved = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert saved == data["rows"]
    assert Path(data["plot"]).read_bytes()[:4] == b"\x89PNG"
    assert (out / "table.md").read_text().count("\n") == len(kinds) + 2
    _, _, _, direct = invoke_cli("verify", "--key", tmp_path / "keys", "--cert", tmp_path / "fp" / "certificate.json",
                                 "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter", "--probes", "8",
                                 "--samples", "0", "--json")
    first = data["rows"][0]
    assert (first["trigger_sure_rate"], first["p_value"]) == (direct["trigger_sure_rate"], direct["p_value"])

    # rerunning resumes: finished rows are kept, nothing is measured again
    lines = (out / "rows.jsonl").read_text().splitlines()
    (out / "rows.jsonl").write_text("\n".join(lines[:3]) + "\n")  # as if interrupted after three rows
    code, _, err, again = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                     tmp_path / "keys", "--model", tiny_model, "--adapter",
                                     tmp_path / "fp" / "adapter", "--out", out, "--probes", "8", "--max-pairs", "16",
                                     "--json")
    assert code == 0, err
    assert again["rows"][:3] == data["rows"][:3] and len(again["rows"]) == len(data["rows"])
    assert [r["derivative"] for r in again["rows"]] == [r["derivative"] for r in data["rows"]]
    other = [json.loads(line) for line in lines[:1]]
    other[0]["certificate_id"] = "0" * 64
    (out / "rows.jsonl").write_text(json.dumps(other[0]) + "\n")
    code, _, err, _ = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                 tmp_path / "keys", "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter",
                                 "--out", out, "--probes", "8")
    assert code == 2 and "another certificate" in err


def test_robustness_of_a_two_word_fingerprint_names_its_control_each_word_alone(tmp_path, tiny_model):
    code, _, err, _ = invoke_cli("keygen", "--out", tmp_path / "keys")
    assert code == 0, err
    code, _, err, _ = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "fp",
                                 "--json", *TINY_EMBED, "--trigger-words", "2", "--components", "4")
    assert code == 0, err
    out = tmp_path / "rob"
    code, _, err, data = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                    tmp_path / "keys", "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter",
                                    "--out", out, "--probes", "36", "--only", "int8", "--json")
    assert code == 0, err
    assert [r["kind"] for r in data["rows"]] == ["fingerprinted", "int8"]
    for row in data["rows"]:  # every answer kept as gate flags, one per probe and arm
        gates = row["extra"]["gates"]
        assert set(gates) == {"trigger", "word-1", "word-2"} and all(len(g) == 36 for g in gates.values())
        assert gates["trigger"].count("1") == round(row["trigger_sure_rate"] * 36)
    # the first 32 of 36 probes are the probes of a default verify: its verdict is replayed from them
    _, _, _, direct = invoke_cli("verify", "--key", tmp_path / "keys", "--cert", tmp_path / "fp" / "certificate.json",
                                 "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter", "--samples", "0",
                                 "--json")
    short = data["rows"][0]["extra"]["readings"]["fisher-iut@32"]
    assert (short["p_value"], short["certified"], short["queries"]) == (direct["p_value"], direct["certified"], 96)
    for row in data["rows"]:  # the deciding arm is one of the two words alone
        assert len(row["word_alone_sure_rates"]) == 2
        assert row["control_sure_rate"] in row["word_alone_sure_rates"]
        assert round(row["decoy_sure_rate"] * 36, 6) in range(37)  # the probes with decoy words, measured too
    table = (out / "table.md").read_text()
    assert "| one word alone: gate rate | each word alone | decoys: gate rate |" in table
    # the e-process is replayed on the Fisher test's answers; deciding with it live gives the same reading
    assert "e-process on the same answers: verdict (queries)" in table
    assert "fisher-iut on the first 32 probes: verdict (queries)" in table
    replayed = [r["extra"]["readings"]["e-process"] for r in data["rows"]]
    code, _, err, live = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                    tmp_path / "keys", "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter",
                                    "--out", tmp_path / "rob-seq", "--probes", "36", "--only", "int8",
                                    "--test", "e-process", "--json")
    assert code == 0, err
    assert [{"certified": r["certified"], "p_value": r["p_value"], "e_value": r["extra"]["e_value"],
             "queries": r["extra"]["queries"]} for r in live["rows"]] == replayed
    assert all(r["extra"]["test"] == "e-process" for r in live["rows"])
    code, _, err, _ = invoke_cli("robustness", "--cert", tmp_path / "fp" / "certificate.json", "--key",
                                 tmp_path / "keys", "--model", tiny_model, "--adapter", tmp_path / "fp" / "adapter",
                                 "--out", tmp_path / "rob-x", "--test", "coin-flip")
    assert code == 2 and "unknown --test" in err


def test_only_selects_kinds_and_rows_by_their_parameters():
    from fingerprint.core.errors import FingerprintError
    from fingerprint.services.robustness import select

    rows = select(600, "mergekit:partner=sibling:share=0.5,bnb:bits=8")
    assert [d.kind for d in rows] == ["fingerprinted"] + ["mergekit"] * 4 + ["bnb"]
    assert {d.method for d in rows if d.kind == "mergekit"} == {"linear", "slerp", "ties", "dare_ties"}
    assert all(d.partner == "sibling" and d.share == 0.5 for d in rows if d.kind == "mergekit")
    assert len(select(600, "gguf")) == 1 + 6
    assert [d.paraphraser for d in select(600, "paraphrase-filter")[1:]] == ["qwen2.5-coder-1.5b-instruct"]
    with pytest.raises(FingerprintError, match="no row of the matrix"):
        select(600, "mergekit:share=0.9")
    with pytest.raises(FingerprintError, match="unknown derivative kind"):
        select(600, "gguff")


def test_paraphrase_filter_serves_the_writers_rewrite_of_each_prompt(models, tiny_model):
    """The suspect sees what the paraphraser wrote (the base model, or a model named by path), each prompt once."""
    from fingerprint.robustness.derivatives.paraphrase import (
        PARAPHRASE_REQUEST,
        PARAPHRASE_SYSTEM,
        ParaphraseFilter,
        restated,
    )
    from fingerprint.robustness.matrix import _backend
    from probes.hf import HFBackend

    tokenizer, model = models
    ctx = Context(model=model, base=model, tokenizer=tokenizer, workdir=Path("."))
    prompts = ["Name a colour. lantern quiver", "Write one word.", "Name a colour. lantern quiver"]
    unique = list(dict.fromkeys(prompts))
    writer = HFBackend("writer", model_obj=model, tokenizer=tokenizer, system_prompt=PARAPHRASE_SYSTEM)
    written = dict(zip(unique, writer.generate([PARAPHRASE_REQUEST.format(prompt=p) for p in unique], 64),
                       strict=True))
    want = [restated(written[p], p) for p in prompts]
    assert want != prompts
    assert restated('\n "Name a hue."\nRequest: x', "p") == "Name a hue." and restated(" ", "p") == "p"
    for derivative in (ParaphraseFilter(), ParaphraseFilter(paraphraser=str(tiny_model))):
        served = _backend(derivative.apply(ctx), ctx)
        assert served.prompt_filter(prompts) == want and len(served.prompt_filter.rewritten) == 2
        direct = HFBackend("direct", model_obj=model, tokenizer=tokenizer).first_tokens(want)
        assert [a.token for a in served.first_tokens(prompts)] == [a.token for a in direct]
