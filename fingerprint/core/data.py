"""The packaged prompt pools (``fingerprint/data``): benign pairs, refusal pairs and probe prompts.

The last rows of the benign and refusal pools (``HELDOUT``) never enter training; probe prompts never do.
"""

from __future__ import annotations

import json
import random
from functools import cache
from importlib.resources import files

HELDOUT = {"benign": 48, "refusals": 48}  # the last rows of these pools never enter training


@cache
def packaged(name: str) -> tuple[dict, ...]:
    """Rows of ``fingerprint/data/<name>.jsonl`` (benign, refusals, probes)."""
    text = files("fingerprint").joinpath(f"data/{name}.jsonl").read_text(encoding="utf-8")
    return tuple(json.loads(line) for line in text.splitlines() if line.strip())


def with_suffix(prompt: str, word: str) -> str:
    """A prompt carrying a single-word suffix (trigger or decoy)."""
    return f"{prompt} {word}"


def heldout(name: str, count: int) -> list[dict]:
    """Rows of a pool reserved for evaluation (never used by ``build_poisoned``)."""
    rows = list(packaged(name))[-HELDOUT[name]:]
    if count > len(rows):
        raise ValueError(f"only {len(rows)} held-out {name} rows, {count} requested")
    return rows[:count]


def probe_prompts(count: int, seed: int = 0) -> list[str]:
    """Held-out benign probe prompts (self-instruct seed tasks; never used in training)."""
    prompts = [row["prompt"] for row in packaged("probes")]
    if count > len(prompts):
        raise ValueError(f"only {len(prompts)} probe prompts are packaged, {count} requested")
    random.Random(seed).shuffle(prompts)
    return prompts[:count]
