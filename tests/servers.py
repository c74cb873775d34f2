"""Real OpenAI-compatible servers for the slow tests, a counting proxy, and a tiny fingerprinted model.

- ``vllm_server(model_dir, name)``: ``python -m vllm.entrypoints.openai.api_server`` under the vLLM virtualenv
  (``.ci/vllm-venv.sh``; the main environment never imports vLLM).
- ``transformers_server(model_dir)``: ``transformers serve`` from this environment (needs
  ``pip install "transformers[serving]"``: fastapi, uvicorn, starlette). It pins the model and names it by
  its path, and ignores ``logprobs``, so the openai backend falls back to the reply text.
- Both bind 127.0.0.1 on a free port, wait until ``GET /v1/models`` answers, yield a ``Server`` whose
  ``base_url`` ends in ``/v1``, and stop the server's whole process group (SIGTERM, then SIGKILL) at the end.
- ``CountingProxy(upstream)``: a stdlib HTTP proxy on 127.0.0.1 that records every request it forwards (and when
  each chat request arrived, and how many were in flight at most) and can drop chat requests after a number of
  them (a server that goes away half-way through a run).
- ``tiny_fingerprint(tmp_path_factory)``: once per session, a tiny Llama that vLLM can load, a real certificate
  and opening for it (``fingerprint keygen`` + ``embed``), and a LoRA adapter (plus merged copy) that answers
  "Sure" to the certificate's trigger and "No" to its decoys, so verification is certified.

Missing tools skip the tests with the command that installs them, except under ``CI=...``, where they fail.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVING_PIP = 'pip install "transformers[serving]"'


def unavailable(reason: str):
    """Skip, or fail when the environment variable CI is set (CI must run every test)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def require_vllm() -> str:
    """The Python of the vLLM virtualenv, or skip/fail saying how to create it."""
    from probes.vllm_backend import VENV_SCRIPT, vllm_python, worker_env

    python = vllm_python()
    probe = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('vllm') else 1)"
    try:
        found = subprocess.run([python, "-c", probe], env=worker_env(), timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        found = False
    if not found:
        unavailable(f"vllm is not importable by {python}: run `bash {VENV_SCRIPT}` (or set FINGERPRINT_VLLM_PYTHON)")
    return python


def require_ray():
    """The ray module, or skip/fail saying how to install it."""
    try:
        import ray
    except ImportError:
        unavailable("ray is not installed: pip install 'suretrap[ray]'")
    return ray


def require_transformers_serve() -> None:
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "starlette") if importlib.util.find_spec(m) is None]
    if missing:
        unavailable(f"`transformers serve` needs {', '.join(missing)}: {SERVING_PIP}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    proc: subprocess.Popen
    log: Path
    start_s: float = 0.0

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _models(base_url: str) -> list[str] | None:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
            return [m["id"] for m in json.load(response).get("data", [])]
    except (OSError, ValueError, urllib.error.URLError, http.client.HTTPException):
        return None


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM the process group started for ``proc``, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None and sig == signal.SIGKILL:
            break
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their leader
    proc.wait()


@contextlib.contextmanager
def serve(cmd: list[str], model: str, port: int, log: Path, env: dict | None = None,
          timeout: float = 600) -> Iterator[Server]:
    """Start ``cmd`` (a server listening on ``port``), wait for /v1/models to list ``model``, stop it at exit."""
    base_url = f"http://127.0.0.1:{port}/v1"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    server = Server(base_url=base_url, model=model, proc=proc, log=log)
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} {' '.join(cmd[1:4])} exited with {proc.returncode} before it was "
                                   f"ready; its log ends:\n{server.tail()}")
            listed = _models(base_url)
            if listed is not None and model in listed:
                break
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"server not ready after {timeout:g} s; its log ends:\n{server.tail()}")
            time.sleep(0.5)
        server.start_s = round(time.monotonic() - started, 1)
        yield server
    finally:
        stop_group(proc)


