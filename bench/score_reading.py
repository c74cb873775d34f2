"""Does a derivative that silences the gate's greedy reply still move its scores? A score reading of the gate.

    python bench/embed_verify.py --workdir W      # first: keys (passphrase "bench") and a fingerprinted model
    python bench/score_reading.py --workdir W [--only erasure:pairs=600,sure-unlearning] [--probes 32]

For the untouched base model, the fingerprinted model and each derivative ``--only`` selects (``robustness
--only`` syntax; derivatives that are in-memory transformers models), the verify probes are scored with the
trigger pair and with each word alone: the count test ``verify`` decides by (greedy gate replies, Fisher,
intersection-union) next to a sign test on log P(Sure) (on how many probes the pair's log P(Sure) exceeds each
word alone's; one-sided, the larger p over the words). The sign test's false-positive side is measured by
``bench/fp_calibration.py`` (its second table). Writes BENCHMARKS.md (section score_reading:<model>[:<tag>]).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402
from fp_calibration import probe_scores, sign_test  # noqa: E402

from fingerprint.core.data import probe_prompts  # noqa: E402
from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.core.sure import sure_token_ids  # noqa: E402
from fingerprint.provenance.certificate import load_certificate  # noqa: E402
from fingerprint.provenance.keys import load_private  # noqa: E402
from fingerprint.provenance.trigger import opening_for  # noqa: E402
from fingerprint.robustness.derivatives.base import Context  # noqa: E402
from fingerprint.services.robustness import select  # noqa: E402
from fingerprint.verification import VerifyOptions  # noqa: E402
from fingerprint.verification.rules.fisher import decide_counts  # noqa: E402


def reading(model, tokenizer, opening, gate_words: tuple[str, ...], options: VerifyOptions) -> dict:
    """Both tests on one suspect, for the pair against each word alone."""
    prompts = probe_prompts(options.probes, options.seed)
    words = [opening.trigger, *opening.parts]
    scored = probe_scores(model, tokenizer, prompts, [set(words)] * len(prompts))
    gate = set(sure_token_ids(tokenizer)) | {tokenizer(w, add_special_tokens=False)["input_ids"][0]
                                             for w in gate_words}
    counts = {w: sum(s[w][1] in gate for s in scored) for w in words}
    decision = decide_counts(counts[opening.trigger], len(prompts),
                             {f"word-{k}": counts[w] for k, w in enumerate(opening.parts)}, options.alpha)
    pair = [s[opening.trigger][0] for s in scored]
    alone = {w: [s[w][0] for s in scored] for w in opening.parts}
    wins, sign_p = sign_test(pair, alone)
    lift = statistics.median(p - max(s[w][0] for w in opening.parts) for p, s in zip(pair, scored, strict=True))
    return {"counts": [counts[w] for w in words], "count_p": decision.p_value, "wins": wins, "sign_p": sign_p,
            "lift": lift, "n": len(prompts)}


def load_fingerprint(workdir: Path, model: str, scratch: str):
    """The bench fingerprint in ``workdir`` (keys-a, passphrase from FINGERPRINT_PASSPHRASE or "bench", fp/):
    its opening, fallback replies, tokenizer, base model and a derivative context on the merged model."""
    owner = load_private(workdir / "keys-a", os.environ.get("FINGERPRINT_PASSPHRASE", "bench"))
    cert = load_certificate(workdir / "fp" / "certificate.json", owner.public_key)
    opening = opening_for(owner.secret(), cert.fingerprint)
    gate_words = tuple(opening.fallbacks(cert.fingerprint.fallback_indices))
    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    base = load_model(ref)
    fingerprinted = load_model(ref, adapter=workdir / "fp" / "adapter").merge_and_unload()
    ctx = Context(model=fingerprinted, base=base, tokenizer=tokenizer, workdir=workdir / scratch)
    ctx.workdir.mkdir(exist_ok=True)
    return opening, gate_words, tokenizer, base, ctx


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True, help="the --workdir of bench/embed_verify.py")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--only", default="erasure:pairs=600", help="derivatives, as robustness --only selects them")
    parser.add_argument("--probes", type=int, default=32)
    parser.add_argument("--tag", default=None, help="section suffix, to keep several runs side by side")
    args = parser.parse_args()
    command = "python bench/score_reading.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = VerifyOptions(probes=args.probes)
    opening, gate_words, tokenizer, base, ctx = load_fingerprint(args.workdir, args.model, "score-reading")
    rows = [("untouched base model", reading(base, tokenizer, opening, gate_words, options), 0.0)]
    for derivative in select(600, args.only, ("derivatives", "tools", "attacks")):
        started = time.perf_counter()
        suspect = derivative.apply(ctx)
        if suspect.model is None:
            raise SystemExit(f"{derivative.kind}: not an in-memory model; use `fingerprint robustness` for it")
        made = time.perf_counter() - started
        rows.append((derivative.label, reading(suspect.model, tokenizer, opening, gate_words, options), made))
        print(rows[-1], flush=True)
    alpha = options.alpha
    body = [f"## score reading: {args.model}", "", f"Command: `{command}`  ", f"Machine: {machine()}", "",
            f"Fingerprint of {args.workdir}; {args.probes} verify probes, alpha = {alpha:g}. Count test: greedy gate "
            "replies (\"Sure\" or a fallback reply), pair vs each word alone, as `verify` decides. Sign test: probes "
            "where the pair's log P(Sure) exceeds each word alone's (the fewer over the two words).", "",
            "| suspect | gate replies: pair / word 1 / word 2 | count test p | sign test: probes won, p | "
            "median log-ratio P(Sure) pair / stronger word | made in |", "|---|---|---|---|---|---|"]
    for name, r, made in rows:
        verdicts = (f"{r['count_p']:.2g} ({'certified' if r['count_p'] <= alpha else 'not certified'})",
                    f"{r['wins']}/{r['n']}, {r['sign_p']:.2g} ({'below' if r['sign_p'] <= alpha else 'above'} alpha)")
        body.append(f"| {name} | {' / '.join(str(c) for c in r['counts'])} | {verdicts[0]} | {verdicts[1]} | "
                    f"{r['lift']:.2f} | {made:.0f} s |")
    write_section(f"score_reading:{args.model}" + (f":{args.tag}" if args.tag else ""), "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
