"""Secrets at rest and in child processes: key files, passphrases, temporaries, the vLLM worker's environment."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import warnings

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fingerprint.core.errors import FingerprintError, SecurityWarning
from fingerprint.provenance import keys

STRONG = "correct horse battery staple"


def test_private_key_is_sealed_with_argon2id(tmp_path):
    owner = keys.generate(tmp_path / "k", STRONG)
    text = (tmp_path / "k" / keys.PRIVATE_NAME).read_text()
    assert text.startswith(f"-----BEGIN {keys.ARMOR}-----") and not keys.is_legacy(tmp_path / "k")
    import base64
    import json

    header = json.loads(base64.b64decode("".join(text.splitlines()[1:-1])))
    assert header["kdf"]["name"] == "argon2id" and header["kdf"]["memory_kib"] >= 19 * 1024
    assert keys.load_private(tmp_path / "k", STRONG).key_id == owner.key_id
    with pytest.raises(FingerprintError, match="wrong passphrase"):
        keys.load_private(tmp_path / "k", STRONG + "!")


def test_tampered_kdf_parameters_are_refused(tmp_path):
    import base64
    import json

    keys.generate(tmp_path / "k", STRONG)
    path = tmp_path / "k" / keys.PRIVATE_NAME
    lines = path.read_text().splitlines()
    data = json.loads(base64.b64decode("".join(lines[1:-1])))
    data["kdf"]["iterations"] = 1  # a weaker KDF under the same ciphertext: the authenticated header catches it
    path.write_text("\n".join([lines[0], base64.b64encode(json.dumps(data).encode()).decode(), lines[-1]]))
    with pytest.raises(FingerprintError, match="wrong passphrase"):
        keys.load_private(tmp_path / "k", STRONG)
    data["kdf"]["memory_kib"] = 64 * 1024 * 1024  # 64 GiB: refused before allocating
    path.write_text("\n".join([lines[0], base64.b64encode(json.dumps(data).encode()).decode(), lines[-1]]))
    with pytest.raises(FingerprintError, match="out of range"):
        keys.load_private(tmp_path / "k", STRONG)


def test_legacy_pkcs8_keys_load_with_a_warning_and_rekey_upgrades_them(tmp_path):
    key = Ed25519PrivateKey.generate()
    legacy = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(STRONG.encode()))
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / keys.PRIVATE_NAME).write_bytes(legacy)
    os.chmod(tmp_path / "k" / keys.PRIVATE_NAME, 0o600)
    with pytest.warns(SecurityWarning, match="rekey"):
        owner = keys.load_private(tmp_path / "k", STRONG)
    keys.rekey(tmp_path / "k", STRONG, "a new and longer passphrase")
    assert not keys.is_legacy(tmp_path / "k")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SecurityWarning)  # no warning any more
        assert keys.load_private(tmp_path / "k", "a new and longer passphrase").key_id == owner.key_id


def test_weak_passphrases_and_readable_keys_are_warned_about(tmp_path):
    with pytest.warns(SecurityWarning, match="characters"):
        keys.generate(tmp_path / "k", "short")
    os.chmod(tmp_path / "k" / keys.PRIVATE_NAME, 0o644)
    with pytest.warns(SecurityWarning, match="readable by others"):
        keys.load_private(tmp_path / "k", "short")


def test_the_vllm_worker_never_sees_the_passphrase(monkeypatch):
    from probes.vllm_backend import worker_env

    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", STRONG)
    env = worker_env()
    assert "FINGERPRINT_PASSPHRASE" not in env and STRONG not in env.values()


def test_a_killed_process_leaves_its_temporaries_to_the_next_start(tmp_path, run_cli):
    """SIGKILL runs no clean-up: the ledger names the temporary, and the next command removes it."""
    code = ("import os; from pathlib import Path; from fingerprint.core.atomic import private_temp_dir\n"
            "with private_temp_dir('secret-') as tmp:\n"
            "    (tmp / 'training.jsonl').write_text('prompt trigger word')\n"
            "    print(tmp, flush=True)\n"
            "    os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy())
    leftover = done.stdout.strip()
    assert done.returncode == -9 and leftover and os.path.isdir(leftover)
    assert stat.S_IMODE(os.stat(leftover).st_mode) == 0o700
    run_cli("registry", "list", "--json")  # any command sweeps on start
    assert not os.path.exists(leftover)


def test_temporaries_of_a_live_process_are_kept(tmp_path):
    from fingerprint.core.atomic import private_temp_dir, sweep_stale

    with private_temp_dir() as tmp:
        assert sweep_stale() == [] and tmp.is_dir()
    assert not tmp.exists()
