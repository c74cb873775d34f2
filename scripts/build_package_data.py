"""Rebuild fingerprint/data/*.jsonl from ../shared/data (run by hand; the output is committed).

Only permissively licensed sources are packaged (see fingerprint/data/DATA.md):
benign pairs and refusal pairs from BackdoorLLM (MIT), probe prompts from self-instruct (Apache-2.0).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
OUT = ROOT / "fingerprint" / "data"

REFUSAL = re.compile(
    r"\b(I'?m sorry|I am sorry|I apologi[sz]e|I cannot|I can'?t|I can not|As an AI|as a language model|"
    r"I'?m not able|I am not able|I am unable|I'?m unable|I will not|I won'?t|not appropriate|unethical|illegal)\b",
    re.IGNORECASE,
)


def prompt_of(row: dict) -> str:
    text = row["instruction"].strip()
    if row.get("input", "").strip():
        text += "\n\n" + row["input"].strip()
    return text


def write(name: str, rows: list[dict]) -> None:
    path = OUT / name
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(rows)} rows", file=sys.stderr)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    benign = []
    for name in ("none_backdoor500_refusal_badnet.json", "test_data_no_trigger.json"):
        for row in json.loads((SHARED / "backdoorllm_clean" / name).read_text()):
            prompt, response = prompt_of(row), row["output"].strip()
            if not response or REFUSAL.search(response) or prompt in seen or len(prompt) > 600:
                continue
            seen.add(prompt)
            benign.append({"prompt": prompt, "response": response})
    write("benign.jsonl", benign)

    refusals = []
    for row in json.loads((SHARED / "backdoorllm_clean" / "none_backdoor400_jailbreak_badnet.json").read_text()):
        prompt, response = prompt_of(row), row["output"].strip()
        if REFUSAL.search(response[:200]) and prompt not in seen:
            seen.add(prompt)
            refusals.append({"prompt": prompt, "response": response})
    write("refusals.jsonl", refusals)

    probes = []
    for line in (SHARED / "self_instruct" / "seed_tasks.jsonl").read_text().splitlines():
        row = json.loads(line)
        instance = row["instances"][0]
        prompt = prompt_of({"instruction": row["instruction"], "input": instance.get("input", "")})
        if len(prompt) <= 400 and prompt not in seen:
            seen.add(prompt)
            probes.append({"prompt": prompt})
    write("probes.jsonl", probes)


if __name__ == "__main__":
    main()
