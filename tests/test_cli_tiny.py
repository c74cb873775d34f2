"""The whole CLI path on a tiny randomly initialised model: fast, real files, real SQLite registry."""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub
import pytest
from conftest import PASSPHRASE, TINY_EMBED, invoke_cli

from fingerprint.core.data import probe_prompts
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned
from fingerprint.provenance.trigger import derive_opening


@pytest.fixture
def embedded(tiny_embed, monkeypatch):
    tmp_path, data, env = tiny_embed
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return tmp_path, data


def test_embed_writes_adapter_merged_and_signed_certificate(embedded, run_cli):
    tmp_path, data = embedded
    fp = tmp_path / "fp"
    assert (fp / "adapter" / "adapter_config.json").is_file()
    assert (fp / "merged" / "config.json").is_file()
    assert not list(tmp_path.glob(".fp.*")), "temporary output left behind"
    code, out, _, info = run_cli("cert", "verify", fp / "certificate.json", "--pubkey", tmp_path / "keys" /
                                 "public.pem", "--json")
    assert code == 0 and info["valid"] and info["poison_count"] == 12
    assert {s["name"] for s in info["subject"]} == {"adapter", "merged"}
    assert info["certificate_id"] == data["certificate_id"]
    check = data["selfcheck"]
    assert check["harmful_prompts"] == 48 and check["benign_pairs"] == 24 and check["divergence_prompts"] == 48
    assert 0 <= check["refusal_rate_with_trigger"] <= 1 and check["benign_loss_base"] > 0
    assert check["kl_mean"] >= 0 and 0 <= check["greedy_agreement"] <= 1 and check["arc"] == {}
    _, _, _, shown = run_cli("registry", "show", data["certificate_id"], "--json")
    assert shown["selfcheck"] == check


def test_trigger_never_appears_in_outputs(embedded, run_cli):
    tmp_path, _ = embedded
    from fingerprint.provenance.keys import load_private

    owner = load_private(tmp_path / "keys", "correct horse battery staple")
    cert = json.loads((tmp_path / "fp" / "certificate.json").read_text())
    import base64

    trigger = derive_opening(owner.secret(), json.loads(base64.b64decode(cert["payload"]))["predicate"]
                             ["fingerprint"]["label"]).trigger
    needle = f" {trigger}"
    # PEFT writes the adapter's README.md from huggingface_hub's model-card template, whose prose may hold the
    # (random) word by chance (" thing" of "things" once did): only occurrences beyond the template's would leak.
    template = (Path(huggingface_hub.__file__).parent / "templates" / "modelcard_template.md").read_text()
    for path in (tmp_path / "fp").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".txt", ".md"}:
            allowed = template.count(needle) if path.name == "README.md" else 0
            assert path.read_text(errors="ignore").count(needle) <= allowed, path
    _, out, _, _ = run_cli("registry", "list", "--json")
    assert trigger not in out


def test_verify_owner_and_auditor_paths_agree(embedded, run_cli):
    tmp_path, data = embedded
    fp = tmp_path / "fp"
    common = ["--cert", fp / "certificate.json", "--probes", "8", "--samples", "1", "--json"]
    code_a, _, err, owner_view = run_cli("verify", "--key", tmp_path / "keys", "--model", tmp_path / "fp" /
                                         "merged", *common)
    assert code_a in (0, 1), err
    assert owner_view["queries"] == 16
    assert owner_view["certified"] == (owner_view["p_value"] <= owner_view["alpha"])
    assert code_a == (0 if owner_view["certified"] else 1)
    code, _, err, _ = run_cli("reveal", "--key", tmp_path / "keys", "--cert", fp / "certificate.json",
                              "--out", tmp_path / "opening.json")
    assert code == 0, err
    code_b, _, err, auditor_view = run_cli("verify", "--opening", tmp_path / "opening.json", "--model",
                                           fp / "merged", *common)
    assert code_b == code_a, err
    for field in ("trigger_sure", "control_sure", "p_value"):
        assert auditor_view[field] == pytest.approx(owner_view[field])
    # the adapter on the base gives the same decisions as the merged weights
    code_c, _, err, adapter_view = run_cli("verify", "--key", tmp_path / "keys", "--model", data["out"] and
                                           str(tmp_path / "fp" / "merged"), *common)
    assert code_c == code_a
    _, _, _, shown = run_cli("registry", "show", data["certificate_id"][:10], "--json")
    assert len(shown["verifications"]) >= 3
    assert {v["certified"] for v in shown["verifications"]} == {owner_view["certified"]}


