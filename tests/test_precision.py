"""embed's training precision: what ``auto`` resolves to, and the bf16 path end to end on the tiny model."""

from __future__ import annotations

import pytest
from conftest import TINY_EMBED

from fingerprint.core import precision
from fingerprint.core.errors import FingerprintError


def test_auto_is_bf16_only_where_the_cpu_computes_it(monkeypatch):
    monkeypatch.delenv("FINGERPRINT_PRECISION")
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    for flag in ("avx512_bf16", "amx_bf16"):
        monkeypatch.setattr(precision, "cpu_flags", lambda flag=flag: frozenset({"avx512f", flag}))
        assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("auto", "mps") == "fp32"


def test_the_environment_fixes_auto_and_bad_values_are_user_errors(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    monkeypatch.setenv("FINGERPRINT_PRECISION", "fp32")
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"  # an explicit choice wins
    monkeypatch.setenv("FINGERPRINT_PRECISION", "fp16")
    with pytest.raises(FingerprintError, match="unknown precision 'fp16'"):
        precision.resolve_precision("auto", "cpu")


def test_cpu_flags_reads_this_machine():
    flags = precision.cpu_flags()
    assert isinstance(flags, frozenset) and all(isinstance(f, str) for f in flags)


def test_bf16_embed_records_its_precision_and_trains_the_fp32_adapter(tmp_path, tiny_model, run_cli):
    """The bf16 path (frozen weights in bf16, autocast, the adapter in fp32) learns what fp32 learns, to rounding."""
    import torch
    from safetensors.torch import load_file

    from fingerprint.provenance.certificate import load_certificate
    from fingerprint.provenance.keys import load_public

    assert run_cli("keygen", "--out", tmp_path / "keys")[0] == 0
    adapters, predicates = {}, {}
    for name, extra in (("bf16", []), ("fp32", ["--no-selfcheck"])):
        code, _, err, data = run_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out",
                                     tmp_path / name, "--json", "--precision", name, *extra, *TINY_EMBED)
        assert code == 0, err
        predicates[name] = load_certificate(tmp_path / name / "certificate.json",
                                            load_public(tmp_path / "keys" / "public.pem")).predicate
        adapters[name] = load_file(str(tmp_path / name / "adapter" / "adapter_model.safetensors"))
        assert data["precision"] == name
        if name == "bf16":
            assert data["selfcheck"]["kl_mean"] > 0  # the self-check ran on the bf16 model with its fp32 adapter
    assert predicates["bf16"]["training"]["precision"] == "bf16"
    assert predicates["bf16"]["training"]["bf16_autocast"] is True
    assert predicates["fp32"]["training"]["precision"] == "fp32"
    assert predicates["fp32"]["training"]["bf16_autocast"] is False
    assert {t.dtype for t in adapters["bf16"].values()} == {torch.float32}

    def lora_b(tensors):  # zero at the start: only training moves it
        return torch.cat([t.flatten() for name, t in sorted(tensors.items()) if "lora_B" in name])

    bf16, fp32 = lora_b(adapters["bf16"]), lora_b(adapters["fp32"])
    assert fp32.norm() > 0.1
    assert torch.nn.functional.cosine_similarity(bf16, fp32, dim=0) > 0.99  # measured: 0.9997
    assert abs(bf16.norm() / fp32.norm() - 1) < 0.05


def test_to_bf16_casts_and_keeps_the_head_output(tiny_ref):
    import torch

    from fingerprint.core.loading import load_model

    ref, _ = tiny_ref
    model = precision.to_bf16(load_model(ref))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    head = model.get_output_embeddings()
    assert head._forward_pre_hooks, "the contiguity hook is registered on the head"
    hidden = torch.randn(3, 5, head.in_features, dtype=torch.bfloat16)
    sliced = hidden[:, -1:, :]
    assert not sliced.is_contiguous()
    with torch.no_grad():
        assert torch.equal(head(sliced), torch.nn.functional.linear(sliced.contiguous(), head.weight))
