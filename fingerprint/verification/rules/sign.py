"""``sign-iut``: a sign test on P(Sure), probe by probe; it reads the gate where no greedy reply shows it.

Each probe prompt is sent once with the trigger and once per control arm, and the backend reports the
probability of a "Sure" first token (hf, llamacpp, vllm; an OpenAI-compatible server only within its top
logprobs). On each probe the trigger *wins* against an arm when its P(Sure) is strictly larger (a tie is a
loss). Under the null hypothesis (for this model the trigger is just another control) a win has probability at
most 1/2 on each probe, so the one-sided binomial tail of the wins is a p-value; with several arms the larger
p decides (intersection-union). It certifies a derivative whose fine-tune silenced the greedy "Sure" but left
its probability raised after the trigger. Its false-certification rate on models without the fingerprint is
measured by ``bench/fp_calibration.py`` (second table).
"""

from __future__ import annotations

from scipy.stats import binom

from fingerprint.core.errors import FingerprintError
from fingerprint.verification.decision import ArmCount, Ask, Decision, StatisticalTest, register_test
from fingerprint.verification.plan import TRIGGER_ARM, ProbePlan


def sign_p(wins: int, n: int) -> float:
    """One-sided sign-test p-value: P(at least ``wins`` of ``n`` fair coin flips)."""
    return float(binom.sf(wins - 1, n, 0.5)) if wins > 0 else 1.0


@register_test("sign-iut")
class SignIntersectionUnion(StatisticalTest):
    rule = ("one-sided sign test, probe by probe, that the trigger's P(Sure) exceeds each control arm's; certified "
            "when the largest p-value is at most alpha (needs a backend that reports P(Sure))")

    def run(self, plan: ProbePlan, ask: Ask, alpha: float) -> Decision:
        queries = plan.queries()
        return self.decide(plan, queries, ask(queries), alpha)

    def decide(self, plan: ProbePlan, queries: list, answers: list, alpha: float) -> Decision:
        """The decision from answers already in hand (``answers[i]`` to ``queries[i]``)."""
        score: dict[tuple[str, int], float] = {}
        gate: dict[str, int] = {}
        for query, answer in zip(queries, answers, strict=True):
            if answer.p_sure is None:
                raise FingerprintError("the sign test needs P(Sure) for every query; this backend does not report "
                                       "it (use --test fisher-iut)")
            score[(query.arm, query.probe)] = answer.p_sure
            gate[query.arm] = gate.get(query.arm, 0) + plan.is_gate(answer)
        n = len(plan.probes)
        arms = []
        for arm in plan.arms:
            wins = sum(score[(TRIGGER_ARM, i)] > score[(arm, i)] for i in range(n))
            arms.append(ArmCount(arm, gate.get(TRIGGER_ARM, 0), n, gate.get(arm, 0), n, sign_p(wins, n)))
        deciding = max(arms, key=lambda a: a.p_value)
        wins = {a.arm: sum(score[(TRIGGER_ARM, i)] > score[(a.arm, i)] for i in range(n)) for a in arms}
        return Decision(test=self.name, certified=deciding.p_value <= alpha, alpha=alpha, p_value=deciding.p_value,
                        arms=tuple(arms), deciding_arm=deciding.arm, queries=len(queries), rule=self.rule,
                        extra={"wins": wins})
