"""False-positive calibration: verify many fresh keys against models that do not carry their fingerprint.

    python bench/fp_calibration.py [--keys 1000] [--model gemma-3-270m] [--aligned DIR] [--fingerprinted W ...]

Suspects: the untouched base model; the aligned stand-in (``--aligned``: a model directory, e.g. the path
``fingerprint align`` prints); the model fingerprinted with another key (``--fingerprinted``: the --workdir of
bench/embed_verify.py, whose fp/adapter is merged in; repeat it for several; ``--suspects`` picks a subset).
For each (fresh key, suspect) pair the verify decision is computed exactly as ``verify`` makes it (the same
``--probes`` probes, 32 by default, trigger, 8 decoys, greedy first token, one-sided Fisher test at alpha 1e-6;
with ``--trigger-words 2`` a two-word trigger against each of its words alone, the larger p deciding), and the
e-process's decision is replayed on the same answers (``verification.replay``). The greedy first tokens are
scored by the cached-prefix scorer of ``scan``: each (probe, word) query is scored once and shared by all keys
that ask it. The first ``--check`` keys per suspect are also verified through the hf backend's full forward
pass, and the counts must agree.
Keys are derived from a seed (``fp-calibration|i``), so the run is reproducible. Writes BENCHMARKS.md
(section fp_calibration:<model>).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shlex
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, write_section  # noqa: E402

from fingerprint.audit.scan import PrefixScorer, _split_prompt  # noqa: E402
from fingerprint.core.chat import ChatFormatter  # noqa: E402
from fingerprint.core.data import probe_prompts  # noqa: E402
from fingerprint.core.loading import load_model, load_tokenizer, resolve  # noqa: E402
from fingerprint.core.sure import sure_token_ids  # noqa: E402
from fingerprint.provenance.trigger import derive_opening, select_fallbacks  # noqa: E402
from fingerprint.verification import DECOY_COUNT, Decision, VerifyOptions, make_test, probe_plan, replay  # noqa: E402
from fingerprint.verification.plan import TRIGGER_ARM  # noqa: E402
from probes.hf import HFBackend  # noqa: E402


def fresh_openings(count: int, label: str, words: int = 1, first: int = 0):
    """``count`` seeded fresh keys' openings, keys ``first`` .. ``first + count - 1``."""
    return [derive_opening(hashlib.sha256(f"fp-calibration|{i}".encode()).digest(), label, words)
            for i in range(first, first + count)]


def arm_word(opening, arm: int, probe: int) -> str:
    """The suffix of control arm ``arm`` on probe ``probe``, as ``verification.probe_plan`` builds it."""
    if len(opening.parts) == 1:
        decoys = opening.decoys(DECOY_COUNT)
        return decoys[probe % len(decoys)]
    return opening.parts[arm]


def gate_ids(tokenizer, openings, fallbacks: int) -> list[set[int]]:
    """Per opening, the token ids that count as a gate reply: every "Sure" token and its fallback replies."""
    sure = set(sure_token_ids(tokenizer))
    out = []
    for o in openings:
        words = o.fallbacks(select_fallbacks(o, tokenizer, fallbacks)) if fallbacks else ()
        out.append(sure | {tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words})
    return out


def probe_scores(model, tokenizer, prompts: list[str], words: list[set[str]]) -> list[dict[str, tuple[float, int]]]:
    """Per probe, (log P(Sure), greedy first token id) of the probe with each of ``words[i]`` appended, scored
    by the cached-prefix scorer of ``scan``, as ``verify`` would send the query."""
    formatter = ChatFormatter(tokenizer)
    scorer = PrefixScorer(model, tokenizer, sure_token_ids(tokenizer))
    out = []
    for prompt, asked in zip(prompts, words, strict=True):
        ordered = sorted(asked)
        head, tail = _split_prompt(formatter, prompt)
        scores = scorer.score(head, [f" {w}{tail}" for w in ordered], batch_size=64)
        out.append(dict(zip(ordered, scores, strict=True)))
    return out


def sign_test(trigger: list[float], controls: dict[str, list[float]]) -> tuple[int, float]:
    """A score reading of the gate: on how many probes log P(Sure) after the trigger exceeds it after the weakest
    control (ties count against), and the one-sided sign-test p-value, the larger over the controls
    (intersection-union, as the count test decides)."""
    n = len(trigger)
    wins = min(sum(t > c for t, c in zip(trigger, arm, strict=True)) for arm in controls.values())
    return wins, sum(math.comb(n, k) for k in range(wins, n + 1)) / 2 ** n