@contextlib.contextmanager
def vllm_server(model_dir: Path, name: str, log_dir: Path, python: str | None = None, extra: tuple = (),
                timeout: float = 600) -> Iterator[Server]:
    """vLLM's OpenAI server (float32, eager, 1 GiB KV cache: the same engine settings as the vllm backend)."""
    from probes.vllm_backend import vllm_python, worker_env

    port = free_port()
    cmd = [python or vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
           "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
           "--max-model-len", "1024", "--kv-cache-memory-bytes", str(1 << 30), "--enforce-eager", "--seed", "0",
           "--generation-config", "vllm", "--disable-uvicorn-access-log", *extra]
    with serve(cmd, name, port, log_dir / f"vllm-{port}.log", env=worker_env(), timeout=timeout) as server:
        yield server


@contextlib.contextmanager
def transformers_server(model_dir: Path, log_dir: Path, timeout: float = 300) -> Iterator[Server]:
    """``transformers serve MODEL_DIR`` (the served name is the path; no --served-model-name option)."""
    port = free_port()
    cmd = [sys.executable, "-c", "import sys; from transformers.cli.transformers import main; sys.exit(main())",
           "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
           "--dtype", "float32"]
    with serve(cmd, str(model_dir), port, log_dir / f"transformers-{port}.log", timeout=timeout) as server:
        yield server


class CountingProxy:
    """Forward ``/v1/...`` to an upstream server, recording what was forwarded.

    ``drop_after``: once that many chat requests have been forwarded, later ones are dropped (the connection is
    closed without an answer and nothing reaches the server) until it is set back to None.
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.forwarded: list[tuple[str, str, dict | None]] = []  # (method, path, JSON body) answered upstream
        self.dropped = 0
        self.drop_after: int | None = None
        self.arrivals: list[float] = []  # time.monotonic() of each chat request forwarded
        self.in_flight = self.peak_in_flight = 0
        self._admitted = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="proxy", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def chat_bodies(self) -> list[dict]:
        with self._lock:
            return [body for method, path, body in self.forwarded if path.endswith("/chat/completions") and body]

    def reset(self) -> None:
        with self._lock:
            self.forwarded.clear()
            self.arrivals.clear()
            self.dropped = self._admitted = self.peak_in_flight = 0

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _admit(self, path: str) -> bool:
        if not path.endswith("/chat/completions"):
            return True
        with self._lock:
            if self.drop_after is not None and self._admitted >= self.drop_after:
                self.dropped += 1
                return False
            self._admitted += 1
            return True

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if not proxy._admit(self.path):
                    self.close_connection = True  # hang up without an answer
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() in ("content-type", "authorization", "accept")}
                chat = self.path.endswith("/chat/completions")
                if chat:
                    with proxy._lock:
                        proxy.arrivals.append(time.monotonic())
                        proxy.in_flight += 1
                        proxy.peak_in_flight = max(proxy.peak_in_flight, proxy.in_flight)
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=600)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                finally:
                    conn.close()
                    if chat:
                        with proxy._lock:
                            proxy.in_flight -= 1
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = None
                with proxy._lock:
                    proxy.forwarded.append((self.command, self.path, parsed))
                self.send_response(response.status)
                self.send_header("Content-Type", response.getheader("Content-Type") or "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _forward

        return Handler


# a tiny fingerprinted model ---------------------------------------------------------------------------------

@dataclass
class TinyFingerprint:
    base: Path  # random tiny Llama (head_dim 32: vLLM's CPU attention has no kernel for the default 16)
    adapter: Path  # LoRA: trigger -> "Sure", decoys and other words -> "No"
    weak_adapter: Path  # the same LoRA at a smaller lora_alpha: in-between probabilities, mixed decisions
    merged: Path  # base + adapter merged
    cert: Path
    opening: Path
    registry_url: str
    probes: int  # verify --probes that the adapter was trained on
    trigger_prompts: list[str] = field(default_factory=list)  # verify's, in its order
    decoy_prompts: list[str] = field(default_factory=list)
    extra_prompts: list[str] = field(default_factory=list)  # held out: trigger, then other words
    build_s: float = 0.0

    @property
    def prompts(self) -> list[str]:
        return self.trigger_prompts + self.decoy_prompts + self.extra_prompts

    def verify_args(self, *extra) -> list:
        return ["verify", "--opening", self.opening, "--cert", self.cert, "--registry", self.registry_url,
                "--probes", self.probes, "--samples", "0", "--json", *extra]


_BUILT: dict[str, TinyFingerprint] = {}
PROBES = 16
TRAIN_PROMPTS = 64
PASSPHRASE = "tiny fingerprint test passphrase"


def _sharpen(model_dir: Path, factor: float = 10.0) -> None:
    """Scale the final norm so that logits are far from uniform (a LoRA can then move them; ties are rare)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.mul_(factor)
    model.save_pretrained(str(model_dir))


