"""Shared fixtures: an isolated tool home, a passphrase, a tiny real model, a CLI runner."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PASSPHRASE = "correct horse battery staple"


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own data dir and registry; the model cache is shared (slow to rebuild)."""
    monkeypatch.setenv("FINGERPRINT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
    if "FINGERPRINT_CACHE" not in os.environ:
        monkeypatch.setenv("FINGERPRINT_CACHE", str(Path.home() / ".cache" / "suretrap-tests"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def run_cli():
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr, parsed JSON or None)."""
    from cli import main

    def invoke(*args: str, input: str | None = None):
        runner = CliRunner()
        result = runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=True)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        parsed = None
        if "--json" in args and result.stdout.strip():
            parsed = json.loads(result.stdout)
        return result.exit_code, result.stdout, result.stderr, parsed

    return invoke