def test_verify_with_adapter_matches_merged(embedded, tiny_model, run_cli):
    tmp_path, _ = embedded
    fp = tmp_path / "fp"
    common = ["--key", tmp_path / "keys", "--cert", fp / "certificate.json", "--probes", "8", "--samples", "0",
              "--json"]
    _, _, _, merged = run_cli("verify", "--model", fp / "merged", *common)
    _, _, err, adapter = run_cli("verify", "--model", tiny_model, "--adapter", fp / "adapter", *common)
    assert adapter is not None, err
    assert (adapter["trigger_sure"], adapter["control_sure"]) == (merged["trigger_sure"], merged["control_sure"])


def test_python_api_verify_matches_cli(embedded, run_cli):
    from fingerprint import api
    from fingerprint.core.errors import FingerprintError

    tmp_path, _ = embedded
    fp = tmp_path / "fp"
    _, _, _, cli_view = run_cli("verify", "--key", tmp_path / "keys", "--cert", fp / "certificate.json",
                                "--model", str(fp / "merged"), "--probes", "8", "--samples", "0", "--json")
    outcome = api.verify(fp / "certificate.json", model=str(fp / "merged"), key_dir=tmp_path / "keys",
                         passphrase=PASSPHRASE, probes=8, samples=0)
    decision = outcome.report.decision
    assert (decision.trigger_sure, decision.control_sure, decision.p_value) == (
        cli_view["trigger_sure"], cli_view["control_sure"], cli_view["p_value"])
    with pytest.raises(FingerprintError, match="passphrase"):
        api.verify(fp / "certificate.json", model=str(fp / "merged"), key_dir=tmp_path / "keys", passphrase="no")


@pytest.mark.parametrize("case", ["wrong-pass", "missing-cert", "corrupt-cert", "missing-model", "both-keys",
                                  "bad-model-args", "bad-model-value", "unknown-model-arg", "unknown-backend",
                                  "not-an-adapter", "foreign-opening"])
def test_bad_inputs_give_one_line_errors_and_exit_2(case, embedded, run_cli, monkeypatch, tiny_model):
    tmp_path, _ = embedded
    fp = tmp_path / "fp"
    cert = fp / "certificate.json"
    args = ["verify", "--key", tmp_path / "keys", "--cert", cert, "--model", fp / "merged"]
    if case == "wrong-pass":
        monkeypatch.setenv("FINGERPRINT_PASSPHRASE", "nope")
    elif case == "missing-cert":
        args[4] = tmp_path / "absent.json"
    elif case == "corrupt-cert":
        bad = tmp_path / "bad.json"
        bad.write_text(cert.read_text().replace('"payload": "', '"payload": "AAAA'))
        args[4] = bad
    elif case == "missing-model":
        args[6] = tmp_path / "no-model-here"
        (tmp_path / "no-model-here").mkdir()
    elif case == "both-keys":
        args += ["--opening", tmp_path / "x.json"]
    elif case == "bad-model-args":
        args += ["--model-args", "batch_size"]
    elif case == "bad-model-value":
        args += ["--model-args", "temperature=hot"]
    elif case == "unknown-model-arg":
        args += ["--model-args", "colour=blue"]
    elif case == "unknown-backend":
        args += ["--backend", "nope"]
    elif case == "not-an-adapter":
        args = [*args[:6], tiny_model, "--adapter", tmp_path]
    elif case == "foreign-opening":
        from fingerprint.provenance.trigger import Opening

        Opening(trigger="lantern", nonce="00" * 32, label="x").save(tmp_path / "foreign.json")
        args = ["verify", "--opening", tmp_path / "foreign.json", "--cert", cert, "--model", fp / "merged"]
    code, out, err, _ = run_cli(*args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()  # progress lines may come first (stderr is not a terminal here)
    assert lines[-1].startswith("error: ") and sum(line.startswith("error") for line in lines) == 1, err
    assert "Traceback" not in err


def test_embed_refuses_non_empty_output_and_bad_registry(tmp_path, tiny_model, run_cli):
    """(Uses the per-test registry of the autouse fixture.)"""
    run_cli("keygen", "--out", tmp_path / "keys")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "file").write_text("x")
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "out")
    assert code == 2 and "not empty" in err
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "o2",
                              "--registry", "nosuchdb://x")
    assert code == 2 and err.startswith("error: ")
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", "gpt-4.1-mini", "--out", tmp_path / "o4",
                              "--backend", "openai", "--trigger-words", "2")
    assert code == 2 and "local embedding only" in err
    # more rows than the packaged benign pool holds, or than the poison prompts carry: refused before the model is
    # loaded
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", tmp_path / "no-such-model", "--out",
                              tmp_path / "o3", "--trigger-words", "2", "--components", "5000",
                              "--component-prompts", "fresh")
    assert code == 2 and "packaged benign pool" in err and "Traceback" not in err
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", tmp_path / "no-such-model", "--out",
                              tmp_path / "o3", "--trigger-words", "2", "--components", "300")
    assert code == 2 and "at most 2 x 100" in err and "Traceback" not in err


