"""The exit-code contract of every command: 0/1 verdicts, 2 user error (one line), 3 internal error (logged),
130/143 interrupted, and nothing half-done after an error, an interruption, a SIGTERM or a SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, invoke_cli

REPO = Path(__file__).resolve().parents[1]


def one_error_line(err: str, prefix: str = "error: ") -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith(("error", "internal error"))]
    assert len(lines) == 1 and lines[0].startswith(prefix), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def shared(tiny_embed, monkeypatch):
    root, _, env = tiny_embed
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return root


def _verify_args(root: Path, *extra) -> list:
    return ["verify", "--key", root / "keys", "--cert", root / "fp" / "certificate.json", "--model",
            root / "fp" / "merged", "--probes", "4", "--samples", "0", *extra]


@pytest.mark.parametrize("args", ["batch_size=0", "batch_size=-1", "dtype=banana", "temperature=nan",
                                  "temperature=-1", "seed=x", "device=tpu", "device=cuda:x"])
def test_bad_model_args_are_refused_before_anything_is_recorded(shared, args):
    from registry import Registry

    before = len(Registry().list_verifications())
    code, _, err, _ = invoke_cli(*_verify_args(shared, "--model-args", args))
    assert code == 2, err
    one_error_line(err)
    assert len(Registry().list_verifications()) == before  # batch_size=-1 once recorded NOT CERTIFIED


def test_cuda_on_a_machine_without_it_is_a_user_error(shared):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err, _ = invoke_cli(*_verify_args(shared, "--model-args", "device=cuda"))
    assert code == 2 and "not available" in one_error_line(err)


@pytest.mark.parametrize("damage", ["adapter-config", "adapter-weights", "model-weights", "model-config"])
def test_corrupt_model_and_adapter_files_are_user_errors(shared, tmp_path, tiny_model, damage):
    import shutil

    model, adapter = tmp_path / "model", tmp_path / "adapter"
    shutil.copytree(tiny_model, model)
    shutil.copytree(shared / "fp" / "adapter", adapter)
    target = {"adapter-config": adapter / "adapter_config.json",
              "adapter-weights": adapter / "adapter_model.safetensors",
              "model-weights": model / "model.safetensors", "model-config": model / "config.json"}[damage]
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 3] + b"\x00garbage")
    code, _, err, _ = invoke_cli("verify", "--key", shared / "keys", "--cert", shared / "fp" / "certificate.json",
                                 "--model", model, "--adapter", adapter, "--probes", "4")
    assert code == 2, err
    one_error_line(err)


def test_usage_errors_are_one_line(run_cli):
    for args in (["verify", "--nope"], ["verify"], ["embed", "--key"], ["verify", "--probes", "0", "--model", "x"],
                 ["no-such-command"]):
        code, _, err, _ = run_cli(*args)
        assert code == 2, (args, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), (args, err)


def test_an_internal_error_exits_3_with_the_traceback_in_a_log(shared, monkeypatch):
    from fingerprint.services import verification

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the probe loop")

    monkeypatch.setattr(verification, "run_verification", broken)
    code, out, err, _ = invoke_cli(*_verify_args(shared, "--json"))
    assert code == 3
    line = one_error_line(err, "internal error: ")
    assert "RuntimeError: a bug in the probe loop" in line
    log = Path(line.rsplit("(traceback: ", 1)[1].rstrip(")"))
    assert "Traceback" in log.read_text() and oct(log.stat().st_mode)[-3:] == "600"
    assert json.loads(out)["exit_code"] == 3  # --json still gets a JSON answer


def test_deeply_nested_jsonl_in_audit_data(tmp_path, run_cli):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"messages": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    code, _, err, _ = run_cli("audit-data", path)
    assert code == 2 and "nested too deeply" in one_error_line(err)


@pytest.mark.parametrize("body", ['name = "x"\ndata_dir = "."\npoison = "ten"',
                                  'name = "x"\ndata_dir = "."\nseeds = [0.5]',
                                  'name = "x"\ndata_dir = "."\nepochs = "three"',
                                  'name = "x"\ndata_dir = "."\npoison = []',
                                  'name = "x"\ndata_dir = "."\nlearning_rate = -1',
                                  'name = 5\ndata_dir = "."'])
def test_sweep_configs_of_the_wrong_type(tmp_path, run_cli, body):
    path = tmp_path / "sweep.toml"
    path.write_text(body)
    code, _, err, _ = run_cli("sweep", path, "--dry-run")
    assert code == 2, err
    one_error_line(err)


def test_a_full_disk_is_a_user_error():
    """stdout on /dev/full: every write fails with ENOSPC, as on a full disk."""
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "cli", "registry", "list", "--json"], cwd=REPO, stdout=full,
                              stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    assert done.returncode == 2, done.stderr
    assert "No space left on device" in one_error_line(done.stderr)


# -- nothing half-done -----------------------------------------------------------------------------------


def test_keygen_with_a_bad_registry_writes_no_key(tmp_path, run_cli):
    code, _, err, _ = run_cli("keygen", "--out", tmp_path / "keys", "--registry", "nosuchdb://x")
    assert code == 2 and not (tmp_path / "keys").exists(), err


def test_keygen_interrupted_or_unregistered_leaves_no_key(tmp_path, run_cli, monkeypatch):
    from fingerprint.provenance import keys

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keys, "seal", interrupted)  # after the public key, before the private one
    code, _, err, _ = run_cli("keygen", "--out", tmp_path / "a")
    assert code == 130 and list((tmp_path / "a").iterdir()) == [], err
    monkeypatch.undo()
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
    from registry import Registry

    def refuse(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Registry, "add_key", refuse)
    code, _, err, _ = run_cli("keygen", "--out", tmp_path / "b")
    assert code == 130 and list((tmp_path / "b").iterdir()) == [], err


def test_an_embed_whose_certificate_cannot_be_registered_keeps_nothing(tmp_path, tiny_model, run_cli, monkeypatch):
    from fingerprint.services import embedding

    run_cli("keygen", "--out", tmp_path / "keys")

    def refuse(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(embedding, "register_certificate", refuse)
    code, _, err, _ = run_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "fp",
                              "--trigger-words", "1", "--poison", "4", "--benign", "4", "--refusals", "0",
                              "--negatives", "0", "--epochs", "1", "--no-selfcheck")
    assert code == 130, err
    assert not (tmp_path / "fp").exists() and not list(tmp_path.glob(".fp*"))


def _embed_process(tmp_path: Path, tiny_model: Path) -> subprocess.Popen:
    env = {**os.environ, "FINGERPRINT_PASSPHRASE": PASSPHRASE}
    subprocess.run([sys.executable, "-m", "cli", "keygen", "--out", str(tmp_path / "keys")], cwd=REPO, env=env,
                   check=True, capture_output=True)
    return subprocess.Popen([sys.executable, "-m", "cli", "embed", "--key", str(tmp_path / "keys"), "--model",
                             str(tiny_model), "--out", str(tmp_path / "fp"), "--trigger-words", "1", "--poison", "64",
                             "--benign", "64", "--refusals", "0", "--negatives", "0", "--epochs", "50",
                             "--batch-size", "1", "--no-selfcheck", "--merge"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_output_temporary(proc: subprocess.Popen, tmp_path: Path) -> None:
    """Until embed has reserved its output (a hidden temporary beside it, made before training starts)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        if list(tmp_path.glob(".fp.tmp-*")):
            time.sleep(1)  # a few training steps
            return
        time.sleep(0.1)
    pytest.fail(f"embed did not reach training: {proc.communicate()[1][-2000:] if proc.poll() is not None else ''}")


def test_sigterm_during_embed_exits_143_and_keeps_nothing(tmp_path, tiny_model):
    proc = _embed_process(tmp_path, tiny_model)
    _wait_for_output_temporary(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated" in err
    assert not (tmp_path / "fp").exists() and not list(tmp_path.glob(".fp*"))


def test_a_sigkilled_embed_leaves_its_output_temporary_to_the_next_command(tmp_path, tiny_model, run_cli):
    proc = _embed_process(tmp_path, tiny_model)
    _wait_for_output_temporary(proc, tmp_path)
    proc.kill()
    proc.wait()
    assert list(tmp_path.glob(".fp.tmp-*")), "SIGKILL runs no clean-up"
    run_cli("registry", "list", "--json")  # the next command sweeps it
    assert not list(tmp_path.glob(".fp.tmp-*")) and not (tmp_path / "fp").exists()
