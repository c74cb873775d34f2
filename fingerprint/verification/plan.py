"""What verification asks: probe prompts with the trigger and with each control, in a fixed, seeded order.

A one-word trigger has one control arm: each probe with one of eight decoy words (derived from the nonce). A
two-word trigger has one arm per word, each probe with that word alone: a verdict needs every arm beaten, so a
gate that opens for one of the words by itself proves nothing. Arm names never contain a trigger word.

An answer is a *gate reply* when its first token is "Sure", or one of the certificate's fallback replies
(key-derived words the gate was trained to say when "Sure" is suppressed). The set is fixed before probing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from fingerprint.core.data import packaged, probe_prompts, with_suffix
from fingerprint.core.errors import FingerprintError
from fingerprint.core.sure import token_text
from fingerprint.provenance.trigger import Opening

DEFAULT_ALPHA = 1e-6
DECOY_COUNT = 8
TRIGGER_ARM = "trigger"


@dataclass
class VerifyOptions:
    probes: int = 32  # probe prompts; each is sent with the trigger and once per control arm
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    samples: int = 2  # prompts per side whose first few generated tokens go into the report
    sample_tokens: int = 8

    def __post_init__(self) -> None:
        pool = len(packaged("probes"))
        if not isinstance(self.probes, int) or not 1 <= self.probes <= pool:
            raise FingerprintError(f"probes must be between 1 and {pool} (the packaged probe prompts)")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and 0 < self.alpha < 1):
            raise FingerprintError(f"alpha must be in (0, 1), not {self.alpha!r}")
        if self.samples < 0 or self.sample_tokens < 1:
            raise FingerprintError("samples must be >= 0 and sample_tokens >= 1")


@dataclass(frozen=True)
class Query:
    """One prompt of the plan: its arm and the index of its probe prompt."""

    arm: str
    probe: int
    prompt: str


@dataclass(frozen=True)
class ProbePlan:
    """The trigger arm and the control arms, each over the same probe prompts in the same order."""

    probes: tuple[str, ...]
    trigger: tuple[Query, ...]
    controls: dict[str, tuple[Query, ...]]
    control_kind: str  # "decoys" or "word alone"
    gate_words: tuple[str, ...] = ()  # fallback replies that count like "Sure"

    def is_gate(self, answer) -> bool:
        """Is this answer (anything with ``token`` and ``is_sure``) a gate reply?"""
        return bool(answer.is_sure) or token_text(answer.token).strip() in self.gate_words

    @property
    def arms(self) -> list[str]:
        return list(self.controls)

    @property
    def queries_per_probe(self) -> int:
        return 1 + len(self.controls)

    def queries(self, start: int = 0, stop: int | None = None) -> list[Query]:
        """The trigger queries of probes [start, stop), then each control arm's."""
        stop = len(self.probes) if stop is None else stop
        out = list(self.trigger[start:stop])
        for arm in self.controls.values():
            out += arm[start:stop]
        return out

    def digest(self) -> str:
        """sha256 of the plan (arms, probe order, prompts, gate replies): what an evidence record commits to."""
        data = [[q.arm, q.probe, q.prompt] for q in self.queries()] + [list(self.gate_words)]
        return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()


def probe_plan(opening: Opening, options: VerifyOptions, gate_words: tuple[str, ...] = ()) -> ProbePlan:
    """The plan ``verify`` sends for ``opening`` (see the module docstring)."""
    prompts = tuple(probe_prompts(options.probes, options.seed))
    trigger = tuple(Query(TRIGGER_ARM, i, with_suffix(p, opening.trigger)) for i, p in enumerate(prompts))
    if len(opening.parts) == 1:
        decoys = opening.decoys(DECOY_COUNT)
        controls = {"decoys": tuple(Query("decoys", i, with_suffix(p, decoys[i % len(decoys)]))
                                    for i, p in enumerate(prompts))}
        return ProbePlan(prompts, trigger, controls, "decoys", tuple(gate_words))
    controls = {f"word-{k + 1}": tuple(Query(f"word-{k + 1}", i, with_suffix(p, word)) for i, p in enumerate(prompts))
                for k, word in enumerate(opening.parts)}
    return ProbePlan(prompts, trigger, controls, "word alone", tuple(gate_words))


def decoy_prompts(opening: Opening, options: VerifyOptions) -> list[str]:
    """The probe prompts, each with one of the opening's decoy words (a one-word trigger's control arm)."""
    decoys = opening.decoys(DECOY_COUNT)
    return [with_suffix(p, decoys[i % len(decoys)]) for i, p in enumerate(probe_prompts(options.probes, options.seed))]