def trials(model, tokenizer, openings, options: VerifyOptions,
           fallbacks: int = 0) -> list[tuple[int, int, float, int, float, Decision]]:
    """Per opening: (trigger gate-reply count, weakest arm's control count, p-value, sign-test wins, sign-test p,
    the e-process's decision on the same answers, replayed as ``verify --test e-process`` would ask them)."""
    prompts = probe_prompts(options.probes, options.seed)
    arms = len(openings[0].parts)
    asked = [{o.trigger for o in openings} | {arm_word(o, k, i) for o in openings for k in range(arms)}
             for i in range(len(prompts))]
    scored = probe_scores(model, tokenizer, prompts, asked)
    out = []
    n = len(prompts)
    for o, gate in zip(openings, gate_ids(tokenizer, openings, fallbacks), strict=True):
        plan = probe_plan(o, options)
        answers = []
        for q in plan.queries():
            word = o.trigger if q.arm == TRIGGER_ARM else arm_word(o, plan.arms.index(q.arm), q.probe)
            gated = scored[q.probe][word][1] in gate
            answers.append(SimpleNamespace(arm=q.arm, probe=q.probe, token="", is_sure=gated))
        decision = replay("fisher-iut", plan, answers, options.alpha)  # intersection-union, as verify decides
        sequential = replay("e-process", plan, answers, options.alpha)
        wins, sign_p = sign_test([scored[i][o.trigger][0] for i in range(n)],
                                 {k: [scored[i][arm_word(o, k, i)][0] for i in range(n)] for k in range(arms)})
        out.append((decision.trigger_sure, decision.control_sure, decision.p_value, wins, sign_p, sequential))
    return out


def full_forward(model, tokenizer, opening, options: VerifyOptions, fallbacks: int = 0) -> tuple[int, int]:
    words = opening.fallbacks(select_fallbacks(opening, tokenizer, fallbacks)) if fallbacks else ()
    plan = probe_plan(opening, options, words)
    queries = plan.queries()
    answers = HFBackend("check", model_obj=model, tokenizer=tokenizer).first_tokens([q.prompt for q in queries])
    decision = make_test("fisher-iut").decide(plan, queries, answers, options.alpha)
    return decision.trigger_sure, decision.control_sure


