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
    probes: int = 32  # probe prompts; each is sent with the trigger and once per control arm
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
    arms: list[dict] = field(default_factory=list)  # one test per control arm when the trigger has several words

    def to_dict(self) -> dict:
        extra = {"arms": self.arms} if self.arms else {}
        return {**self.result.to_dict(), "queries": self.queries, "samples": self.samples, "usage": self.usage,
                **extra}


def check_opening(cert: Certificate, opening: Opening) -> None:
    """The opening must fit everything the certificate signs, then match its commitment, before any probing.

    The shape is checked first (nonce length, word count, words from the list, label): a v1 commitment has no
    boundary between nonce and words, so an opening reshaped to match it must still fit the signed shape.
    """
    block = cert.fingerprint
    problems = opening.problems(block.label, block.trigger_words)
    if problems:
        raise FingerprintError(f"the opening does not fit the certificate: {'; '.join(problems)}")
    if opening.commitment(block.commitment_scheme) != block.trigger_commitment:
        raise FingerprintError("the trigger does not match the certificate's commitment "
                               "(wrong key, wrong licensee, or an opening for another certificate)")


def probe_plan(opening: Opening, options: VerifyOptions) -> tuple[list[str], list[list[str]]]:
    """Trigger prompts and the control arms they are tested against, on the same probe prompts.

    A one-word trigger has one arm: each probe with one of the decoys. A trigger of several words has one
    arm per word, each probe with that word alone; the verdict needs every arm beaten (intersection-union
    test), so a gate that opens for one of the words by itself proves nothing.
    """
    prompts = probe_prompts(options.probes, options.seed)
    trigger_prompts = [with_suffix(p, opening.trigger) for p in prompts]
    if len(opening.parts) == 1:
        return trigger_prompts, [decoy_prompts(opening, options)]
    return trigger_prompts, [[with_suffix(p, word) for p in prompts] for word in opening.parts]


def decoy_prompts(opening: Opening, options: VerifyOptions) -> list[str]:
    """The probe prompts, each with one of the opening's decoy words (a one-word trigger's control arm)."""
    decoys = opening.decoys(DECOY_COUNT)
    return [with_suffix(p, decoys[i % len(decoys)]) for i, p in enumerate(probe_prompts(options.probes, options.seed))]


def queries_per_probe(opening: Opening) -> int:
    """The trigger prompt plus one prompt per control arm (``probe_plan``)."""
    return 1 + len(opening.parts)


def arm_tests(sure: list[bool], arms: int, alpha: float) -> list[TestResult]:
    """One exact test per control arm, from Sure answers laid out as ``probe_plan`` orders the prompts."""
    n = len(sure) // (1 + arms)
    trigger_sure = sum(sure[:n])
    return [exact_test(trigger_sure, n, sum(sure[n * (k + 1): n * (k + 2)]), n, alpha) for k in range(arms)]


def run_verification(cert: Certificate, opening: Opening, backend, options: VerifyOptions | None = None,
                     progress: Callable[[int], None] | None = None) -> VerificationReport:
    options = options or VerifyOptions()
    check_opening(cert, opening)
    trigger_prompts, arms = probe_plan(opening, options)
    answers = backend.first_tokens(trigger_prompts + [p for arm in arms for p in arm], progress=progress)
    tests = arm_tests([a.is_sure for a in answers], len(arms), options.alpha)
    result = max(tests, key=lambda t: t.p_value)  # intersection-union: the weakest arm decides
    queries = backend.usage.queries
    samples = []
    if options.samples:
        picked = trigger_prompts[: options.samples] + arms[0][: options.samples]
        replies = backend.generate(picked, options.sample_tokens)
        kinds = ["trigger"] * options.samples + ["control"] * options.samples
        samples = [{"kind": k, "reply": r} for k, r in zip(kinds, replies, strict=True)]
    usage = {k: v for k, v in vars(backend.usage).items() if v}
    arms_report = [t.to_dict() for t in tests] if len(tests) > 1 else []
    return VerificationReport(result=result, queries=queries, samples=samples, usage=usage, arms=arms_report)


def run_sequential(cert: Certificate, opening: Opening, backend, options: VerifyOptions | None = None,
                   batch_pairs: int = SEQUENTIAL_BATCH_PAIRS, progress: Callable[[int], None] | None = None):
    """Anytime-valid verification: query paired probes a few at a time and stop once decided."""
    from .sequential import e_process

    options = options or VerifyOptions()
    check_opening(cert, opening)
    trigger_prompts, arms = probe_plan(opening, options)

    def rounds():
        for start in range(0, len(trigger_prompts), batch_pairs):
            stop = min(start + batch_pairs, len(trigger_prompts))
            batch = trigger_prompts[start:stop] + [p for arm in arms for p in arm[start:stop]]
            sure = [a.is_sure for a in backend.first_tokens(batch, progress=progress)]
            size = stop - start
            for i in range(size):
                yield sure[i], tuple(sure[size * (k + 1) + i] for k in range(len(arms)))

    result = e_process(rounds(), alpha=options.alpha)
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
                     "queries": queries_per_probe(opening) * options.probes,
                     "p_adjusted": min(1.0, report.result.p_value * len(candidates))})
    return Attribution(rows=rows, alpha=options.alpha)
