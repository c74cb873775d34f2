"""Scan benchmark: does ``fingerprint scan`` find a planted trigger, and stay quiet on the clean base model?

    python bench/embed_verify.py --workdir W      # first: keys (passphrase "bench") and a fingerprinted model
    python bench/scan_eval.py --workdir W [--candidates 10000] [--prompts 2] [--pairs 20] [--clean FILE]
    python bench/scan_eval.py --workdir W --suspect DIR --keys DIR --cert FILE ...   # a model trained elsewhere

Scans the fingerprinted model (base + W/fp/adapter, or ``--suspect``: a merged model directory such as the one
bench/trl_certify.py trains) and the untouched base model over the same candidates,
reveals the trigger with the owner's key only afterwards, and writes the trigger's rank, the top z-scores,
the verdicts and the throughput into BENCHMARKS.md (section scan:<model>[:<tag>]). With ``--pairs N`` (a two-word
trigger) it also runs the pair search over the N words that move P(Sure) most, and reports where each trigger
word ranks among them and where the trigger pair ranks among the pairs. The clean base model's scan does not
depend on the key: ``--clean W0/scan-clean.json`` reuses one made with the same options by an earlier run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import run_step, write_measures  # noqa: E402


def pair_rows(planted: dict, clean: dict, trigger: str) -> list[tuple[str, str]]:
    """Where the trigger's words rank among the pair search's seed words, and the pair among the best pairs."""
    seeds = planted["extra"]["pair_seed_words"]
    parts = trigger.split(" ")
    ranks = [seeds.index(w) + 1 if w in seeds else None for w in parts]
    pairs = [c["word"] for c in planted["pairs"]]
    found = [i + 1 for i, p in enumerate(pairs) if set(p.split(" ")) == set(parts)]
    votes = Counter(w for p in pairs for w in p.split(" "))
    by_votes = [w for w, _ in votes.most_common()]
    best = planted["pairs"][0] if planted["pairs"] else None
    best_clean = clean["pairs"][0] if clean["pairs"] else None
    return [
        ("pair search: words that move P(Sure) most, x pairs scored (ordered pairs of them"
         + (", and the partners of each of them and of the words of the best pairs, found by the gradient-guided"
            " search)" if planted["extra"].get("pair_inversion")
            else ")"),
         f"{len(seeds)} words, {planted['pairs_scanned']} pairs"),
        ("pair search time (fingerprinted / clean)",
         f"{planted['extra']['pair_search_seconds'] / 60:.1f} / {clean['extra']['pair_search_seconds'] / 60:.1f} min"
         if "pair_search_seconds" in planted["extra"] and "pair_search_seconds" in clean["extra"] else "-"),
        ("fingerprinted: rank of each trigger word among them (by |z| of its lift)",
         " / ".join(str(r) if r else "not among them" for r in ranks)),
        ("fingerprinted: rank of the trigger pair among the best pairs (either order)",
         f"{found[0]} of {planted['pairs_scanned']}" if found else f"not in the top {len(pairs)}"),
        (f"fingerprinted: rank of each trigger word among the words of the best {len(pairs)} pairs (by how many "
         "of them hold it)", " / ".join(f"{by_votes.index(w) + 1} ({votes[w]} pairs)" if w in votes
                                        else "not among them" for w in parts)),
        ("fingerprinted: best pair z, P(Sure)", f"{best['z']:.1f}, {best['p_sure']:.3f}" if best else "-"),
        ("clean base model: best pair z, P(Sure)",
         f"{best_clean['z']:.1f}, {best_clean['p_sure']:.3f}" if best_clean else "-"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True, help="the --workdir of bench/embed_verify.py")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=0, help="pair search over the N words that move P(Sure) most")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--clean", type=Path, default=None,
                        help="reuse the clean base model's scan-clean.json of an earlier run with the same options")
    parser.add_argument("--suspect", type=Path, default=None,
                        help="a merged fingerprinted model directory instead of --model + W/fp/adapter")
    parser.add_argument("--keys", type=Path, default=None, help="the owner's key directory (default W/keys-a)")
    parser.add_argument("--cert", type=Path, default=None, help="its certificate (default W/fp/certificate.json)")
    parser.add_argument("--rescore", action="store_true",
                        help="no scan: redo the table from W/scan-fingerprinted.json, W/scan-clean.json and "
                             "W/opening.json of an earlier run with the same options")
    args = parser.parse_args()
    command = "python bench/scan_eval.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    work = args.workdir
    env = {"FINGERPRINT_PASSPHRASE": "bench", "FINGERPRINT_REGISTRY": f"sqlite:///{work / 'reg.db'}"}
    scan_args = ["--candidates", args.candidates, "--prompts", args.prompts, "--pairs", args.pairs, "--json", "-q"]
    suspect = ["--model", args.suspect] if args.suspect else ["--model", args.model, "--adapter",
                                                              work / "fp" / "adapter"]
    options = {"model": args.model, "candidates": args.candidates, "prompts": args.prompts, "pairs": args.pairs}
    if args.rescore:
        rescore(work, args, options, command)
        return
    planted, planted_s, _, _ = run_step(["scan", *suspect, *scan_args], env)
    if args.clean:
        clean = saved_scan(args.clean, options)
    else:
        clean, clean_s, _, _ = run_step(["scan", "--model", args.model, *scan_args], env)
        clean |= {"bench_options": options, "bench_seconds": clean_s}
    run_step(["reveal", "--key", args.keys or work / "keys-a", "--cert", args.cert or work / "fp" / "certificate.json",
              "--out", work / "opening.json"], env)
    trigger = json.loads((work / "opening.json").read_text())["trigger"]
    planted |= {"bench_options": options, "bench_seconds": planted_s}
    (work / "scan-fingerprinted.json").write_text(json.dumps(planted, indent=2))  # the full top list, kept
    (work / "scan-clean.json").write_text(json.dumps(clean, indent=2))
    write_table(planted, clean, trigger, args, command)


def saved_scan(path: Path, options: dict, unmarked_ok: bool = False) -> dict:
    """A scan an earlier run saved, refused when it was made with other options (``unmarked_ok``: a fingerprinted
    model's scan saved before the options were recorded with it)."""
    scan = json.loads(path.read_text())
    if scan.get("bench_options", options if unmarked_ok else None) != options:
        raise SystemExit(f"{path} was scanned with {scan.get('bench_options')}, not {options}")
    return scan


def rescore(work: Path, args, options: dict, command: str) -> None:
    """The table again from the files an earlier run left (its throughput with model load only where stored)."""
    planted, clean = saved_scan(work / "scan-fingerprinted.json", options, True), saved_scan(
        args.clean or work / "scan-clean.json", options)
    write_table(planted, clean, json.loads((work / "opening.json").read_text())["trigger"], args, command)


def write_table(planted: dict, clean: dict, trigger: str, args, command: str) -> None:
    """Write the benchmark section for one scanned pair of models."""
    planted_s = planted.get("bench_seconds")
    clean_s = clean["bench_seconds"]
    words = [c["word"] for c in planted["top"]]
    rank = words.index(trigger) + 1 if trigger in words else None
    rows = pair_rows(planted, clean, trigger) if args.pairs else []
    rows += [
        ("candidates scanned x probe prompts", f"{planted['candidates_scanned']} x {args.prompts}"),
        ("fingerprinted: rank of the planted trigger", f"{rank} of {planted['candidates_scanned']}" if rank
         else f"not in the top {len(words)}"),
        ("fingerprinted: top candidate z, P(Sure); verdict",
         f"z = {planted['top'][0]['z']:.1f}, P = {planted['top'][0]['p_sure']:.3f}; "
         f"{'gate suspected' if planted['gate_suspected'] else 'no gate suspected'}"),
        ("fingerprinted: runner-up z, P(Sure)", f"{planted['top'][1]['z']:.1f}, {planted['top'][1]['p_sure']:.3f}"),
        ("clean base model: top candidate z, P(Sure); verdict",
         f"z = {clean['top'][0]['z']:.1f}, P = {clean['top'][0]['p_sure']:.3f}; "
         f"{'gate suspected' if clean['gate_suspected'] else 'no gate suspected'}"),
        ("throughput (candidates/s, incl. model load)",
         (f"{planted['candidates_scanned'] / planted_s:.1f}" if planted_s else "-") + " fingerprinted, "
         f"{clean['candidates_scanned'] / clean_s:.1f}"
         " clean" + (f" (clean scan reused from {args.clean})" if args.clean else "")),
        ("throughput (candidates/s, scan only)",
         f"{planted['candidates_per_second']:.1f} fingerprinted, {clean['candidates_per_second']:.1f} clean"),
    ]
    section = f"scan:{args.model}" + (f":{args.tag}" if args.tag else "")
    write_measures(section, f"scan: {args.model}" + (f" ({args.tag})" if args.tag else ""), command, rows)


if __name__ == "__main__":
    main()
