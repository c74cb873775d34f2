"""Run a verification: check the opening, ask the suspect through a backend, let the chosen test decide.

Every answer is kept in a transcript (arm, probe, first token, P(Sure) where the backend gives it, time), so
the decision can be recomputed from the raw answers by anyone who holds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fingerprint.core.errors import FingerprintError
from fingerprint.provenance.certificate import Certificate
from fingerprint.provenance.trigger import Opening
from fingerprint.verification.decision import Decision, make_test
from fingerprint.verification.plan import ProbePlan, Query, VerifyOptions, probe_plan

DEFAULT_TEST = "fisher-iut"


@dataclass(frozen=True)
class Answer:
    """One query and what came back."""

    arm: str
    probe: int
    token: str
    is_sure: bool
    p_sure: float | None
    at: float  # unix time the answer arrived
    is_gate: bool = False  # "Sure" or a fallback reply of the certificate

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerificationReport:
    decision: Decision
    plan: ProbePlan
    transcript: list[Answer] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)

    @property
    def certified(self) -> bool:
        return self.decision.certified

    @property
    def queries(self) -> int:
        return self.decision.queries

    def to_dict(self) -> dict:
        return {**self.decision.to_dict(), "samples": self.samples, "usage": self.usage,
                "plan_digest": self.plan.digest(), "control_kind": self.plan.control_kind}


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


def asker(backend, plan: ProbePlan, transcript: list[Answer], progress: Callable[[int], None] | None = None):
    """An ``ask`` function over ``backend`` that appends every answer to ``transcript``."""

    def ask(queries: list[Query]) -> list[Answer]:
        answers = backend.first_tokens([q.prompt for q in queries], progress=progress)
        now = time.time()
        out = [Answer(q.arm, q.probe, a.token, bool(a.is_sure), a.p_sure, now, plan.is_gate(a))
               for q, a in zip(queries, answers, strict=True)]
        transcript.extend(out)
        return out

    return ask


def replay(test: str, plan: ProbePlan, answers, alpha: float) -> Decision | None:
    """The decision ``test`` reaches on ``plan`` from answers already in hand (anything with ``arm``, ``probe``,
    ``token`` and ``is_sure``, e.g. a transcript): every query it asks is looked up instead of sent, so a
    sequential test stops where it would have stopped. None when the test asks a query that was not answered."""
    by_query = {(a.arm, a.probe): a for a in answers}

    def ask(queries: list[Query]) -> list:
        if any((q.arm, q.probe) not in by_query for q in queries):
            raise _Unanswered
        return [by_query[(q.arm, q.probe)] for q in queries]

    try:
        return make_test(test).run(plan, ask, alpha)
    except _Unanswered:
        return None


class _Unanswered(Exception):
    """A replayed test asked a query that has no answer in hand."""


def gate_words(opening: Opening, cert: Certificate) -> tuple[str, ...]:
    """The certificate's fallback replies, spelled out from the opening."""
    return opening.fallbacks(cert.fingerprint.fallback_indices)


def run_verification(cert: Certificate, opening: Opening, backend, options: VerifyOptions | None = None,
                     test: str = DEFAULT_TEST, progress: Callable[[int], None] | None = None) -> VerificationReport:
    """Check the opening, run ``test`` on the suspect behind ``backend``, and sample a few replies."""
    options = options or VerifyOptions()
    check_opening(cert, opening)
    plan = probe_plan(opening, options, gate_words(opening, cert))
    transcript: list[Answer] = []
    decision = make_test(test).run(plan, asker(backend, plan, transcript, progress), options.alpha)
    samples = []
    if options.samples:
        first_control = plan.controls[plan.arms[0]]
        picked = list(plan.trigger[: options.samples]) + list(first_control[: options.samples])
        replies = backend.generate([q.prompt for q in picked], options.sample_tokens)
        samples = [{"kind": "trigger" if q.arm == "trigger" else "control", "arm": q.arm, "reply": r}
                   for q, r in zip(picked, replies, strict=True)]
    usage = {k: v for k, v in vars(backend.usage).items() if v}
    return VerificationReport(decision=decision, plan=plan, transcript=transcript, samples=samples, usage=usage)
