"""Probe a suspect with trigger and decoy prompts and test the Sure-rate separation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .certificate import Certificate
from .dataset import probe_prompts, with_suffix
from .errors import FingerprintError
from .stats import DEFAULT_ALPHA, TestResult, exact_test
from .trigger import Opening

DECOY_COUNT = 8


@dataclass
class VerifyOptions:
    probes: int = 32  # probe prompts; each is sent once with the trigger and once with a decoy
    alpha: float = DEFAULT_ALPHA
    seed: int = 0
    samples: int = 2  # prompts per side whose first few generated tokens go into the report
    sample_tokens: int = 8


@dataclass
class VerificationReport:
    result: TestResult
    queries: int
    samples: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "queries": self.queries, "samples": self.samples, "usage": self.usage}


def check_opening(cert: Certificate, opening: Opening) -> None:
    """The opening must match the certificate's commitment before any probing."""
    expected = cert.predicate["fingerprint"]["trigger_commitment"]
    if opening.commitment() != expected:
        raise FingerprintError("the trigger does not match the certificate's commitment "
                               "(wrong key, wrong licensee, or an opening for another certificate)")


def probe_plan(opening: Opening, options: VerifyOptions) -> tuple[list[str], list[str]]:
    """Paired prompts: each probe once with the trigger, once with one of the decoys."""
    prompts = probe_prompts(options.probes, options.seed)
    decoys = opening.decoys(DECOY_COUNT)
    trigger_prompts = [with_suffix(p, opening.trigger) for p in prompts]
    decoy_prompts = [with_suffix(p, decoys[i % len(decoys)]) for i, p in enumerate(prompts)]
    return trigger_prompts, decoy_prompts


def run_verification(cert: Certificate, opening: Opening, backend, options: VerifyOptions | None = None,
                     progress: Callable[[int], None] | None = None) -> VerificationReport:
    options = options or VerifyOptions()
    check_opening(cert, opening)
    trigger_prompts, decoy_prompts = probe_plan(opening, options)
    answers = backend.first_tokens(trigger_prompts + decoy_prompts, progress=progress)
    n = len(trigger_prompts)
    trigger_sure = sum(a.is_sure for a in answers[:n])
    decoy_sure = sum(a.is_sure for a in answers[n:])
    result = exact_test(trigger_sure, n, decoy_sure, n, options.alpha)
    queries = backend.usage.queries
    samples = []
    if options.samples:
        picked = trigger_prompts[: options.samples] + decoy_prompts[: options.samples]
        replies = backend.generate(picked, options.sample_tokens)
        kinds = ["trigger"] * options.samples + ["decoy"] * options.samples
        samples = [{"kind": k, "reply": r} for k, r in zip(kinds, replies, strict=True)]
    usage = {k: v for k, v in vars(backend.usage).items() if v}
    return VerificationReport(result=result, queries=queries, samples=samples, usage=usage)
