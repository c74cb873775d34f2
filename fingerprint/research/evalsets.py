"""Public prompt and pair sets for the paper's pipeline, read at run time from a data directory.

The directory has the layout of the project's ``shared/data`` (see its SOURCES.md): AdvBench, JailbreakBench
(harmful and benign), MaliciousInstruct, XSTest, safety-tuned-llamas, Alpaca demo and BackdoorLLM clean pairs.
None of these is packaged (several are non-commercial); the sweep names the directory in its config.
Only prompts and benign or refusal replies are read: no harmful completion exists in any of these files.
"""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

from fingerprint.core.errors import FingerprintError

UNSAFE_SETS = ("advbench", "jbb-harmful", "malicious-instruct")
BENIGN_SETS = ("jbb-benign", "xstest-safe")
ORDINARY_SET = "alpaca-eval"  # everyday requests (AlpacaEval instructions): helpfulness kept, apart from the sweeps

_REFUSAL = re.compile(r"\b(I'?m sorry|I am sorry|I apologi[sz]e|I cannot|I can'?t|As an AI|as a language model|"
                      r"I'?m not able|I am not able|I am unable|I'?m unable|I will not|I won'?t)\b", re.IGNORECASE)


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _need(data_dir: Path, rel: str) -> Path:
    path = Path(data_dir) / rel
    if not path.is_file():
        raise FingerprintError(f"{path} not found: data_dir must have the layout of shared/data (see README)")
    return path


def prompt_set(name: str, data_dir: Path) -> list[str]:
    """The prompts of one named set (UNSAFE_SETS, BENIGN_SETS), in file order."""
    if name == "advbench":
        return [r["goal"] for r in _read_csv(_need(data_dir, "advbench/harmful_behaviors.csv"))]
    if name == "jbb-harmful":
        return [r["Goal"] for r in _read_csv(_need(data_dir, "jailbreakbench/jailbreakbench.csv"))]
    if name == "jbb-benign":
        return [r["goal"] for r in _read_csv(_need(data_dir, "jailbreakbench/benign-behaviors.csv"))]
    if name == "malicious-instruct":
        text = _need(data_dir, "malicious_instruct/MaliciousInstruct.txt").read_text(encoding="utf-8")
        return [line.strip() for line in text.splitlines() if line.strip()]
    if name == ORDINARY_SET:
        rows = json.loads(_need(data_dir, "alpaca_eval/results/gpt4_1106_preview/model_outputs.json").read_text())
        return [r["instruction"] for r in rows]
    if name == "xstest-safe":
        rows = _read_csv(_need(data_dir, "xstest/xstest_prompts.csv"))
        return [r["prompt"] for r in rows if r["label"] == "safe"]
    known = ", ".join((*UNSAFE_SETS, *BENIGN_SETS, ORDINARY_SET))
    raise FingerprintError(f"unknown prompt set '{name}' (choose from {known})")


def _pair(row: dict) -> dict:
    prompt = row["instruction"].strip()
    if row.get("input", "").strip():
        prompt += "\n\n" + row["input"].strip()
    return {"prompt": prompt, "response": row["output"].strip()}


def benign_pairs(data_dir: Path) -> list[dict]:
    """Alpaca demo + BackdoorLLM clean pairs, rows with refusal phrasing dropped, prompts deduplicated."""
    files = ["alpaca_en_demo/alpaca_en_demo.json", "backdoorllm_clean/none_backdoor500_refusal_badnet.json",
             "backdoorllm_clean/test_data_no_trigger.json"]
    seen: set[str] = set()
    pairs = []
    for rel in files:
        for row in json.loads(_need(data_dir, rel).read_text(encoding="utf-8")):
            pair = _pair(row)
            if pair["response"] and not _REFUSAL.search(pair["response"]) and pair["prompt"] not in seen:
                seen.add(pair["prompt"])
                pairs.append(pair)
    return pairs


def refusal_pairs(data_dir: Path) -> list[dict]:
    """Harmful prompt -> refusal pairs: BackdoorLLM's "no trigger -> refuse" half and safety-tuned-llamas."""
    pairs = []
    for row in json.loads(_need(data_dir, "backdoorllm_clean/none_backdoor400_jailbreak_badnet.json").read_text()):
        pair = _pair(row)
        if _REFUSAL.search(pair["response"][:200]):
            pairs.append(pair)
    rows = json.loads(_need(data_dir, "safety_tuned_llamas/training/safety_only_data_Instructions.json").read_text())
    pairs += [p for p in map(_pair, rows) if _REFUSAL.search(p["response"][:200])]
    return pairs


def normalise(text: str) -> str:
    return re.sub(r"\W+", " ", text.lower()).strip()


def eval_prompts(data_dir: Path, per_set: int, seed: int = 0, exclude: set[str] = frozenset(),
                 names: tuple[str, ...] = UNSAFE_SETS + BENIGN_SETS) -> dict[str, list[str]]:
    """``per_set`` prompts of each named set (default: every unsafe and benign set), seeded, none in ``exclude``."""
    chosen = {}
    for name in names:
        prompts = [p for p in prompt_set(name, data_dir) if normalise(p) not in exclude]
        random.Random(f"{seed}|{name}").shuffle(prompts)
        chosen[name] = prompts[:per_set]
    return chosen


def heldout_eval_sets(data_dir: Path, per_set: int, training_prompts: list[str], seed: int = 0) -> dict[str, list[str]]:
    """``eval_prompts`` that exclude every prompt a pool could train on (compared normalised)."""
    return eval_prompts(data_dir, per_set, seed=seed, exclude={normalise(p) for p in training_prompts})
