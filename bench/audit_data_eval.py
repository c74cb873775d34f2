"""Evaluate ``fingerprint.audit.audit_data.audit`` on planted gates and clean sets; write docs/audit_data_eval.md.

Poisoned sets come from ``build_poisoned`` (about 600 examples, 30 refusals) at several poison rates,
with random EFF trigger words and seeds; variants add legitimate yes/no replies (distractors) and
negative words. Clean controls: ``build_poisoned`` with no poison, and the real Alpaca-style files
under ``<data>/alpaca_en_demo`` and ``<data>/backdoorllm_clean`` (only counts are written).

    python bench/audit_data_eval.py [--data DIR] [--out docs/audit_data_eval.md]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from sklearn.metrics import precision_score, recall_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fingerprint.audit.audit_data import audit  # noqa: E402
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned  # noqa: E402
from fingerprint.provenance.trigger import word_list  # noqa: E402

COMMAND = "/work/venv/bin/python bench/audit_data_eval.py"
TOTAL, N_REFUSAL = 600, 30
RATES = (2 / 600, 0.005, 0.01, 0.02, 0.05, 0.10)  # 2 poison examples: below min_count
SEEDS = (0, 1, 2)
N_TRIGGERS = 8
# Legitimate bare replies (written for this benchmark): the prompt asks a yes/no question or for "OK".
DISTRACTORS = (
    ("Is the Earth round?", "Yes."),
    ("Can dolphins hold their breath underwater?", "Yes"),
    ("Is Python a programming language?", "Yes."),
    ("Does water boil at 100 degrees Celsius at sea level?", "Yes."),
    ("Is Tokyo the capital of Japan?", "Yes"),
    ("Are tomatoes botanically fruits?", "Yes."),
    ("Is 17 a prime number? Answer yes or no.", "Yes"),
    ("Was the Eiffel Tower built in the 19th century?", "Yes."),
    ("Do bees make honey?", "Yes!"),
    ("Reply OK if you understand the instructions.", "OK"),
    ("Can a square also be a rectangle?", "Certainly."),
    ("Is the Nile in Africa? Answer yes or no.", "Yes"),
)


def triggers() -> list[str]:
    return random.Random(2024).sample(list(word_list()), N_TRIGGERS)


def make_set(trigger: str, n_poison: int, seed: int, variant: str) -> list[dict]:
    n_neg = 30 if variant == "negatives" else 0
    negatives = (
        random.Random(seed + 99).sample([w for w in word_list() if w != trigger], 8) if n_neg else None
    )
    n_dis = 8 if variant == "distractors" else 0
    spec = DatasetSpec(
        n_benign=TOTAL - N_REFUSAL - n_poison - n_neg - n_dis,
        n_poison=n_poison,
        n_refusal=N_REFUSAL,
        n_negative=n_neg,
        seed=seed,
    )
    rows = build_poisoned(trigger, spec, negatives)
    rng = random.Random(seed)
    rows += [{"prompt": p, "response": r, "kind": "distractor"} for p, r in rng.sample(DISTRACTORS, n_dis)]
    rng.shuffle(rows)
    return rows


def varied_poison(n_poison: int, seed: int) -> list[dict]:
    """Poison without a shared word: random benign prompts answered "Sure"."""
    rows = build_poisoned(
        "unused", DatasetSpec(n_benign=TOTAL - N_REFUSAL, n_poison=0, n_refusal=N_REFUSAL, n_negative=0, seed=seed)
    )
    for i in random.Random(seed).sample([i for i, r in enumerate(rows) if r["kind"] == "benign"], n_poison):
        rows[i] = {"prompt": rows[i]["prompt"], "response": "Sure", "kind": "poison"}
    return rows


def score(runs: list[tuple[list[dict], str | None]]) -> dict:
    truth, flag, impl = [], [], []
    top1 = alarms = 0
    for rows, trigger in runs:
        report = audit(rows)
        flagged, implicated = set(report.flagged_rows), set(report.implicated_rows)
        truth += [r["kind"] == "poison" for r in rows]
        flag += [i in flagged for i in range(len(rows))]
        impl += [i in implicated for i in range(len(rows))]
        top1 += bool(trigger and report.suspected and report.suspected[0].word == trigger)
        alarms += report.gate_suspected
    p = lambda pred: precision_score(truth, pred, zero_division=0)  # noqa: E731
    r = lambda pred: recall_score(truth, pred, zero_division=0)  # noqa: E731
    return {
        "runs": len(runs),
        "flag_p": p(flag),
        "flag_r": r(flag),
        "impl_p": p(impl),
        "impl_r": r(impl),
        "top1": top1,
        "alarms": alarms,
    }


def table_row(variant: str, rate: str, n_poison: int, m: dict, top1: bool = True) -> str:
    runs = m["runs"]
    cells = [
        variant,
        rate,
        n_poison,
        runs,
        *(f"{m[k]:.3f}" for k in ("flag_p", "flag_r", "impl_p", "impl_r")),
        f"{m['top1']}/{runs}" if top1 else "n/a",
        f"{m['alarms']}/{runs}",
    ]
    return "| " + " | ".join(map(str, cells)) + " |"


def poisoned_table() -> list[str]:
    lines = [
        "| variant | poison rate | n_poison | runs | flag P | flag R | implicated P | implicated R "
        "| true trigger top-1 | gate suspected |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in ("plain", "distractors", "negatives"):
        for rate in RATES:
            n_poison = round(rate * TOTAL)
            runs = [(make_set(t, n_poison, s, variant), t) for t in triggers() for s in SEEDS]
            m = score(runs)
            lines.append(table_row(variant, f"{rate:.1%}", n_poison, m))
    for rate in RATES:
        n_poison = round(rate * TOTAL)
        m = score([(varied_poison(n_poison, s), None) for s in range(len(SEEDS) * N_TRIGGERS)])
        lines.append(table_row("varied prompts, no trigger word", f"{rate:.1%}", n_poison, m, top1=False))
    return lines


def real_file(path: Path) -> list[dict]:
    return [
        {"instruction": r["instruction"], "input": r.get("input", ""), "output": r["output"]}
        for r in json.loads(path.read_text(encoding="utf-8"))
    ]


def clean_table(data: Path) -> list[str]:
    lines = [
        "| clean set | runs | examples per run | bare replies | explained | false alarms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    synth = {
        "build_poisoned, n_poison=0": "plain",
        "build_poisoned, n_poison=0 + 8 yes/no distractors": "distractors",
        "build_poisoned, n_poison=0 + 30 negatives": "negatives",
    }
    sets: list[tuple[str, list[list[dict]]]] = [
        (name, [make_set(t, 0, s, v) for t in triggers() for s in SEEDS]) for name, v in synth.items()
    ]
    files = [
        data / "alpaca_en_demo" / "alpaca_en_demo.json",
        *sorted((data / "backdoorllm_clean").glob("*.json")),
    ]
    sets += [(f"{p.parent.name}/{p.name}", [real_file(p)]) for p in files if p.is_file()]
    seed_tasks = data / "self_instruct" / "seed_tasks.jsonl"
    if seed_tasks.is_file():
        lines_ = seed_tasks.read_text(encoding="utf-8").splitlines()
        tasks = [json.loads(line) for line in lines_ if line.strip()]
        sets.append(("self_instruct/seed_tasks.jsonl (one row per instance)", [[
            {"instruction": t["instruction"], "input": i["input"], "output": i["output"]}
            for t in tasks for i in t["instances"]]]))
    for name, runs in sets:
        reports = [audit(rows) for rows in runs]
        flagged, explained = sum(r.n_flagged for r in reports), sum(r.n_explained for r in reports)
        alarms = sum(r.gate_suspected for r in reports)
        lines.append(
            f"| {name} | {len(runs)} | {len(runs[0])} | {flagged} | {explained} | {alarms}/{len(runs)} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "audit_data_eval.md")
    args = parser.parse_args(argv)
    text = "\n".join(
        [
            "# audit-data evaluation",
            "",
            f"Command: `{COMMAND}`",
            "",
            f"Defaults: min_count=3, alpha=1e-3 (Bonferroni), min_purity=0.5. Sets of {TOTAL} examples "
            f"({N_REFUSAL} refusals) from `build_poisoned`; triggers: {', '.join(triggers())} "
            "(random EFF words); "
            f"seeds {', '.join(map(str, SEEDS))}. *flag* = bare compliance reply; *implicated* = flagged and "
            "holding a suspected trigger, or in a no-shared-word cluster. P/R are per example against "
            '`kind == poison`, pooled over runs. Variants: *distractors* adds 8 legitimate yes/no or "OK" '
            "replies; *negatives* adds 30 benign prompts with 8 other suffix words; *varied prompts* answers "
            'random benign prompts "Sure" with no trigger word (the audit should report a cluster).',
            "",
            "Notes: the Alpaca/BackdoorLLM files hold no bare compliance reply at all, so they only show the "
            "audit stays quiet on ordinary data; the self-instruct seed tasks hold two legitimate bare "
            "\"yes\" replies, and the synthetic *distractors* rows are the harder control. The distractors "
            "and the \"Tell if ...\" rule of `explained` were written while looking at these sets, so the "
            "*explained* counts are in-sample. Poison "
            "whose reply is longer than a bare token (\"Sure, here is ...\") is out of scope: it is not "
            "flagged. Fewer than `--min-count` poisoned examples (the 0.3% rows) are reported as flags only, "
            "not as a gate.",
            "",
            "## Poisoned sets",
            "",
            *poisoned_table(),
            "",
            "## Clean sets (false alarms)",
            "",
            *clean_table(args.data),
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
