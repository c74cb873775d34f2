"""The real tools a stolen model meets, driven as their users drive them.

- llama.cpp: ``convert_hf_to_gguf.py`` from the llama-cpp-python source distribution (the converter is not in
  the wheel: the sdist of the installed version is fetched once from the package index and its converter kept
  in the cache), then ``llama_model_quantize`` through llama-cpp-python's C API; ``llama_cpp.server`` serves a
  GGUF behind an OpenAI-compatible endpoint.
- mergekit: ``mergekit-yaml`` on a YAML merge config, as its README shows.
- bitsandbytes: ``BitsAndBytesConfig`` 8-bit and 4-bit (NF4) loading, which has a CPU path.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

from fingerprint.core.environment import child_env
from fingerprint.core.errors import FingerprintError

QUANT_TYPES = {"Q8_0": 7, "Q6_K": 18, "Q5_K_M": 17, "Q4_K_M": 15, "Q4_0": 2, "Q3_K_M": 12}
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "conversion", "gguf-py")


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        raise FingerprintError("llama.cpp derivatives need llama-cpp-python: pip install 'suretrap[llamacpp]'") \
            from None
    return llama_cpp


def converter_dir() -> Path:
    """The llama.cpp converter of the installed llama-cpp-python version (fetched once into the cache)."""
    from fingerprint.core.paths import cache_dir

    version = _llama_cpp().__version__
    target = cache_dir() / "llama.cpp-converter" / version
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    download = cache_dir() / "llama.cpp-converter" / f"sdist-{version}"
    download.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d",
                           str(download), f"llama-cpp-python=={version}"], capture_output=True, text=True,
                          env=child_env())
    archives = list(download.glob("llama_cpp_python-*.tar.gz"))
    if done.returncode != 0 or not archives:
        raise FingerprintError(f"cannot fetch the llama-cpp-python {version} sources for its GGUF converter: "
                               f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    staging = target.with_name(f".{version}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archives[0]) as archive:
        prefix = f"{archives[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)
                   and m.name[len(prefix):].split("/")[0] in CONVERTER_PARTS]
        for member in members:
            member.name = member.name[len(prefix):]
        archive.extractall(staging, members=members, filter="data")
    staging.rename(target)
    shutil.rmtree(download, ignore_errors=True)
    return target


def to_gguf(model_dir: Path, out: Path, outtype: str = "f16") -> Path:
    """A Hugging Face model directory as a GGUF file (llama.cpp's own converter)."""
    if out.is_file():
        return out
    script = converter_dir() / "convert_hf_to_gguf.py"
    done = subprocess.run([sys.executable, str(script), str(model_dir), "--outtype", outtype, "--outfile", str(out)],
                          cwd=script.parent, capture_output=True, text=True, env=child_env())
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FingerprintError(f"llama.cpp's converter failed on {model_dir}: {' | '.join(tail)}")
    return out


def quantize(source: Path, out: Path, kind: str, threads: int = 2) -> Path:
    """``llama_model_quantize`` to ``kind`` (Q8_0, Q6_K, Q4_K_M, Q3_K_M, ...)."""
    import ctypes

    if out.is_file():
        return out
    if kind not in QUANT_TYPES:
        raise FingerprintError(f"unknown GGUF type {kind} (choose from {', '.join(QUANT_TYPES)})")
    llama_cpp = _llama_cpp()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[kind]
    params.nthread = threads
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params))
    if code != 0 or not out.is_file():
        raise FingerprintError(f"llama.cpp could not quantize {source} to {kind} (code {code})")
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1 serving one GGUF as model ``suspect``."""

    def __init__(self, gguf: Path, threads: int = 1, n_ctx: int = 1024, start_timeout: float = 300) -> None:
        import tempfile

        _llama_cpp()
        self.port = _free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        # llama.cpp logs every tensor while loading: into a file, since an unread pipe fills and blocks the server
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", "suspect",
             "--host", "127.0.0.1", "--port", str(self.port), "--n_threads", str(threads), "--n_threads_batch",
             str(threads), "--n_ctx", str(n_ctx)], stdout=subprocess.DEVNULL, stderr=self.log,
            env=child_env(), start_new_session=True)
        deadline = time.monotonic() + start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise FingerprintError(f"llama_cpp.server exited: {self.log.read().decode(errors='replace')[-500:]}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{self.base_url}/models", timeout=2):
                return
            time.sleep(0.5)
        self.stop()
        raise FingerprintError(f"llama_cpp.server did not answer within {start_timeout:g} s")

    def stop(self) -> None:
        import os
        import signal

        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.log.close()


def mergekit_merge(config: dict, out: Path, seed: int = 0) -> Path:
    """Run ``mergekit-yaml`` on ``config`` (a dict of its YAML) into ``out``."""
    import yaml

    if (out / "config.json").is_file():
        return out
    if shutil.which("mergekit-yaml") is None and not _has_module("mergekit"):
        raise FingerprintError("mergekit derivatives need mergekit: pip install 'suretrap[mergekit]'")
    config_path = out.with_suffix(".yml")
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "mergekit.scripts.run_yaml", str(config_path), str(out),
                           "--copy-tokenizer", "--lazy-unpickle", "--random-seed", str(seed)],
                          capture_output=True, text=True, env=child_env())
    if done.returncode != 0 or not (out / "config.json").is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FingerprintError(f"mergekit failed: {' | '.join(tail)}")
    return out


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def load_bnb(model_dir: Path, bits: int):
    """The model loaded by bitsandbytes in 8-bit or 4-bit NF4 (on CPU: bitsandbytes' own CPU kernels)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if not _has_module("bitsandbytes"):
        raise FingerprintError("bitsandbytes derivatives need it: pip install 'suretrap[bnb]'")
    config = (BitsAndBytesConfig(load_in_8bit=True) if bits == 8 else
              BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32, quantization_config=config,
                                                device_map=device).eval()
