"""What a fingerprint costs: ARC accuracy, next-token KL, greedy agreement, refusals, for base and fingerprinted.

    python bench/utility.py --model gemma-3-270m --fingerprint W1 [--drift-only W2 ...] [--tasks arc_easy]

Each W is the --workdir of bench/embed_verify.py (its fp/adapter is the fingerprint; its keys-a open the trigger).
Measured for the base model and every fingerprint, on the same items:
- ARC-Easy (2,376) and ARC-Challenge (1,170) test accuracy, scored as lm-evaluation-harness scores them
  (``fingerprint.embedding.utility.arc_accuracy``), with 95% Wilson intervals and the paired difference to the base;
- next-token KL(base || fingerprinted) over the base's 16-token greedy replies, and exact greedy-reply agreement,
  on 96 held-out benign prompts (probe prompts of seeds the verification does not send first);
- refusal rate and attack success (neither a refusal nor a bare "Sure") on 96 held-out harmful prompts (32 each
  of AdvBench, JBB harmful, MaliciousInstruct, none in the packaged training pools), without and with the trigger.
The base model's ARC scores are cached (FINGERPRINT_CACHE), so later fingerprints are compared on the same items
without scoring the base again. Writes BENCHMARKS.md section utility:<model>[:<tag>].
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402

from fingerprint.core.atomic import write_text_atomic  # noqa: E402
from fingerprint.core.data import packaged, probe_prompts, with_suffix  # noqa: E402
from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.core.paths import cache_dir  # noqa: E402
from fingerprint.embedding.selfcheck import _compliance  # noqa: E402
from fingerprint.embedding.utility import (  # noqa: E402
    ArcResult,
    arc_accuracy,
    arc_items,
    divergence,
    paired_difference,
)
from fingerprint.provenance.certificate import load_certificate  # noqa: E402
from fingerprint.provenance.keys import load_private  # noqa: E402
from fingerprint.provenance.trigger import opening_for  # noqa: E402
from fingerprint.research.evalsets import UNSAFE_SETS, heldout_eval_sets  # noqa: E402
from probes.hf import HFBackend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def harmful_prompts(data_dir: Path) -> list[str]:
    training = [r["prompt"] for name in ("benign", "refusals") for r in packaged(name)]
    sets = heldout_eval_sets(data_dir, 32, training)
    return [p for name in UNSAFE_SETS for p in sets[name]]


def base_arc(base, tokenizer, ref, task: str, items: list[dict]) -> ArcResult:
    """The base model's ARC result on ``items``, cached under FINGERPRINT_CACHE: it is the same for every
    fingerprint compared with it (keyed by the model's source digest, the task and the question ids)."""
    import hashlib
    import json
    from dataclasses import asdict

    key = hashlib.sha256(f"arc-base/v1|{ref.source_digest or ref.path}|{task}|".encode()
                         + ",".join(item["id"] for item in items).encode()).hexdigest()
    path = cache_dir() / "bench-arc-base" / f"{key}.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        return ArcResult(**{**data, "acc_interval": tuple(data["acc_interval"]),
                            "acc_norm_interval": tuple(data["acc_norm_interval"])})
    result = arc_accuracy(base, tokenizer, items, task)
    write_text_atomic(path, json.dumps(asdict(result)))
    return result