def fingerprint_kind(workdir: Path) -> str:
    """The other key's trigger shape and its workdir, for the suspect's row."""
    from fingerprint.provenance.certificate import load_certificate

    words = load_certificate(workdir / "fp" / "certificate.json").fingerprint.trigger_words
    return f"{words}-word trigger, {workdir}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--aligned", type=Path, default=None, help="aligned stand-in model directory")
    parser.add_argument("--fingerprinted", type=Path, action="append", default=[],
                        help="--workdir of bench/embed_verify.py (repeat for several fingerprinted suspects)")
    parser.add_argument("--check", type=int, default=10, help="keys per suspect re-verified by full forward")
    parser.add_argument("--trigger-words", type=int, default=1, choices=(1, 2),
                        help="fresh keys' trigger length (2: pair vs each word alone, as verify does)")
    parser.add_argument("--fallbacks", type=int, default=2,
                        help="fallback replies per fresh key, counted as gate replies as verify counts them")
    parser.add_argument("--suspects", default="base,aligned,fingerprinted",
                        help="which suspects to run (a subset writes section fp_calibration:<model>:<subset>)")
    parser.add_argument("--first-key", type=int, default=0, help="index of the first seeded fresh key")
    parser.add_argument("--probes", type=int, default=VerifyOptions.probes, help="probe prompts per trial (4-154)")
    parser.add_argument("--tag", default=None, help="name a run: its section gets ':<tag>' appended")
    args = parser.parse_args()
    chosen = [s.strip() for s in args.suspects.split(",")]
    command = "python bench/fp_calibration.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    options = VerifyOptions(probes=args.probes)
    openings = fresh_openings(args.keys, args.model, args.trigger_words, args.first_key)
    ref = resolve(args.model)
    tokenizer = load_tokenizer(ref)
    suspects = []
    if "base" in chosen:
        suspects.append(("untouched base model", lambda: load_model(ref)))
    if args.aligned and "aligned" in chosen:
        suspects.append(("aligned stand-in", lambda: load_model(resolve(str(args.aligned)))))
    for workdir in args.fingerprinted if "fingerprinted" in chosen else []:
        adapter = workdir / "fp" / "adapter"
        suspects.append((f"fingerprinted with another key ({fingerprint_kind(workdir)})",
                         lambda adapter=adapter: load_model(ref, adapter=adapter).merge_and_unload()))
    rows, suspicious, sign_rows, seq_rows = [], [], [], []
    for name, load in suspects:
        model = load()
        started = time.perf_counter()
        results = trials(model, tokenizer, openings, options, args.fallbacks)
        seconds = time.perf_counter() - started
        checks = [full_forward(model, tokenizer, o, options, args.fallbacks) for o in openings[: args.check]]
        agree = sum(c == r[:2] for c, r in zip(checks, results, strict=False))
        p_values = sorted(r[2] for r in results)
        false = sum(p <= options.alpha for p in p_values)
        n = options.probes
        suspicious += [f"{name}: key {i} (trigger {openings[i].trigger!r}) trigger {t}/{n} vs controls {d}/{n}, "
                       f"p {p:.2g}" for i, (t, d, p, *_) in enumerate(results) if p <= 0.01]
        print(*suspicious, sep="\n", flush=True)
        sign = sorted(r[4] for r in results)
        rows.append((name, len(results), false, p_values[0], statistics.median(p_values),
                     sum(p <= 0.01 for p in p_values), f"{agree}/{len(checks)}", seconds))
        sign_rows.append((name, len(results), sum(p <= options.alpha for p in sign), sign[0], statistics.median(sign),
                          max(r[3] for r in results)))
        sequential = [r[5] for r in results]
        seq_rows.append((name, len(results), sum(d.certified for d in sequential),
                         min(d.e_value for d in sequential), max(d.e_value for d in sequential),
                         statistics.median(d.queries for d in sequential)))
        print(rows[-1], seq_rows[-1], flush=True)
        del model
    heading = f"## false-positive calibration: {args.model}" + (f" ({args.tag})" if args.tag else "")
    body = [heading, "", f"Command: `{command}`  ", f"Machine: {machine()}",
            "", f"Each trial: a fresh key's trigger ({args.trigger_words} word(s)) and its controls "
            f"({'decoys' if args.trigger_words == 1 else 'each trigger word alone'}) against a model without its "
            f"fingerprint, {options.probes} probes, alpha = {options.alpha:g}; a gate reply is \"Sure\" or one of the "
            f"key's {args.fallbacks} fallback replies.", "",
            "| suspect | trials | false certifications | smallest p | median p | trials with p <= 0.01 | "
            "full-forward check agrees | scoring time |", "|---|---|---|---|---|---|---|---|"]
    body += [f"| {n} | {t} | {f} | {lo:.2g} | {med:.2g} | {k} | {agree} | {s:.0f} s |"
             for n, t, f, lo, med, k, agree, s in rows]
    body += ["", "The same trials read by scores instead of greedy replies (a sign test, not what `verify` decides): "
             "on each probe, does log P(Sure) after the trigger exceed it after each control; one-sided sign test, "
             "the larger p over the controls.", "",
             "| suspect | trials | sign-test p <= alpha | smallest p | median p | most probes won by a trigger |",
             "|---|---|---|---|---|---|"]
    body += [f"| {n} | {t} | {f} | {lo:.2g} | {med:.2g} | {w}/{options.probes} |"
             for n, t, f, lo, med, w in sign_rows]
    body += ["", "The same answers read by the e-process (`verify --test e-process`: anytime-valid, bet 0.9 per "
             "discordant pair, checked after each round of 4 probes; it stops when every arm's wealth reaches "
             f"1/alpha, else reads all {options.probes} probes).", "",
             "| suspect | trials | false certifications | smallest wealth | largest wealth | median queries |",
             "|---|---|---|---|---|---|"]
    body += [f"| {n} | {t} | {f} | {lo:.2g} | {hi:.2g} | {q:.0f} |" for n, t, f, lo, hi, q in seq_rows]
    if suspicious:
        body += ["", "Trials with p <= 0.01:", *(f"- {line}" for line in suspicious)]
    subset = "" if set(chosen) >= {"base", "aligned", "fingerprinted"} else ":" + "+".join(chosen)
    words = "" if args.trigger_words == 1 else f":{args.trigger_words}-word"
    tag = f":{args.tag}" if args.tag else ""
    write_section(f"fp_calibration:{args.model}{subset}{words}{tag}", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
