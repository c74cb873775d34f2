"""The openai backend against real OpenAI-compatible servers on 127.0.0.1: vLLM and ``transformers serve``.

Each server starts once for the module on the tiny fingerprinted model (``servers.tiny_fingerprint``):
vLLM serves the base model plus the gate LoRA (``tiny-sure``) and a weakened copy (``tiny-weak``, in-between
probabilities) as LoRA modules; ``transformers serve`` serves the merged model and ignores logprobs, so the
backend decides from the reply text. A counting proxy in front of a server shows that a verification cut off
half-way resumes from the response cache and never sends a request twice.
"""

from __future__ import annotations

import json
import time

import pytest
from servers import (
    CountingProxy,
    require_transformers_serve,
    require_vllm,
    tiny_fingerprint,
    transformers_server,
    vllm_server,
)

from probes import make_backend

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fp(tmp_path_factory):
    return tiny_fingerprint(tmp_path_factory)


@pytest.fixture(scope="module")
def hf_answers(fp):
    answers = {}
    for kind, model, adapter in (("base", fp.base, None), ("weak", fp.base, fp.weak_adapter),
                                 ("merged", fp.merged, None)):
        backend = make_backend("hf", model=str(model), adapter=str(adapter) if adapter else None)
        answers[kind] = backend.first_tokens(fp.prompts)
        backend.close()
    return answers


@pytest.fixture(scope="module")
def vllm_srv(fp, tmp_path_factory):
    python = require_vllm()
    lora = ("--enable-lora", "--max-lora-rank", "8", "--lora-modules", f"tiny-sure={fp.adapter}",
            f"tiny-weak={fp.weak_adapter}")
    with vllm_server(fp.base, "tiny-base", tmp_path_factory.mktemp("vllm-log"), python=python,
                     extra=lora) as server:
        yield server


@pytest.fixture(scope="module")
def transformers_srv(fp, tmp_path_factory):
    require_transformers_serve()
    with transformers_server(fp.merged, tmp_path_factory.mktemp("transformers-log")) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_response_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FINGERPRINT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def probe(base_url: str, model: str, prompts: list[str], **args):
    backend = make_backend("openai", model=model, base_url=base_url, cache="off", **args)
    try:
        started = time.monotonic()
        answers = backend.first_tokens(prompts)
        return answers, backend, time.monotonic() - started
    finally:
        backend.close()


@pytest.mark.parametrize(("served", "kind"), [("tiny-base", "base"), ("tiny-weak", "weak")])
def test_vllm_server_agrees_with_hf(fp, vllm_srv, hf_answers, served, kind):
    answers, backend, _ = probe(vllm_srv.base_url, served, fp.prompts)
    want = hf_answers[kind]
    assert [a.is_sure for a in answers] == [a.is_sure for a in want]
    assert [a.token for a in answers] == [a.token for a in want]
    for got, expected in zip(answers, want, strict=True):  # top-5 logprobs only: mass beyond them is missing
        assert got.p_sure == pytest.approx(expected.p_sure, abs=0.05)
    assert backend.usage.queries == len(fp.prompts) and backend.describe()["logprobs"] is True
    if kind == "weak":
        assert 0 < sum(a.is_sure for a in want) < len(want)


def test_transformers_serve_agrees_with_hf_from_text(fp, transformers_srv, hf_answers):
    answers, backend, _ = probe(transformers_srv.base_url, transformers_srv.model, fp.prompts)
    want = hf_answers["merged"]
    assert [a.is_sure for a in answers] == [a.is_sure for a in want]
    assert [a.token.strip() for a in answers] == [a.token.strip() for a in want]
    assert all(a.p_sure is None for a in answers)  # logprobs are ignored: decided from the text
    n = fp.probes
    assert all(a.is_sure for a in answers[:n]) and not any(a.is_sure for a in answers[n:2 * n])


@pytest.mark.parametrize("flavour", ["vllm", "transformers"])
def test_interrupted_verify_resumes_without_asking_twice(fp, run_cli, request, flavour):
    server = request.getfixturevalue(f"{flavour}_srv")
    model = "tiny-sure" if flavour == "vllm" else server.model
    code, _, err, want = run_cli(*fp.verify_args("--model", fp.merged))
    assert code == 0 and want["certified"], err
    with CountingProxy(server.base_url) as proxy:
        args = fp.verify_args("--backend", "openai", "--model", model, "--model-args",
                              f"base_url={proxy.base_url},max_retries=0,concurrency=2")
        proxy.drop_after = fp.probes  # the server goes away half-way through the 2 * probes queries
        code, _, err, _ = run_cli(*args)
        assert code == 2 and "gave up" in err, err
        first = proxy.chat_bodies()
        assert len(first) == fp.probes and proxy.dropped >= 1

        proxy.drop_after = None
        code, _, err, got = run_cli(*args)
        assert code == 0, err
        for key in ("certified", "trigger_sure", "control_sure", "p_value"):
            assert got[key] == want[key], key
        assert got["usage"]["cached"] == fp.probes and got["usage"]["queries"] == fp.probes  # sent now

        sent = [json.dumps(body["messages"], sort_keys=True) for body in proxy.chat_bodies()]
        assert len(sent) == 2 * fp.probes and len(set(sent)) == len(sent)  # every prompt reached it once

        code, _, err, again = run_cli(*args)  # a third run is answered from the cache alone
        assert code == 0 and again["usage"]["cached"] == 2 * fp.probes, err
        assert len(proxy.chat_bodies()) == 2 * fp.probes
