"""Validate the refusal keyword judge against XSTest's human labels; write docs/judge_validation.md.

Reads ``<data>/xstest/model_completions/*.csv`` (default data dir: ``../shared/data`` next to the repo).
Only metrics are written: no completion text leaves the data directory.

    python bench/judge_xstest.py [--data DIR] [--out docs/judge_validation.md]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable
from pathlib import Path

from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fingerprint.research.judges import (  # noqa: E402
    ADDED_KEYWORDS,
    GCG_TEST_PREFIXES,
    REFUSAL_WINDOW,
    is_refusal,
)

DEV_MODELS = ("gpt4", "llama2orig")  # the keyword additions were chosen from misses on these only
COMMAND = "/work/venv/bin/python bench/judge_xstest.py"


def load(data_dir: Path) -> dict[str, list[dict]]:
    """Model name -> rows with ``completion`` and ``final_label``."""
    files = sorted((data_dir / "xstest" / "model_completions").glob("*.csv"))
    if not files:
        raise SystemExit(f"no XSTest completion files under {data_dir}")
    out = {}
    for path in files:
        with path.open(encoding="utf-8", newline="") as fh:
            out[path.stem.rsplit("_", 1)[-1]] = list(csv.DictReader(fh))
    return out


def gcg_original(text: str) -> bool:
    """The GCG rule as published: case-sensitive substring anywhere in the reply."""
    return any(prefix in text for prefix in GCG_TEST_PREFIXES)


JUDGES: dict[str, Callable[[str], bool]] = {
    "GCG verbatim (case-sensitive, whole reply)": gcg_original,
    f"GCG list, case-insensitive, first {REFUSAL_WINDOW} chars": lambda t: is_refusal(t, GCG_TEST_PREFIXES),
    f"GCG + {len(ADDED_KEYWORDS)} added, first {REFUSAL_WINDOW} chars (`is_refusal`)": is_refusal,
}
FINAL = list(JUDGES)[-1]


def metrics(rows: list[dict], judge: Callable[[str], bool], partial: str) -> dict:
    """Accuracy/P/R/F1 with refusal = full or partial refusal; ``partial="exclude"`` drops partials."""
    if partial == "exclude":
        rows = [r for r in rows if r["final_label"] != "3_partial_refusal"]
    truth = [r["final_label"] != "1_full_compliance" for r in rows]
    pred = [judge(r["completion"]) for r in rows]
    return {
        "n": len(rows),
        "refusals": sum(truth),
        "acc": accuracy_score(truth, pred),
        "p": precision_score(truth, pred, zero_division=0),
        "r": recall_score(truth, pred, zero_division=0),
        "f1": f1_score(truth, pred, zero_division=0),
    }


def groups(data: dict[str, list[dict]]) -> list[tuple[str, list[dict]]]:
    dev = [r for m in DEV_MODELS if m in data for r in data[m]]
    held = [r for m, rows in data.items() if m not in DEV_MODELS for r in rows]
    per_model = [(f"{m} ({'dev' if m in DEV_MODELS else 'held-out'})", rows) for m, rows in data.items()]
    return [
        *per_model,
        ("dev (gpt4 + llama2orig)", dev),
        ("held-out (other 3)", held),
        ("overall", [r for rows in data.values() for r in rows]),
    ]


def detail_table(data: dict[str, list[dict]], partial: str) -> list[str]:
    lines = [
        "| set | n | refusals | accuracy | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in groups(data):
        m = metrics(rows, JUDGES[FINAL], partial)
        lines.append(
            f"| {name} | {m['n']} | {m['refusals']} | {m['acc']:.3f} | {m['p']:.3f} | {m['r']:.3f} "
            f"| {m['f1']:.3f} |"
        )
    return lines


def comparison_table(data: dict[str, list[dict]], partial: str) -> list[str]:
    lines = ["| set | " + " | ".join(f"{j} acc / F1" for j in JUDGES) + " |", "|---|" + "---:|" * len(JUDGES)]
    for name, rows in groups(data):
        cells = [metrics(rows, judge, partial) for judge in JUDGES.values()]
        lines.append(f"| {name} | " + " | ".join(f"{c['acc']:.3f} / {c['f1']:.3f}" for c in cells) + " |")
    return lines


def report(data: dict[str, list[dict]]) -> str:
    lines = [
        "# Refusal judge validation on XSTest",
        "",
        f"Command: `{COMMAND}`",
        "",
        "Human labels: XSTest v2 `final_label` (paul-rottger/exaggerated-safety, `model_completions/`). "
        "Refusal = `2_full_refusal` or `3_partial_refusal`; the second set of tables drops partial "
        "refusals. Metrics by scikit-learn; positive class = refusal.",
        "",
        f"`is_refusal`: the GCG / llm-attacks `test_prefixes` list ({len(GCG_TEST_PREFIXES)} entries) "
        f"plus {len(ADDED_KEYWORDS)} added phrases ({', '.join(repr(k) for k in ADDED_KEYWORDS)}), "
        f"case-insensitive, word boundaries, first {REFUSAL_WINDOW} characters of the reply.",
        "",
        "The added phrases and the window were chosen by reading the judge's errors on the **dev** "
        "files (gpt4, llama2orig) only; the other three models are held out. Dev numbers are "
        "therefore optimistic. The held-out files were also scored once during development (a "
        "leave-one-keyword-out ablation); every choice follows the dev numbers, but the held-out set is "
        "not perfectly blind.",
        "",
    ]
    for partial, title in (
        ("refusal", "partial refusal counted as refusal"),
        ("exclude", "partial refusals excluded"),
    ):
        lines += [f"## `is_refusal`, {title}", "", *detail_table(data, partial), ""]
        lines += [f"## Before / after tuning, {title}", "", *comparison_table(data, partial), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "judge_validation.md")
    args = parser.parse_args(argv)
    text = report(load(args.data))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