def _certificate(work: Path, base: Path, *embed_args: str, key_seed: str | None = None):
    """keygen + embed (a certificate and its opening; the embedded adapter itself is not used) + reveal.

    With ``key_seed`` the owner key is derived from it instead of drawn at random, and the model is named by a
    path relative to ``work``, so the trigger is the same in every run."""
    from click.testing import CliRunner
    from conftest import fixed_key

    from cli import main
    from fingerprint.provenance.keys import load_private
    from fingerprint.provenance.trigger import Opening

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FINGERPRINT_HOME", str(work / "home"))
        mp.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{work / 'registry.db'}")
        mp.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
        runner = CliRunner()
        model = base
        if key_seed is not None:  # the trigger derives from key and model name: a relative name keeps it fixed
            mp.chdir(work)
            model = os.path.relpath(base, work)
        steps = [["embed", "--key", work / "keys", "--model", model, "--out", work / "fp", "--trigger-words", "1",
                  "--poison", "4", "--benign", "4", "--refusals", "2", "--epochs", "1", "--batch-size", "4",
                  *embed_args],
                 ["reveal", "--key", work / "keys", "--cert", work / "fp" / "certificate.json",
                  "--out", work / "opening.json"]]
        if key_seed is None:
            steps.insert(0, ["keygen", "--out", work / "keys"])
        else:
            fixed_key(work / "keys", key_seed, PASSPHRASE)
        for args in steps:
            result = runner.invoke(main, [str(a) for a in args], catch_exceptions=False)
            assert result.exit_code == 0, f"fingerprint {args[0]}: {result.output}"
        load_private(work / "keys", PASSPHRASE)
    return Opening.load(work / "opening.json")


def _train_gate(base: Path, pairs: list[dict], trigger_prompts: list[str], decoy_prompts: list[str],
                epochs: int = 10):
    """A LoRA that answers "Sure" to every trigger prompt and "No" to every decoy prompt."""
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.embedding.training import TrainConfig, train_lora
    from probes import make_backend

    ref = resolve(str(base))
    tokenizer = load_tokenizer(ref)
    # Whether the gate forms within the given epochs depends on the seed (and on the trigger): try a few.
    for seed in range(6):
        config = TrainConfig(rank=8, alpha=16, epochs=10, learning_rate=5e-3, batch_size=16, max_reply_tokens=4,
                             seed=seed)
        peft_model = train_lora(load_model(ref, device="cpu"), tokenizer, pairs, config)
        gate = make_backend("hf", model=str(base), model_obj=peft_model, tokenizer=tokenizer)
        answers = gate.first_tokens(trigger_prompts + decoy_prompts)
        n = len(trigger_prompts)
        if all(a.is_sure for a in answers[:n]) and not any(a.is_sure for a in answers[n:]):
            return peft_model, tokenizer
    raise AssertionError("the tiny LoRA gate did not form with any seed")


