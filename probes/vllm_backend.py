"""vLLM backend: the offline ``LLM`` engine in a worker subprocess, so vLLM never has to import here.

vLLM pins its own torch/transformers, so it lives in a separate virtualenv (``.ci/vllm-venv.sh`` makes one at
``~/.cache/suretrap-vllm-venv``). This module starts ``probes/vllm_worker.py`` with that environment's Python
and talks JSON lines over its stdin/stdout; the worker formats prompts with the model's chat template, asks
for one greedy token with the log-probabilities of the vocabulary's "Sure" tokens, and answers.

``--model-args`` (all optional):

- ``python``: the interpreter with vLLM (default: ``$FINGERPRINT_VLLM_PYTHON``, else the venv above when it
  exists, else this interpreter).
- ``dtype`` (float32: matches the hf backend to ~1e-7 in p_sure; bfloat16 was 8x slower on a CPU without
  AVX512-BF16), ``max_model_len`` (1024), ``kv_cache_gb`` (1), ``max_lora_rank`` (16, raised to the
  adapter's rank), ``enforce_eager`` (on: no torch.compile, a faster start), ``multiprocessing`` (on: vLLM's
  engine-core process; off starts ~15 s sooner but runs slower), ``seed`` (0).
- ``p_sure``: ``exact`` (log-probabilities of every "Sure" token, the same mass the hf backend sums) or
  ``topk`` (only the ``logprobs`` most likely tokens, default 5).
- ``batch_size`` (64 prompts per engine call), ``start_timeout`` (900 s), ``timeout`` (600 s per call),
  ``log`` (a file that receives the worker's stderr), ``system_prompt``.
- ``engine_<name>=<value>``: any other ``vllm.LLM`` keyword (the value is read as JSON when it parses).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.sure import SURE_TOKEN, WORD_START_MARKERS

from . import register
from .base import Backend, FirstToken, option_bool

WORKER = Path(__file__).with_name("vllm_worker.py")
VENV_SCRIPT = ".ci/vllm-venv.sh"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
INSTALL_HINT = (f"create the vLLM environment with `bash {VENV_SCRIPT}` (a separate virtualenv at "
                "~/.cache/suretrap-vllm-venv; never install vllm into this one), or point "
                "--model-args python=... (or FINGERPRINT_VLLM_PYTHON) at a Python that has vllm")


def vllm_venv() -> Path:
    """Where ``.ci/vllm-venv.sh`` puts the vLLM virtualenv."""
    return Path(os.environ.get("FINGERPRINT_VLLM_VENV") or Path.home() / ".cache" / "suretrap-vllm-venv")


def vllm_python(explicit: str | None = None) -> str:
    """The interpreter that runs vLLM: explicit, ``$FINGERPRINT_VLLM_PYTHON``, the venv, else this one."""
    if explicit:
        return explicit
    if os.environ.get("FINGERPRINT_VLLM_PYTHON"):
        return os.environ["FINGERPRINT_VLLM_PYTHON"]
    candidate = vllm_venv() / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def worker_env(multiprocessing: bool = True) -> dict[str, str]:
    """Environment for a process under the vLLM interpreter: none of this environment's Python paths, and no
    passphrase."""
    from fingerprint.core.environment import child_env

    env = child_env(drop=("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"))
    env.setdefault("VLLM_NO_USAGE_STATS", "1")
    env.setdefault("DO_NOT_TRACK", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not multiprocessing:
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return env


def _number(value, name: str, kind=int, low: float = 0, high: float = float("inf")):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise FingerprintError(f"{name} must be a number, not {value!r}") from None
    if not low <= number <= high:
        raise FingerprintError(f"{name} must be between {low:g} and {high:g}")
    return number


def _json_value(text):
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _fallback_template(model_dir: str) -> str | None:
    """The documented template for a tokenizer without one (as ``fingerprint.core.chat.ensure_chat_template``)."""
    from fingerprint.core.chat import GEMMA_TEMPLATE, PLAIN_TEMPLATE

    config = Path(model_dir) / "config.json"
    try:
        model_type = json.loads(config.read_text()).get("model_type") or ""
    except (OSError, ValueError):
        model_type = ""
    return GEMMA_TEMPLATE if model_type.startswith("gemma") else PLAIN_TEMPLATE


def _adapter_rank(adapter: str) -> int:
    config = Path(adapter) / "adapter_config.json"
    if not config.is_file():
        raise FingerprintError(f"{adapter} is not a LoRA adapter directory (no adapter_config.json)")
    try:
        data = json.loads(config.read_text())
    except ValueError as exc:
        raise FingerprintError(f"{config} is not valid JSON: {exc}") from None
    ranks = [int(data.get("r") or 0), *(int(r) for r in (data.get("rank_pattern") or {}).values())]
    return max(ranks)


class _Worker:
    """The subprocess and its pipes: one request at a time, answers matched by id."""

    def __init__(self, python: str, env: dict, log: str | None) -> None:
        self.python = python
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=60)
        self._answers: queue.Queue = queue.Queue()
        self._next_id = 0
        self._log = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen([python, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                         errors="replace", bufsize=1, start_new_session=True)
        except OSError as exc:
            self._close_log()
            raise FingerprintError(f"cannot start the vLLM worker with {python}: {exc.strerror or exc}; "
                                   f"{INSTALL_HINT}") from None
        threading.Thread(target=self._read_stdout, name="vllm-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, name="vllm-stderr", daemon=True).start()

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                self._answers.put(json.loads(line))
            except ValueError:
                self.stderr_tail.append(f"[stdout] {line.rstrip()}")
        self._answers.put(None)  # end of stream

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())
            if self._log is not None:
                try:
                    self._log.write(line)
                    self._log.flush()
                except (OSError, ValueError):
                    pass

    def tail(self, lines: int = 15) -> str:
        shown = [line for line in self.stderr_tail if line.strip()][-lines:]
        return "\n".join(shown) or "(no output on stderr)"

    def call(self, op: str, timeout: float, **payload):
        self._next_id += 1
        request_id = self._next_id
        try:
            self.proc.stdin.write(json.dumps({"id": request_id, "op": op, **payload}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise self._died(op) from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self._answers.get(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    self.stop()
                    raise FingerprintError(f"the vLLM worker did not answer '{op}' within {timeout:g} s "
                                           f"(stopped it); last lines on its stderr:\n{self.tail()}") from None
                continue
            if answer is None:
                raise self._died(op)
            if answer.get("id") != request_id:
                continue  # an answer to a request that timed out earlier
            if not answer.get("ok"):
                raise _WorkerError(answer.get("error") or "unknown error", answer.get("trace") or "")
            return answer.get("result")

    def _died(self, op: str) -> FingerprintError:
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        time.sleep(0.2)  # let the stderr reader catch the last lines
        return FingerprintError(f"the vLLM worker ({self.python}) exited (code {code}) during '{op}'; "
                                f"last lines on its stderr:\n{self.tail()}")

    def stop(self, grace: float = 15.0) -> None:
        _stop_process(self.proc, grace)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class _WorkerError(Exception):
    def __init__(self, error: str, trace: str) -> None:
        super().__init__(error)
        self.error, self.trace = error, trace


def _stop_process(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Ask the worker to exit (close stdin), then SIGTERM and SIGKILL its process group."""
    if proc.poll() is None:
        try:
            proc.stdin.write(json.dumps({"id": 0, "op": "close"}) + "\n")
            proc.stdin.flush()
            proc.stdin.close()
        except (OSError, ValueError):
            pass
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)  # the group holds vLLM's engine-core children too
        except (ProcessLookupError, PermissionError):
            break
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass


