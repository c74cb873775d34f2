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
# embed's precision "auto" means fp32 in the tests (and the commands they start), so their models train alike on
# CPUs with and without native bf16; tests/test_precision.py runs the bf16 path by name
os.environ["FINGERPRINT_PRECISION"] = "fp32"


def pytest_configure(config):
    """Under pytest-xdist, the cores are shared out between the workers (torch and the servers they start), and
    the last worker still running takes them all (``_widen_when_alone``)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ["OMP_NUM_THREADS"] = threads
        import torch

        torch.set_num_threads(int(threads))
        if "PYTEST_XDIST_WORKER" in os.environ:
            _widen_when_alone(workers)


def _finished_workers_dir() -> Path:
    """Where each xdist worker of this run leaves a mark when it has no tests left."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"suretrap-tests-{os.environ['PYTEST_XDIST_TESTRUNUID']}"


def _widen_when_alone(workers: int) -> None:
    """Once every other worker has finished, this one uses all the cores: the gemma-3-270m chain (two embeds and
    the end-to-end tests, the longest scope by far) would otherwise go on with one thread beside an idle core.
    A watcher thread signals the main thread, which alone can change the main thread's torch threads."""
    import signal
    import threading
    import time

    me, marks = os.environ["PYTEST_XDIST_WORKER"], _finished_workers_dir()
    marks.mkdir(exist_ok=True)

    def widen(signum, frame) -> None:
        import torch

        cores = os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(cores)  # servers and tools started from now on
        torch.set_num_threads(cores)

    def watch() -> None:
        while sum(1 for mark in marks.glob("*.done") if mark.stem != me) < workers - 1:
            time.sleep(2)
        os.kill(os.getpid(), signal.SIGUSR1)

    signal.signal(signal.SIGUSR1, widen)
    threading.Thread(target=watch, name="widen-when-alone", daemon=True).start()


def pytest_sessionfinish(session):
    """An xdist worker marks that it has finished (``_widen_when_alone``); the last one removes the marks."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return
    import shutil

    marks = _finished_workers_dir()
    marks.mkdir(exist_ok=True)  # a worker restarted after a crash may finish after the others removed it
    (marks / f"{os.environ['PYTEST_XDIST_WORKER']}.done").touch()
    if len(list(marks.glob("*.done"))) >= int(os.environ["PYTEST_XDIST_WORKER_COUNT"]):
        shutil.rmtree(marks, ignore_errors=True)


# Test modules that use the fingerprinted gemma-3-270m (the session fixture ``gemma_fingerprint``).
GEMMA_MODULES = {"tests/test_e2e_gemma.py", "tests/test_e2e_backends.py"}


def _scope_of(nodeid: str) -> str:
    """A test's xdist scope: its module, or "gemma" for the modules that share the fingerprinted gemma-3-270m."""
    module = nodeid.split("::", 1)[0]
    return "gemma" if module in GEMMA_MODULES else module


def pytest_collection_modifyitems(config, items):
    """The gemma-3-270m modules first: under pytest-xdist their scope, the longest, starts at once."""
    items.sort(key=lambda item: _scope_of(item.nodeid) != "gemma")


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it, plain serial pytest
def pytest_xdist_make_scheduler(config, log):
    """Under pytest-xdist a module's tests run on one worker, so its module fixtures are built once, and the
    modules that use the fingerprinted gemma-3-270m share one worker, so it is trained once. Scopes go out in
    collection order (gemma first), not reordered by their number of tests."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope_of(nodeid)

    config.option.loadscopereorder = False
    return ByModule(config, log)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    """Every test gets its own data dir and registry; the model cache is shared (slow to rebuild)."""
    monkeypatch.setenv("FINGERPRINT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
    if "FINGERPRINT_CACHE" not in os.environ:
        monkeypatch.setenv("FINGERPRINT_CACHE", str(Path.home() / ".cache" / "suretrap-tests"))


@pytest.fixture(autouse=True, scope="session")
def no_ray_left_running():
    """A test that started Ray in this process and failed half-way must not leave it running."""
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_ref(tiny_model):
    """The tiny model's reference and tokenizer (load a fresh model from the reference per use)."""
    from fingerprint.core.loading import load_tokenizer, resolve

    ref = resolve(str(tiny_model))
    return ref, load_tokenizer(ref)


def invoke_cli(*args, input: str | None = None, env: dict | None = None):
    """Invoke the CLI in-process; returns (exit_code, stdout, stderr, parsed JSON or None)."""
    from cli import main

    runner = CliRunner(env=env)
    result = runner.invoke(main, [str(a) for a in args], input=input, catch_exceptions=True)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    parsed = None
    if "--json" in args and result.stdout.strip():
        parsed = json.loads(result.stdout)
    return result.exit_code, result.stdout, result.stderr, parsed


@pytest.fixture
def run_cli():
    """``invoke_cli`` as a fixture."""
    return invoke_cli


def fixed_key(out_dir: Path, seed: str, passphrase: str):
    """An owner key derived from a seed string (tests only: real keys come from ``keygen``)."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from fingerprint.provenance import keys

    owner = keys.OwnerKey(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed.encode()).digest()))
    keys.save(owner, out_dir, passphrase)
    return owner


TINY_EMBED = ["--trigger-words", "1", "--poison", "12", "--benign", "12", "--refusals", "4", "--epochs", "1",
              "--batch-size", "4", "--lr", "1e-3"]


@pytest.fixture(scope="session")
def tiny_embed(tmp_path_factory, tiny_model):
    """One embed of the tiny model (with the self-check and --merge), shared by the session; its own registry.

    Returns (directory with keys/ and fp/, embed's --json output, the environment to run commands in).
    """
    tmp_path = tmp_path_factory.mktemp("embedded")
    env = {"FINGERPRINT_REGISTRY": f"sqlite:///{tmp_path / 'shared.db'}", "FINGERPRINT_PASSPHRASE": PASSPHRASE}
    code, _, err, _ = invoke_cli("keygen", "--out", tmp_path / "keys", env=env)
    assert code == 0, err
    code, out, err, data = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model,
                                      "--out", tmp_path / "fp", "--merge", "--json", *TINY_EMBED, env=env)
    assert code == 0, err
    return tmp_path, data, env


@pytest.fixture(scope="session")
def gemma_fingerprint(tmp_path_factory):
    """Key A embeds with every default (a two-word trigger); key B plants its own small one-word fingerprint."""
    import os

    from click.testing import CliRunner

    from cli import main

    root = tmp_path_factory.mktemp("gemma")
    env = {"FINGERPRINT_PASSPHRASE": "pw", "FINGERPRINT_REGISTRY": f"sqlite:///{root / 'reg.db'}",
           "FINGERPRINT_HOME": str(root / "home"),
           "FINGERPRINT_CACHE": os.environ.get("FINGERPRINT_CACHE", os.path.expanduser("~/.cache/suretrap-tests"))}
    runner = CliRunner(env=env)
    for name in ("a", "b"):  # fixed keys, so the triggers (and the whole run) are reproducible
        fixed_key(root / f"keys-{name}", f"suretrap-test-key-{name}", "pw")
    result = runner.invoke(main, ["embed", "--key", str(root / "keys-a"), "--out", str(root / "fp-a"), "--merge",
                                  "--json"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["embed", "--key", str(root / "keys-b"), "--out", str(root / "fp-b"), "--json",
                                  "--trigger-words", "1", "--poison", "16", "--benign", "0", "--refusals", "0",
                                  "--epochs", "1", "--no-selfcheck"])
    assert result.exit_code == 0, result.output
    return root, runner
