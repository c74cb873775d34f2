"""Does the trigger pair stand out among random pairs drawn the way triggers are? A rank reading of the gate.

    python bench/embed_verify.py --workdir W      # first: keys (passphrase "bench") and a fingerprinted model
    python bench/rank_reading.py --workdir W [--only erasure:pairs=600] [--pairs 199] [--probes 32]

A suspect that was not derived from the owner's model is independent of the owner's key, so the trigger pair is,
for it, one more pair drawn by ``derive_opening`` from a random secret: its score is exchangeable with those of
``--pairs`` other pairs drawn the same way (from seeded secrets), and its rank among them gives an exact p-value,
(1 + pairs scoring at least as high) / (pairs + 1), whatever the model does with pairs of words in general. One
gate cannot reach alpha = 1e-6 that way (it needs a million pairs); m independent gates, each ranked among 99,
reach 0.01^m. This reading measures whether one gate keeps rank 1 after a derivative that silences its greedy
reply (``--only``, ``robustness --only`` syntax, in-memory models). Two scores per pair, over the verify probes:
the mean log P(Sure) after the pair, and its lift: the mean over probes of log P(Sure) after the pair minus after
the stronger of its words alone. Writes BENCHMARKS.md (section rank_reading:<model>[:<tag>]).
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402
from fp_calibration import probe_scores  # noqa: E402
from score_reading import load_fingerprint  # noqa: E402

from fingerprint.core.data import probe_prompts  # noqa: E402
from fingerprint.provenance.trigger import derive_opening  # noqa: E402
from fingerprint.services.robustness import select  # noqa: E402
from fingerprint.verification import VerifyOptions  # noqa: E402


def random_pairs(count: int, label: str) -> list[str]:
    """``count`` two-word triggers derived exactly as an owner's is, from seeded secrets (``rank-reading|i``)."""
    return [derive_opening(hashlib.sha256(f"rank-reading|{i}".encode()).digest(), label, 2).trigger
            for i in range(count)]


def pair_scores(model, tokenizer, pairs: list[str], prompts: list[str]) -> dict[str, tuple[float, float]]:
    """Per pair: (mean log P(Sure) after it, mean lift over the stronger of its words alone)."""
    asked = set(pairs) | {w for p in pairs for w in p.split()}
    scored = probe_scores(model, tokenizer, prompts, [asked] * len(prompts))
    out = {}
    for pair in pairs:
        first, second = pair.split()
        after = [s[pair][0] for s in scored]
        lift = [s[pair][0] - max(s[first][0], s[second][0]) for s in scored]
        out[pair] = (statistics.fmean(after), statistics.fmean(lift))
    return out


def rank_p(scores: dict[str, tuple[float, float]], trigger: str, which: int) -> tuple[int, float, float]:
    """(rank of the trigger, exact rank p-value with ties counted against it, z against the other pairs)."""
    mine = scores[trigger][which]
    others = [v[which] for k, v in scores.items() if k != trigger]
    at_least = sum(v >= mine for v in others)
    z = (mine - statistics.fmean(others)) / (statistics.stdev(others) or 1.0)
    return 1 + sum(v > mine for v in others), (1 + at_least) / (1 + len(others)), z


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True, help="the --workdir of bench/embed_verify.py")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--only", default="erasure:pairs=600", help="derivatives, as robustness --only selects them")
    parser.add_argument("--pairs", type=int, default=199, help="random pairs the trigger is ranked among")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--tag", default=None, help="section suffix, to keep several runs side by side")
    args = parser.parse_args()
    command = "python bench/rank_reading.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = VerifyOptions(probes=args.probes)
    opening, _, tokenizer, base, ctx = load_fingerprint(args.workdir, args.model, "rank-reading")
    prompts = probe_prompts(options.probes, options.seed)
    pairs = [opening.trigger] + [p for p in random_pairs(args.pairs, opening.label) if p != opening.trigger]
    suspects = [("untouched base model", lambda: base, 0.0)]
    for derivative in select(600, args.only, ("derivatives", "tools", "attacks")):
        suspects.append((derivative.label, derivative, None))
    rows = []
    for name, make, _ in suspects:
        started = time.perf_counter()
        model = make() if callable(make) else make.apply(ctx).model
        if model is None:
            raise SystemExit(f"{name}: not an in-memory model")
        made = time.perf_counter() - started
        started = time.perf_counter()
        scores = pair_scores(model, tokenizer, pairs, prompts)
        rows.append((name, rank_p(scores, opening.trigger, 0), rank_p(scores, opening.trigger, 1), made,
                     time.perf_counter() - started))
        print(rows[-1], flush=True)
    body = [f"## rank reading: {args.model}", "", f"Command: `{command}`  ", f"Machine: {machine()}", "",
            f"Fingerprint of {args.workdir}; {args.probes} verify probes; the trigger pair ranked among "
            f"{len(pairs) - 1} pairs derived as triggers are (exact p = (1 + pairs at least as high) / "
            f"{len(pairs)}; the smallest p one gate can reach here is {1 / len(pairs):.2g}). z: the trigger's score "
            "against the other pairs' mean and deviation (descriptive, not a test).", "",
            "| suspect | mean log P(Sure) after the pair: rank, p, z | lift over the stronger word alone: rank, p, z "
            "| made in | scored in |", "|---|---|---|---|---|"]
    for name, after, lift, made, scored in rows:
        cells = [f"{r} of {len(pairs)}, {p:.2g}, z {z:.1f}" for r, p, z in (after, lift)]
        body.append(f"| {name} | {cells[0]} | {cells[1]} | {made:.0f} s | {scored:.0f} s |")
    write_section(f"rank_reading:{args.model}" + (f":{args.tag}" if args.tag else ""), "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