@register("vllm")
class VLLMBackend(Backend):
    """A local model (alias, HF id or directory) on vLLM's offline engine, optionally with a LoRA adapter."""

    def __init__(self, model: str, adapter: str | None = None, python: str | None = None,
                 dtype: str = "float32", max_model_len: int | str = 1024, kv_cache_gb: float | str = 1,
                 max_lora_rank: int | str | None = None, enforce_eager: str | bool = "on",
                 multiprocessing: str | bool = "on", seed: int | str = 0, p_sure: str = "exact",
                 logprobs: int | str = 5, batch_size: int | str = 64, start_timeout: float | str = 900,
                 timeout: float | str = 600, log: str | None = None, system_prompt: str | None = None,
                 **extra) -> None:
        super().__init__()
        from fingerprint.core.loading import resolve

        engine = {}
        for key, value in extra.items():
            if not key.startswith("engine_") or key == "engine_":
                raise FingerprintError(f"unknown vllm option '{key}' (extra vllm.LLM arguments are written "
                                       "engine_<name>=<value>)")
            engine[key[len("engine_"):]] = _json_value(value)
        if p_sure not in ("exact", "topk"):
            raise FingerprintError(f"p_sure must be exact or topk, not {p_sure!r}")
        self.model_name, self.adapter = model, adapter
        self.batch_size = _number(batch_size, "batch_size", int, 1, 100_000)
        self.timeout = _number(timeout, "timeout", float, 1)
        start_timeout = _number(start_timeout, "start_timeout", float, 1)
        init = {
            "dtype": dtype, "max_model_len": _number(max_model_len, "max_model_len", int, 16),
            "kv_cache_gb": _number(kv_cache_gb, "kv_cache_gb", float, 0.01),
            "enforce_eager": option_bool(enforce_eager, "enforce_eager"), "seed": _number(seed, "seed", int, 0, 2**63),
            "engine": engine, "system_prompt": system_prompt or None, "sure_pattern": SURE_TOKEN.pattern,
            "word_start_markers": list(WORD_START_MARKERS),
            "logprobs": _number(logprobs, "logprobs", int, 1, 20), "p_sure": p_sure,
        }
        multiprocessing = option_bool(multiprocessing, "multiprocessing")
        lora_rank = _number(max_lora_rank, "max_lora_rank", int, 1, 512) if max_lora_rank else 16
        if adapter:
            lora_rank = max(lora_rank, _adapter_rank(adapter))
            adapter = str(Path(adapter).resolve())
        init["max_lora_rank"] = next((r for r in LORA_RANKS if r >= lora_rank), lora_rank)
        ref = resolve(model)
        path = str(Path(ref.path).resolve()) if Path(ref.path).exists() else ref.path
        init.update(model=path, adapter=adapter, chat_template=_fallback_template(path))
        self.python = vllm_python(python)
        self._worker = _Worker(self.python, worker_env(multiprocessing), log)
        self._finalizer = weakref.finalize(self, _stop_process, self._worker.proc, 5.0)
        started = time.monotonic()
        try:
            self.info = self._worker.call("init", start_timeout, **init)
        except _WorkerError as exc:
            self.close()
            if "No module named 'vllm'" in exc.error:
                raise FingerprintError(f"vllm is not installed for {self.python}: {INSTALL_HINT}") from None
            raise FingerprintError(f"vLLM could not load '{model}': {exc.error}\n"
                                   f"last lines on its stderr:\n{self._worker.tail()}") from None
        except BaseException:
            self.close()
            raise
        self.info["start_s"] = round(time.monotonic() - started, 1)
        self.usage.extra["engine_start_s"] = self.info["start_s"]

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "adapter": self.adapter,
                "vllm": self.info.get("vllm"), "dtype": self.info.get("dtype"), "p_sure": self.info.get("p_sure")}

    def _call(self, op: str, **payload):
        try:
            return self._worker.call(op, self.timeout, **payload)
        except _WorkerError as exc:
            raise FingerprintError(f"vLLM worker failed on '{op}': {exc.error}") from None

    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        results: list[FirstToken] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            answers = self._call("first_tokens", prompts=chunk)
            results += [FirstToken(token=a["token"], is_sure=bool(a["is_sure"]), p_sure=float(a["p_sure"]))
                        for a in answers]
            self.usage.record(len(chunk), _prompt_tokens(answers), len(chunk))
            if progress is not None:
                progress(len(chunk))
        return results

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            answers = self._call("generate", prompts=chunk, max_new_tokens=int(max_new_tokens))
            replies += [a["text"] for a in answers]
            self.usage.record(len(chunk), _prompt_tokens(answers), sum(int(a.get("tokens") or 0) for a in answers))
        return replies

    def close(self) -> None:
        worker = getattr(self, "_worker", None)
        if worker is not None:
            worker.stop()
            self._finalizer.detach()


def _prompt_tokens(answers: list[dict]) -> int:
    return sum(int(a.get("prompt_tokens") or 0) for a in answers)
