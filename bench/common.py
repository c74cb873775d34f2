"""Helpers for the hand-run benchmarks: run CLI steps as child processes, record figures in BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "BENCHMARKS.md"


def run_step(args: list[str], env: dict | None = None) -> tuple[dict | None, float, float, int]:
    """Run ``fingerprint ARGS``; returns (parsed --json output, wall seconds, peak RSS GiB, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cli", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, **(env or {})}, text=True)
    # read both pipes in threads and reap the child here: its own peak RSS comes with wait4 (after
    # communicate() has reaped it, only the largest of all children so far is left)
    output: dict[str, str] = {}
    readers = [threading.Thread(target=lambda name, stream: output.__setitem__(name, stream.read()), args=pair)
               for pair in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(proc.pid, 0)
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = output["stdout"], output["stderr"]
    wall = time.perf_counter() - start
    rss = usage.ru_maxrss / 2**20
    if proc.returncode not in (0, 1):
        raise SystemExit(f"step failed ({proc.returncode}): fingerprint {' '.join(map(str, args))}\n{stderr[-2000:]}")
    data = json.loads(stdout) if stdout.strip().startswith(("{", "[")) else None
    return data, wall, rss, proc.returncode


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section between ``<!-- name -->`` markers in BENCHMARKS.md."""
    header = "# Benchmarks\n\nFigures measured by hand-run scripts in `bench/`, each with its command.\n"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else header
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"{os.cpu_count()} cores ({cpu}; {vector_units()}), torch threads "
            f"{f'{threads} (OMP_NUM_THREADS)' if threads else 'default'}")


def vector_units() -> str:
    """The widest vector arithmetic the CPU lists: what CPU training speed (and ``--precision auto``) hangs on."""
    from fingerprint.core.precision import cpu_flags

    flags = cpu_flags()
    for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512 without BF16"),
                       ("avx2", "AVX2, no AVX-512")):
        if flag in flags:
            return name
    return "no AVX2"


def write_measures(section: str, title: str, command: str, rows: list[tuple[str, str]]) -> str:
    """A "measure | value" table with its command and machine, into BENCHMARKS.md and stdout."""
    body = [f"## {title}", "", f"Command: `{command}`  ", f"Machine: {machine()}", "",
            "| measure | value |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    text = "\n".join(body)
    write_section(section, text)
    print(text)
    return text
