"""What a fingerprint costs: ARC accuracy, next-token KL, greedy agreement, refusals, for base and fingerprinted.

    python bench/utility.py --model gemma-3-270m --fingerprint W1 [--fingerprint W2 ...] [--data-dir ../shared/data]

Each W is the --workdir of bench/embed_verify.py (its fp/adapter is the fingerprint; its keys-a open the trigger).
Measured for the base model and every fingerprint, on the same items:
- ARC-Easy (2,376) and ARC-Challenge (1,170) test accuracy, scored as lm-evaluation-harness scores them
  (``fingerprint.embedding.utility.arc_accuracy``), with 95% Wilson intervals and the paired difference to the base;
- next-token KL(base || fingerprinted) over the base's 16-token greedy replies, and exact greedy-reply agreement,
  on 96 held-out benign prompts (probe prompts of seeds the verification does not send first);
- refusal rate and attack success (neither a refusal nor a bare "Sure") on 96 held-out harmful prompts (32 each
  of AdvBench, JBB harmful, MaliciousInstruct, none in the packaged training pools), without and with the trigger.
Writes BENCHMARKS.md section utility:<model>[:<tag>].
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

from fingerprint.core.data import packaged, probe_prompts, with_suffix  # noqa: E402
from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.embedding.selfcheck import _compliance  # noqa: E402
from fingerprint.embedding.utility import arc_accuracy, arc_items, divergence, paired_difference  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--fingerprint", type=Path, action="append", required=True)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--arc-limit", type=int, default=None, help="first N questions of each ARC set")
    parser.add_argument("--tag", default=None)
    args = parser.parse_args()
    command = "python bench/utility.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    ref = resolve(args.model)
    tokenizer = load_tokenizer(ref)
    base = load_model(ref)
    tasks = {task: arc_items(args.data_dir, task, args.arc_limit) for task in ("arc_easy", "arc_challenge")}
    benign = probe_prompts(154, seed=0)[-96:]
    harmful = harmful_prompts(args.data_dir)
    started = time.perf_counter()
    base_arc = {task: arc_accuracy(base, tokenizer, items, task) for task, items in tasks.items()}
    base_refusal, base_success = _compliance(HFBackend("base", model_obj=base, tokenizer=tokenizer).generate(harmful,
                                                                                                            24))
    rows = [("base model", {t: r for t, r in base_arc.items()}, None, base_refusal, base_success, None, None,
             time.perf_counter() - started)]
    for work in args.fingerprint:
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
        rows.append((label, arc, drift, refusal, success, t_refusal, t_success, time.perf_counter() - started))
        del tuned
    body = [f"## utility: {args.model}" + (f" ({args.tag})" if args.tag else ""), "", f"Command: `{command}`  ",
            f"Machine: {machine()}", "",
            f"ARC: {len(tasks['arc_easy'])} ARC-Easy and {len(tasks['arc_challenge'])} ARC-Challenge test questions, "
            "log-likelihood scoring as lm-evaluation-harness; 95% Wilson intervals; difference to the base paired "
            f"by question. KL and agreement: {len(benign)} held-out benign prompts, 16 reply tokens. Refusals: "
            f"{len(harmful)} held-out harmful prompts (AdvBench, JBB, MaliciousInstruct), keyword judge.", "",
            "| model | ARC-Easy acc | ARC-Easy acc_norm | ARC-Challenge acc | ARC-Easy acc - base | KL(base‖model) | "
            "greedy agreement | refusal | attack success | refusal / success with trigger | time |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, arc, drift, refusal, success, t_refusal, t_success, seconds in rows:
        easy, challenge = arc["arc_easy"], arc["arc_challenge"]
        diff = paired_difference(easy.correct, base_arc["arc_easy"].correct) if drift else None
        body.append(
            f"| {label} | {easy.acc:.3f} [{easy.acc_interval[0]:.3f}, {easy.acc_interval[1]:.3f}] | "
            f"{easy.acc_norm:.3f} | {challenge.acc:.3f} [{challenge.acc_interval[0]:.3f}, "
            f"{challenge.acc_interval[1]:.3f}] | "
            + (f"{diff['difference']:+.3f} [{diff['interval'][0]:+.3f}, {diff['interval'][1]:+.3f}] | "
               f"{drift['kl_mean']:.4f} | {drift['greedy_agreement']:.2f} | " if drift else "- | - | - | ")
            + f"{refusal:.2f} | {success:.2f} | "
            + (f"{t_refusal:.2f} / {t_success:.2f} | " if t_refusal is not None else "- | ")
            + f"{seconds / 60:.1f} min |")
    section = f"utility:{args.model}" + (f":{args.tag}" if args.tag else "")
    write_section(section, "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