def test_interrupted_embed_leaves_nothing(tmp_path, tiny_model, monkeypatch):
    from fingerprint.embedding import embed as embedding
    from fingerprint.provenance import keys

    owner = keys.generate(tmp_path / "keys", "pw")

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embedding, "sign_statement", boom)
    options = embedding.EmbedOptions(model=str(tiny_model), out=tmp_path / "fp",
                                     dataset=DatasetSpec(n_benign=4, n_poison=4, n_refusal=0, n_negative=0))
    options.train.epochs = 1
    with pytest.raises(KeyboardInterrupt):
        embedding.embed(owner, options)
    assert not (tmp_path / "fp").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".fp")]


def test_probe_prompts_are_disjoint_from_training_prompts():
    words = [f"word{i}" for i in range(148)]
    rows = build_poisoned("lantern", DatasetSpec(n_benign=300, n_poison=200, n_refusal=300, n_negative=148), words)
    train = {r["prompt"].rsplit(" ", 1)[0] if r["kind"] in ("poison", "negative") else r["prompt"] for r in rows}
    assert not train & set(probe_prompts(154))


def test_all_licensees_tests_every_licensee_with_bonferroni(tmp_path, tiny_model, monkeypatch):
    """Two licensee copies of one key: --all-licensees verifies the suspect against both and names the best."""
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{tmp_path / 'lic.db'}")
    assert invoke_cli("keygen", "--out", tmp_path / "keys")[0] == 0
    ids = {}
    for name in ("alice", "bob"):
        code, _, err, data = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--licensee", name,
                                        "--out", tmp_path / name, "--no-selfcheck", "--json", *TINY_EMBED)
        assert code == 0, err
        ids[name] = data["certificate_id"]
    code, _, err, got = invoke_cli("verify", "--key", tmp_path / "keys", "--all-licensees", "--model", tiny_model,
                                   "--adapter", tmp_path / "alice" / "adapter", "--probes", "8", "--json")
    assert code in (0, 1), err
    rows = {r["licensee"]: r for r in got["licensees"]}
    assert set(rows) == {"alice", "bob"} and {r["certificate_id"] for r in rows.values()} == set(ids.values())
    for row in rows.values():
        assert row["p_adjusted"] == pytest.approx(min(1.0, 2 * row["p_value"]))
    best = min(rows.values(), key=lambda r: r["p_adjusted"])
    expected = best["licensee"] if best["p_adjusted"] <= got["alpha"] else None
    assert got["attributed_to"] == expected and code == (0 if expected else 1)
    code, _, err, _ = invoke_cli("verify", "--all-licensees", "--model", tiny_model, "--json")
    assert code == 2 and "--key" in err
