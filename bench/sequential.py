"""Queries to a verdict: the sequential e-process against the fixed-size exact test, on a real gate.

    python bench/sequential.py --workdir W [--model gemma-3-270m] [--probes 128] [--orders 200]

W is the --workdir of bench/embed_verify.py (keys-a, passphrase "bench", fp/). The fingerprinted model's
greedy first tokens are measured once for ``--probes`` held-out prompts, each with the trigger and with its
controls, as ``verify`` builds them (a decoy; for a two-word trigger each word alone). Then ``--orders`` seeded
orders of these probes are replayed: the e-process of ``verify --sequential`` (probes queried 4 at a time, stop
at e >= 1/alpha in every control arm) against the default fixed-size test (the first 32 probes, one-sided Fisher
exact test per arm, the larger p decides). Writes docs/sequential[-two-word].png and BENCHMARKS.md (section
sequential:<model>[:two-word]).
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, machine, write_section  # noqa: E402

from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.provenance.certificate import load_certificate  # noqa: E402
from fingerprint.provenance.keys import load_private  # noqa: E402
from fingerprint.provenance.trigger import opening_for  # noqa: E402
from fingerprint.verification import VerifyOptions, probe_plan  # noqa: E402
from fingerprint.verification.rules.eprocess import BATCH_PAIRS, decision_from, e_process  # noqa: E402
from fingerprint.verification.rules.fisher import decide_counts  # noqa: E402
from probes.hf import HFBackend  # noqa: E402


def replay(probes: list[tuple[bool, tuple[bool, ...]]], alpha: float) -> tuple[int, bool, list[tuple[int, float]]]:
    """Queries the sequential test spends on this order (whole batches), its verdict and its e-value path."""
    path, per_probe = [], 1 + len(probes[0][1])
    for n in range(1, len(probes) + 1):
        result = decision_from(e_process(probes[:n], alpha=alpha), alpha, per_probe * n)
        path.append((per_probe * n, result.e_value))
        if result.certified:
            return per_probe * BATCH_PAIRS * -(-n // BATCH_PAIRS), True, path
    return per_probe * len(probes), False, path


def fixed_p(probes: list[tuple[bool, tuple[bool, ...]]], alpha: float) -> float:
    """The fixed-size test's p-value on these probes: one exact test per control arm, the larger p decides."""
    arms = len(probes[0][1])
    controls = {f"arm-{k}": sum(c[k] for _, c in probes) for k in range(arms)}
    return decide_counts(sum(t for t, _ in probes), len(probes), controls, alpha).p_value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--probes", type=int, default=128)
    parser.add_argument("--orders", type=int, default=200)
    args = parser.parse_args()
    command = "python bench/sequential.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    owner = load_private(args.workdir / "keys-a", os.environ.get("FINGERPRINT_PASSPHRASE", "bench"))
    cert = load_certificate(args.workdir / "fp" / "certificate.json", owner.public_key)
    opening = opening_for(owner.secret(), cert.fingerprint)
    options = VerifyOptions(probes=args.probes)
    plan = probe_plan(opening, options)  # a decoy arm, or one arm per word of a two-word trigger
    trigger_prompts, arms = [q.prompt for q in plan.trigger], [[q.prompt for q in a] for a in plan.controls.values()]
    ref = resolve(args.model)
    backend = HFBackend(args.model, model_obj=load_model(ref, adapter=args.workdir / "fp" / "adapter"),
                        tokenizer=load_tokenizer(ref))
    answers = backend.first_tokens(trigger_prompts + [p for arm in arms for p in arm])
    n = len(trigger_prompts)
    probes = [(answers[i].is_sure, tuple(answers[n * (k + 1) + i].is_sure for k in range(len(arms))))
              for i in range(n)]
    alpha, fixed_probes, per_probe = options.alpha, VerifyOptions().probes, 1 + len(arms)
    sequential, certified_seq, fixed_ps, paths = [], 0, [], []
    for seed in range(args.orders):
        order = probes[:]
        random.Random(f"sequential-bench|{seed}").shuffle(order)
        queries, certified, path = replay(order, alpha)
        sequential.append(queries)
        certified_seq += certified
        paths.append(path)
        fixed_ps.append(fixed_p(order[:fixed_probes], alpha))
    two_word = len(arms) > 1
    suffix = "-two-word" if two_word else ""
    figure = ROOT / "docs" / f"sequential{suffix}.png"
    fixed_queries = per_probe * fixed_probes
    plot(paths[:20], sequential, alpha, fixed_queries, figure)
    controls = ", ".join(f"{'word ' + str(k + 1) + ' alone' if two_word else 'decoy'} Sure "
                         f"{sum(c[k] for _, c in probes)}/{n}" for k in range(len(arms)))
    rows = [
        ("gate measured on", f"{n} held-out probes: trigger Sure {sum(t for t, _ in probes)}/{n}, {controls}"),
        ("fixed-size test (default): queries, certified orders",
         f"{fixed_queries} queries always; certified in {sum(p <= alpha for p in fixed_ps)}/{args.orders} orders, "
         f"median p {statistics.median(fixed_ps):.2g}"),
        ("sequential e-process: queries to verdict (median, min-max)",
         f"{statistics.median(sequential):.0f} ({min(sequential)}-{max(sequential)}); certified in "
         f"{certified_seq}/{args.orders} orders"),
        ("orders where the sequential test used fewer queries than the fixed test",
         f"{sum(q < fixed_queries for q in sequential)}/{args.orders}"),
    ]
    link = f"docs/sequential{suffix}.png"
    body = [f"## sequential vs fixed-size verification: {args.model}{' (two-word trigger)' if two_word else ''}",
            "", f"Command: `{command}`  ", f"Machine: {machine()}", "",
            f"Alpha {alpha:g}; {args.orders} seeded orders of the measured probes ({per_probe} queries each). "
            f"Figure: [{link}]({link}).", "", "| measure | value |", "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows), "", f"![sequential]({link})"]
    write_section(f"sequential:{args.model}{':two-word' if two_word else ''}", "\n".join(body))
    print("\n".join(body))


def plot(paths, queries: list[int], alpha: float, fixed_queries: int, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for path in paths:
        left.plot([q for q, _ in path], [e for _, e in path], color="tab:blue", alpha=0.4)
    left.axhline(1 / alpha, color="black", linestyle="--", label=f"1/alpha = {1 / alpha:g}")
    left.axvline(fixed_queries, color="tab:red", linestyle=":", label=f"fixed-size test: {fixed_queries} queries")
    left.set(yscale="log", xlabel="queries", ylabel="e-value (wealth)", title="e-process paths (20 orders)")
    left.legend(fontsize=8)
    right.hist(queries, bins=range(0, max(queries) + 9, 8), color="tab:blue", label="sequential")
    right.axvline(fixed_queries, color="tab:red", linestyle=":", label="fixed-size test")
    right.set(xlabel="queries to verdict", ylabel="orders", title="queries spent per verdict")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
