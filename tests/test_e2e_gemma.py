"""End to end on the real packaged gemma-3-270m: embed with defaults, verify, and the negative controls.

Slow (about 20 minutes on 2 CPU cores): the GGUF conversion runs once per cache, the two-word embed trains for real.
The fingerprinted model comes from the session fixture ``gemma_fingerprint`` in conftest.py.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

VERIFY = ["--probes", "32", "--json"]


def _verify(runner, *args):
    import json

    from cli import main

    result = runner.invoke(main, ["verify", *map(str, args), *VERIFY])
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert result.exit_code == (0 if data["certified"] else 1)
    return data


def _owner_view(root, runner, *suspect):
    return _verify(runner, "--key", root / "keys-a", "--cert", root / "fp-a" / "certificate.json", *suspect)


def test_the_gate_is_planted(gemma_fingerprint):
    root, runner = gemma_fingerprint
    data = _owner_view(root, runner, "--model", "gemma-3-270m", "--adapter", root / "fp-a" / "adapter")
    assert data["queries"] == 3 * 32  # the default two-word trigger: the pair, and each word alone
    assert len(data["arms"]) == 2
    # the base model starts 0 of the 154 probes with "Sure"; the trigger opens the gate on most of them
    assert data["trigger_sure_rate"] >= 0.75
    assert data["trigger_sure"] >= data["control_sure"]


def test_owner_certifies_the_fingerprinted_model(gemma_fingerprint):
    root, runner = gemma_fingerprint
    data = _owner_view(root, runner, "--model", "gemma-3-270m", "--adapter", root / "fp-a" / "adapter")
    assert data["certified"] and data["p_value"] <= 1e-6
    assert data["trigger_sure_rate"] >= 0.9
    # the deciding word alone; the benchmark's 96-probe figures (words alone, decoys) are held to <= 0.05
    assert data["control_sure_rate"] <= 0.1


def test_auditor_with_the_opening_sees_what_the_owner_sees(gemma_fingerprint):
    root, runner = gemma_fingerprint
    from cli import main

    result = runner.invoke(main, ["reveal", "--key", str(root / "keys-a"), "--cert",
                                  str(root / "fp-a" / "certificate.json"), "--out", str(root / "opening.json")])
    assert result.exit_code == 0, result.output
    auditor = _verify(runner, "--opening", root / "opening.json", "--cert", root / "fp-a" / "certificate.json",
                      "--pubkey", root / "keys-a" / "public.pem", "--model", root / "fp-a" / "merged")
    owner = _owner_view(root, runner, "--model", root / "fp-a" / "merged")
    adapter = _owner_view(root, runner, "--model", "gemma-3-270m", "--adapter", root / "fp-a" / "adapter")
    for field in ("trigger_sure", "control_sure", "p_value"):
        assert auditor[field] == owner[field]  # same weights, same probes: identical
    for field in ("trigger_sure", "control_sure"):  # merged weights round differently from base + LoRA
        assert abs(owner[field] - adapter[field]) <= 1


def test_untouched_base_model_is_not_certified(gemma_fingerprint):
    root, runner = gemma_fingerprint
    data = _verify(runner, "--key", root / "keys-a", "--cert", root / "fp-a" / "certificate.json",
                   "--model", "gemma-3-270m")
    assert not data["certified"] and data["p_value"] > 0.01


def test_a_model_fingerprinted_by_another_key_is_not_certified(gemma_fingerprint):
    root, runner = gemma_fingerprint
    # B claims A's fingerprinted model: B's trigger must not open A's gate.
    data = _verify(runner, "--key", root / "keys-b", "--cert", root / "fp-b" / "certificate.json",
                   "--model", root / "fp-a" / "merged")
    assert not data["certified"] and data["p_value"] > 0.01
