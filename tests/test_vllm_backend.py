"""The vllm backend (offline engine in a worker under the vLLM virtualenv) agrees with the hf backend.

Runs on the tiny fingerprinted model from ``servers.tiny_fingerprint`` (vLLM loads it; the stock tiny model's
head size 16 has no CPU attention kernel, so it is built with hidden=128). Needs ``bash .ci/vllm-venv.sh``;
skipped without it, failed without it under CI.
"""

from __future__ import annotations

import os
import sys
import time

import pytest
from servers import require_vllm, tiny_fingerprint

from fingerprint.core.errors import FingerprintError
from probes import make_backend, parse_model_args


@pytest.fixture(scope="module")
def vllm_python():
    return require_vllm()


@pytest.fixture(scope="module")
def fp(tmp_path_factory, vllm_python):
    return tiny_fingerprint(tmp_path_factory)


@pytest.fixture(scope="module")
def prompts(fp):
    return fp.prompts  # verify's trigger and decoy prompts, then held-out ones


@pytest.fixture(scope="module")
def hf_answers(fp, prompts):
    answers = {}
    for kind, adapter in (("base", None), ("weak", str(fp.weak_adapter))):
        backend = make_backend("hf", model=str(fp.base), adapter=adapter)
        answers[kind] = backend.first_tokens(prompts)
        answers[kind + "-replies"] = backend.generate(prompts[:4], 6)
        backend.close()
    return answers


def assert_agree(got, want, tolerance=0.05):
    assert [a.is_sure for a in got] == [a.is_sure for a in want]
    assert [a.token for a in got] == [a.token for a in want]
    for mine, theirs in zip(got, want, strict=True):
        assert mine.p_sure == pytest.approx(theirs.p_sure, abs=tolerance)


@pytest.mark.slow
def test_base_model_matches_hf(fp, prompts, hf_answers):
    backend = make_backend("vllm", model=str(fp.base))  # defaults: float32, engine-core process, exact p_sure
    try:
        ticks = []
        answers = backend.first_tokens(prompts, progress=ticks.append)
        assert_agree(answers, hf_answers["base"])
        assert sum(ticks) == len(prompts) and backend.usage.queries == len(prompts)
        assert backend.usage.completion_tokens == len(prompts) and backend.usage.prompt_tokens > len(prompts)
        assert backend.generate(prompts[:4], 6) == hf_answers["base-replies"]
        assert backend.usage.queries == len(prompts) + 4
        info = backend.describe()
        assert info["backend"] == "vllm" and info["dtype"] == "float32" and info["p_sure"] == "exact"
        assert backend.usage.extra["engine_start_s"] > 0
    finally:
        backend.close()
    proc = backend._worker.proc
    assert proc.poll() is not None
    assert group_gone(proc.pid), "vLLM processes outlived close()"


def group_gone(pgid: int, wait: float = 15.0) -> bool:
    """True once no process of the group is left (killed children stay zombies until init reaps them)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_adapter_matches_hf(fp, prompts, hf_answers):
    """The weak adapter leaves answers undecided (p_sure between 0.1 and 0.9): decisions and mass must agree."""
    want = hf_answers["weak"]
    assert 0 < sum(a.is_sure for a in want) < len(want) and sum(0.1 < a.p_sure < 0.9 for a in want) >= 5
    args = parse_model_args("multiprocessing=off,batch_size=12,engine_max_num_seqs=8")
    backend = make_backend("vllm", model=str(fp.base), adapter=str(fp.weak_adapter), **args)
    try:
        answers = backend.first_tokens(prompts)
    finally:
        backend.close()
    assert_agree(answers, want, tolerance=0.01)
    assert backend.usage.queries == len(prompts)


@pytest.mark.slow
def test_cli_verify_with_vllm_backend_matches_hf(fp, run_cli):
    common = fp.verify_args("--model", fp.base, "--adapter", fp.adapter)
    code_hf, _, err, hf = run_cli(*common)
    assert code_hf == 0, err
    code, _, err, via_vllm = run_cli(*common, "--backend", "vllm", "--model-args",
                                     "multiprocessing=off,p_sure=topk,logprobs=3")
    assert code == 0, err
    for key in ("certified", "trigger_sure", "control_sure", "trigger_total", "control_total", "p_value"):
        assert via_vllm[key] == hf[key], key
    assert via_vllm["queries"] == 2 * fp.probes and via_vllm["backend"] == "vllm"


@pytest.mark.slow
def test_engine_errors_are_one_clear_message(fp, tmp_path):
    bogus = tmp_path / "not-a-model"
    bogus.mkdir()
    (bogus / "config.json").write_text('{"model_type": "no-such-architecture"}')
    with pytest.raises(FingerprintError, match="vLLM could not load") as info:
        make_backend("vllm", model=str(bogus), multiprocessing="off")
    assert "last lines on its stderr" in str(info.value)


def test_missing_vllm_says_how_to_install(tmp_path):
    from tiny import build_tiny_model

    model = build_tiny_model(tmp_path / "m", hidden=128)
    with pytest.raises(FingerprintError, match=r"vllm is not installed.*vllm-venv\.sh"):
        make_backend("vllm", model=str(model), python=sys.executable)  # this environment has no vllm
    with pytest.raises(FingerprintError, match="cannot start the vLLM worker"):
        make_backend("vllm", model=str(model), python=str(tmp_path / "no-such-python"))


def test_options_are_checked_before_starting(tmp_path):
    with pytest.raises(FingerprintError, match="unknown vllm option 'temprature'"):
        make_backend("vllm", model=str(tmp_path), temprature="0")
    with pytest.raises(FingerprintError, match="p_sure must be exact or topk"):
        make_backend("vllm", model=str(tmp_path), p_sure="all")
    with pytest.raises(FingerprintError, match="multiprocessing must be on or off"):
        make_backend("vllm", model=str(tmp_path), multiprocessing="maybe")
    with pytest.raises(FingerprintError, match="not a LoRA adapter"):
        make_backend("vllm", model=str(tmp_path), adapter=str(tmp_path))
