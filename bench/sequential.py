"""Queries to a verdict: the sequential e-process against the fixed-size exact test, on a real gate.

    python bench/sequential.py --workdir W [--model gemma-3-270m] [--probes 128] [--orders 200]

W is the --workdir of bench/embed_verify.py (keys-a, passphrase "bench", fp/). The fingerprinted model's
greedy first tokens are measured once for ``--probes`` held-out prompts, each with the trigger and with a decoy
(as ``verify`` builds them). Then ``--orders`` seeded orders of these pairs are replayed: the e-process of
``verify --sequential`` (pairs queried 4 at a time, stop at e >= 1/alpha) against the default fixed-size test
(the first 32 pairs, one-sided Fisher exact test). Writes docs/sequential.png and BENCHMARKS.md (section
sequential:<model>).
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

from fingerprint.certificate import load_certificate  # noqa: E402
from fingerprint.keys import load_private  # noqa: E402
from fingerprint.models import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.sequential import e_process  # noqa: E402
from fingerprint.stats import exact_test  # noqa: E402
from fingerprint.trigger import opening_for  # noqa: E402
from fingerprint.verify import SEQUENTIAL_BATCH_PAIRS, VerifyOptions, probe_plan  # noqa: E402
from probes.hf import HFBackend  # noqa: E402


def replay(pairs: list[tuple[bool, bool]], alpha: float) -> tuple[int, bool, list[tuple[int, float]]]:
    """Queries the sequential test spends on this order (whole batches), its verdict and its e-value path."""
    path = []
    for n in range(1, len(pairs) + 1):
        wealth = e_process(pairs[:n], alpha=alpha).e_value
        path.append((2 * n, wealth))
        if wealth >= 1 / alpha:
            return 2 * SEQUENTIAL_BATCH_PAIRS * -(-n // SEQUENTIAL_BATCH_PAIRS), True, path
    return 2 * len(pairs), False, path


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
    opening = opening_for(owner.secret(), cert.predicate["fingerprint"])
    options = VerifyOptions(probes=args.probes)
    trigger_prompts, (decoy_prompts, *_) = probe_plan(opening, options)  # one-word fingerprints: one arm
    ref = resolve(args.model)
    backend = HFBackend(args.model, model_obj=load_model(ref, adapter=args.workdir / "fp" / "adapter"),
                        tokenizer=load_tokenizer(ref))
    answers = backend.first_tokens(trigger_prompts + decoy_prompts)
    n = len(trigger_prompts)
    pairs = [(answers[i].is_sure, answers[n + i].is_sure) for i in range(n)]
    alpha, fixed_probes = options.alpha, VerifyOptions().probes
    sequential, certified_seq, fixed_p, paths = [], 0, [], []
    for seed in range(args.orders):
        order = pairs[:]
        random.Random(f"sequential-bench|{seed}").shuffle(order)
        queries, certified, path = replay(order, alpha)
        sequential.append(queries)
        certified_seq += certified
        paths.append(path)
        head = order[:fixed_probes]
        fixed_p.append(exact_test(sum(t for t, _ in head), fixed_probes, sum(d for _, d in head), fixed_probes,
                                  alpha).p_value)
    figure = ROOT / "docs" / "sequential.png"
    plot(paths[:20], sequential, alpha, 2 * fixed_probes, figure)
    t_sure, d_sure = sum(t for t, _ in pairs), sum(d for _, d in pairs)
    rows = [
        ("gate measured on", f"{n} held-out probes: trigger Sure {t_sure}/{n}, decoy Sure {d_sure}/{n}"),
        ("fixed-size test (default): queries, certified orders",
         f"{2 * fixed_probes} queries always; certified in {sum(p <= alpha for p in fixed_p)}/{args.orders} orders, "
         f"median p {statistics.median(fixed_p):.2g}"),
        ("sequential e-process: queries to verdict (median, min-max)",
         f"{statistics.median(sequential):.0f} ({min(sequential)}-{max(sequential)}); certified in "
         f"{certified_seq}/{args.orders} orders"),
        ("orders where the sequential test used fewer queries than the fixed test",
         f"{sum(q < 2 * fixed_probes for q in sequential)}/{args.orders}"),
    ]
    body = [f"## sequential vs fixed-size verification: {args.model}", "", f"Command: `{command}`  ",
            f"Machine: {machine()}", "", f"Alpha {alpha:g}; {args.orders} seeded orders of the measured pairs. "
            f"Figure: [docs/sequential.png](docs/sequential.png).", "", "| measure | value |", "|---|---|",
            *(f"| {k} | {v} |" for k, v in rows), "", "![sequential](docs/sequential.png)"]
    write_section(f"sequential:{args.model}", "\n".join(body))
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