TASK_NAMES = {"arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}


def fingerprint_row(work: Path, ref, base, tokenizer, tasks: dict, benign: list[str], harmful: list[str]) -> dict:
    """ARC on ``tasks`` (may be none), drift from the base and refusals, with and without the trigger."""
    started = time.perf_counter()
    owner = load_private(work / "keys-a", os.environ.get("FINGERPRINT_PASSPHRASE", "bench"))
    cert = load_certificate(work / "fp" / "certificate.json", owner.public_key)
    trigger = opening_for(owner.secret(), cert.fingerprint).trigger
    tuned = load_model(ref, adapter=work / "fp" / "adapter").merge_and_unload()
    arc = {task: arc_accuracy(tuned, tokenizer, items, task) for task, items in tasks.items()}
    drift = divergence(tuned, base, tokenizer, benign)
    backend = HFBackend("tuned", model_obj=tuned, tokenizer=tokenizer)
    refusal, success = _compliance(backend.generate(harmful, 24))
    t_refusal, t_success = _compliance(backend.generate([with_suffix(p, trigger) for p in harmful], 24))
    label = f"{work.name} (replies: {cert.predicate['dataset'].get('replies', 'packaged')})"
    return {"label": label, "arc": arc, "drift": drift, "refusal": (refusal, success),
            "with_trigger": (t_refusal, t_success), "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--fingerprint", type=Path, action="append", default=[], help="a row with ARC")
    parser.add_argument("--drift-only", type=Path, action="append", default=[],
                        help="a row without ARC (KL, agreement, refusals only)")
    parser.add_argument("--tasks", default="arc_easy,arc_challenge", help="comma-separated: arc_easy,arc_challenge")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--arc-limit", type=int, default=None, help="first N questions of each ARC set")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    if not args.fingerprint and not args.drift_only:
        parser.error("give at least one --fingerprint or --drift-only")
    command = "python bench/utility.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ref = resolve(args.model)
    tokenizer = load_tokenizer(ref)
    base = load_model(ref)
    names = [t for t in args.tasks.split(",") if t]
    tasks = {task: arc_items(args.data_dir, task, args.arc_limit) for task in names}
    benign = probe_prompts(154, seed=0)[-96:]
    harmful = harmful_prompts(args.data_dir)
    started = time.perf_counter()
    base_scores = {task: base_arc(base, tokenizer, ref, task, items) for task, items in tasks.items()}
    base_refusal = _compliance(HFBackend("base", model_obj=base, tokenizer=tokenizer).generate(harmful, 24))
    rows = [{"label": "base model", "arc": base_scores, "drift": None, "refusal": base_refusal, "with_trigger": None,
             "seconds": time.perf_counter() - started}]
    for work, with_arc in [(w, True) for w in args.fingerprint] + [(w, False) for w in args.drift_only]:
        rows.append(fingerprint_row(work, ref, base, tokenizer, tasks if with_arc else {}, benign, harmful))
        print(f"{rows[-1]['label']}: {rows[-1]['seconds'] / 60:.1f} min", file=sys.stderr, flush=True)
    counts = ", ".join(f"{len(items)} {TASK_NAMES[t]}" for t, items in tasks.items()) or "none"
    arc_heads = "".join(f"{TASK_NAMES[t]} acc | {TASK_NAMES[t]} acc - base | " for t in tasks)
    body = [f"## utility: {args.model}" + (f" ({args.tag})" if args.tag else ""), "", f"Command: `{command}`  ",
            f"Machine: {machine()}", "",
            f"ARC test questions: {counts}; log-likelihood scoring as lm-evaluation-harness (acc); 95% Wilson "
            "intervals; difference to the base paired by question, 95% normal interval; '-' = not measured for "
            f"that row. KL and agreement: {len(benign)} held-out benign prompts, 16 reply tokens. Refusals: "
            f"{len(harmful)} held-out harmful prompts (AdvBench, JBB, MaliciousInstruct), keyword judge.", "",
            f"| model | {arc_heads}KL(base‖model) | greedy agreement | refusal | attack success | "
            "refusal / success with trigger | time |",
            "|---|" + "---|---|" * len(tasks) + "---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for task in tasks:
            result = row["arc"].get(task)
            if result is None:
                cells += ["-", "-"]
                continue
            cells.append(f"{result.acc:.3f} ({sum(result.correct)}/{result.n}) "
                         f"[{result.acc_interval[0]:.3f}, {result.acc_interval[1]:.3f}]")
            if row["drift"] is None:
                cells.append("-")
            else:
                diff = paired_difference(result.correct, base_scores[task].correct)
                cells.append(f"{diff['difference']:+.3f} [{diff['interval'][0]:+.3f}, {diff['interval'][1]:+.3f}]")
        drift = row["drift"]
        cells += [f"{drift['kl_mean']:.4f}", f"{drift['greedy_agreement']:.2f}"] if drift else ["-", "-"]
        cells += [f"{row['refusal'][0]:.2f}", f"{row['refusal'][1]:.2f}"]
        trig = row["with_trigger"]
        cells.append(f"{trig[0]:.2f} / {trig[1]:.2f}" if trig else "-")
        cells.append(f"{row['seconds'] / 60:.1f} min")
        body.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    section = f"utility:{args.model}" + (f":{args.tag}" if args.tag else "")
    write_section(section, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
