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
SEQUENTIAL_BATCH_PAIRS = 4  # paired probes sent per round of --sequential: it stops after a whole round


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


def run_sequential(cert: Certificate, opening: Opening, backend, options: VerifyOptions | None = None,
                   batch_pairs: int = SEQUENTIAL_BATCH_PAIRS, progress: Callable[[int], None] | None = None):
    """Anytime-valid verification: query paired probes a few at a time and stop once decided."""
    from .sequential import e_process

    options = options or VerifyOptions()
    check_opening(cert, opening)
    trigger_prompts, decoy_prompts = probe_plan(opening, options)

    def pairs():
        for start in range(0, len(trigger_prompts), batch_pairs):
            t, d = trigger_prompts[start:start + batch_pairs], decoy_prompts[start:start + batch_pairs]
            answers = backend.first_tokens(t + d, progress=progress)
            yield from zip((a.is_sure for a in answers[:len(t)]), (a.is_sure for a in answers[len(t):]),
                           strict=True)

    result = e_process(pairs(), alpha=options.alpha)
    return result, backend.usage.queries


@dataclass
class Attribution:
    """Which licensee's copy a suspect is: one verification per licensee, Bonferroni-corrected."""

    rows: list[dict]
    alpha: float

    @property
    def licensee(self) -> str | None:
        best = min(self.rows, key=lambda r: r["p_adjusted"], default=None)
        return best["licensee"] if best and best["p_adjusted"] <= self.alpha else None

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "attributed_to": self.licensee, "certified": self.licensee is not None,
                "correction": "bonferroni", "licensees": self.rows}


def attribute(candidates: list[tuple[str | None, Certificate, Opening]], backend,
              options: VerifyOptions | None = None, progress: Callable[[int], None] | None = None) -> Attribution:
    """Verify the suspect against every licensee's certificate; p-values are multiplied by their number."""
    options = options or VerifyOptions()
    options = VerifyOptions(probes=options.probes, alpha=options.alpha, seed=options.seed, samples=0)
    rows = []
    for licensee, cert, opening in candidates:
        report = run_verification(cert, opening, backend, options, progress=progress)
        rows.append({"licensee": licensee, "certificate_id": cert.id, **report.result.to_dict(),
                     "p_adjusted": min(1.0, report.result.p_value * len(candidates))})
    return Attribution(rows=rows, alpha=options.alpha)
