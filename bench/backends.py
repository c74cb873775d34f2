"""Backend throughput: probes per second of hf, vllm and openai (against a local vLLM server) on one model.

    python bench/embed_verify.py --workdir W      # first: keys (passphrase "bench") and a fingerprinted model
    python bench/backends.py --workdir W [--probes 32]

For each backend: start time (model load / engine start / server start), then the 2 x probes first-token
queries of one verification (trigger and decoy prompts of key A's certificate), timed, and the verdict
they give. Needs the vLLM venv (``bash .ci/vllm-venv.sh``). Writes BENCHMARKS.md (section backends:<model>).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
from common import machine, write_section  # noqa: E402
from servers import vllm_server  # noqa: E402  (the tests' server helper: starts and stops vLLM's server)

from fingerprint.core.loading import resolve  # noqa: E402
from fingerprint.provenance.certificate import load_certificate  # noqa: E402
from fingerprint.provenance.keys import load_private  # noqa: E402
from fingerprint.provenance.trigger import opening_for  # noqa: E402
from fingerprint.verification import VerifyOptions, probe_plan  # noqa: E402
from fingerprint.verification.rules.fisher import decide_counts  # noqa: E402
from probes import make_backend  # noqa: E402


def measure(name: str, prompts: list[str], n: int, **args) -> dict:
    started = time.perf_counter()
    backend = make_backend(name, **args)
    start_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        answers = backend.first_tokens(prompts)
        probe_s = time.perf_counter() - started
    finally:
        backend.close()
    t, d = sum(a.is_sure for a in answers[:n]), sum(a.is_sure for a in answers[n:])
    result = decide_counts(t, n, {"first control arm": d}, 1e-6)
    return {"start_s": start_s, "probe_s": probe_s, "queries": len(prompts), "trigger": t, "decoy": d,
            "p": result.p_value, "certified": result.certified}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--probes", type=int, default=32)
    args = parser.parse_args()
    command = "python bench/backends.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = args.workdir
    owner = load_private(work / "keys-a", "bench")
    cert = load_certificate(work / "fp" / "certificate.json", owner.public_key)
    opening = opening_for(owner.secret(), cert.fingerprint)
    plan = probe_plan(opening, VerifyOptions(probes=args.probes))
    trigger_prompts = [q.prompt for q in plan.trigger]
    decoy_prompts = [q.prompt for q in plan.controls[plan.arms[0]]]  # the first control arm
    prompts, n = trigger_prompts + decoy_prompts, len(trigger_prompts)
    model_dir, adapter = resolve(args.model).path, str(work / "fp" / "adapter")
    rank = json.loads((work / "fp" / "adapter" / "adapter_config.json").read_text())["r"]
    rows = {"hf": measure("hf", prompts, n, model=model_dir, adapter=adapter),
            "vllm": measure("vllm", prompts, n, model=model_dir, adapter=adapter, max_lora_rank=rank)}
    started = time.perf_counter()
    lora = ("--enable-lora", "--max-lora-rank", str(rank), "--lora-modules", f"fp={adapter}")
    with vllm_server(Path(model_dir), "base", work / "server-logs", extra=lora) as server:
        server_s = time.perf_counter() - started
        rows["openai -> vLLM server"] = measure("openai", prompts, n, model="fp", base_url=server.base_url,
                                                cache="off")
        rows["openai -> vLLM server"]["start_s"] = server_s
    body = [f"## backends: {args.model}", "", f"Command: `{command}`  ", f"Machine: {machine()}", "",
            f"One verification of the fingerprinted model ({len(prompts)} first-token queries), per backend.", "",
            "| backend | start (load / engine / server) | probing time | probes/s | trigger / decoy Sure | p "
            "| verdict |",
            "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        body.append(f"| {name} | {r['start_s']:.1f} s | {r['probe_s']:.1f} s | {r['queries'] / r['probe_s']:.1f} | "
                    f"{r['trigger']}/{n} / {r['decoy']}/{n} | {r['p']:.2g} | "
                    f"{'certified' if r['certified'] else 'NOT certified'} |")
    write_section(f"backends:{args.model}", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