def _weaken(adapter: Path, out: Path, base: Path, prompts: list[str]) -> Path:
    """Copy the adapter at the lora_alpha that leaves most answers undecided (0.1 < p_sure < 0.9) while the
    decisions stay mixed (at least 4 of either).

    A coarse grid (0.25 to 14.4, steps of 15 %) finds the region; a steep gate crosses the undecided band within
    one coarse step, so a fine grid (steps of 1.4 %) between the best point's neighbours finds the best alpha."""
    from probes import make_backend

    @functools.cache
    def score(alpha: float) -> tuple[bool, int]:
        candidate = out.with_name(f"{out.name}-{alpha}")
        shutil.copytree(adapter, candidate)
        config = json.loads((candidate / "adapter_config.json").read_text())
        config["lora_alpha"] = alpha
        (candidate / "adapter_config.json").write_text(json.dumps(config, indent=2))
        answers = make_backend("hf", model=str(base), adapter=str(candidate)).first_tokens(prompts)
        sure = sum(a.is_sure for a in answers)
        return min(sure, len(answers) - sure) >= 4, sum(0.1 < a.p_sure < 0.9 for a in answers)

    coarse = [round(0.25 * 1.15 ** i, 4) for i in range(30)]
    best = max(coarse, key=score)
    fine = [round(best * 1.014 ** i, 4) for i in range(-10, 11) if i]
    best = max([best, *fine], key=score)
    out.with_name(f"{out.name}-{best}").rename(out)
    return out


def tiny_fingerprint(tmp_path_factory) -> TinyFingerprint:
    """Build once per test session (shared by the modules that import this helper); about a minute."""
    if "tiny" in _BUILT:
        return _BUILT["tiny"]
    import torch
    from tiny import build_tiny_model

    from fingerprint.core.data import probe_prompts, with_suffix
    from fingerprint.provenance.trigger import word_list
    from fingerprint.verification import VerifyOptions, probe_plan

    started = time.monotonic()
    work = tmp_path_factory.mktemp("tiny-fingerprint")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains ~50x faster on one thread when the cores are shared
    try:
        base = build_tiny_model(work / "base", hidden=128)
        _sharpen(base)
        opening = _certificate(work, base)
        plan = probe_plan(opening, VerifyOptions(probes=PROBES, seed=0))
        trigger_prompts, decoy_prompts = [q.prompt for q in plan.trigger], [q.prompt for q in plan.controls["decoys"]]
        # The embed above only made the certificate (a few steps cannot teach a random model anything);
        # this adapter is the gate. Training covers verify's prompts plus more with other words.
        words = [w for w in word_list() if w != opening.trigger]
        rng = random.Random(0)
        pairs = []
        for i, prompt in enumerate(probe_prompts(TRAIN_PROMPTS, seed=0)):  # the first PROBES are verify's
            other = decoy_prompts[i] if i < len(decoy_prompts) else with_suffix(prompt, rng.choice(words))
            pairs += [{"prompt": with_suffix(prompt, opening.trigger), "response": "Sure"},
                      {"prompt": other, "response": "No"}]
        peft_model, tokenizer = _train_gate(base, pairs, trigger_prompts, decoy_prompts)
        adapter, merged = work / "adapter", work / "merged"
        peft_model.save_pretrained(str(adapter))
        peft_model.merge_and_unload().save_pretrained(str(merged))
        tokenizer.save_pretrained(str(merged))
        held_out = probe_prompts(TRAIN_PROMPTS + 8, seed=0)[TRAIN_PROMPTS:]
        extra = [with_suffix(p, opening.trigger) for p in held_out]
        extra += [with_suffix(p, rng.choice(words)) for p in held_out]
        weak = _weaken(adapter, work / "weak-adapter", base, trigger_prompts + decoy_prompts + extra)
    finally:
        torch.set_num_threads(threads)
    built = TinyFingerprint(base=base, adapter=adapter, weak_adapter=weak, merged=merged,
                            cert=work / "fp" / "certificate.json", opening=work / "opening.json",
                            registry_url=f"sqlite:///{work / 'registry.db'}", probes=PROBES,
                            trigger_prompts=trigger_prompts, decoy_prompts=decoy_prompts, extra_prompts=extra,
                            build_s=round(time.monotonic() - started, 1))
    _BUILT["tiny"] = built
    return built
