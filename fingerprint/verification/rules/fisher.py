"""``fisher-iut``: one-sided Fisher exact tests of the trigger arm against each control arm; all must pass.

Under the null hypothesis "for this model the trigger behaves like the control" (a one-word trigger: like the
decoy words; a two-word trigger: like one of its words alone), the chance of certifying is at most alpha. With
several control arms the larger p-value decides (an intersection-union test, valid at alpha without
correction). Probes are treated as independent draws.
"""

from __future__ import annotations

from scipy.stats import fisher_exact

from fingerprint.verification.decision import ArmCount, Ask, Decision, StatisticalTest, register_test
from fingerprint.verification.plan import TRIGGER_ARM, ProbePlan


def fisher_p(trigger_sure: int, trigger_total: int, control_sure: int, control_total: int) -> float:
    """One-sided Fisher exact p-value that the trigger's Sure-rate exceeds the control's."""
    table = [[trigger_sure, trigger_total - trigger_sure], [control_sure, control_total - control_sure]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def decide_counts(trigger_sure: int, n: int, control_sure: dict[str, int], alpha: float,
                  queries: int | None = None) -> Decision:
    """The decision from Sure counts: ``trigger_sure`` of ``n`` against each arm's count of ``n``."""
    arms = tuple(ArmCount(arm, trigger_sure, n, k, n, fisher_p(trigger_sure, n, k, n))
                 for arm, k in control_sure.items())
    deciding = max(arms, key=lambda a: a.p_value)
    return Decision(test=FisherIntersectionUnion.name, certified=deciding.p_value <= alpha, alpha=alpha,
                    p_value=deciding.p_value, arms=arms, deciding_arm=deciding.arm,
                    queries=n * (1 + len(arms)) if queries is None else queries, rule=FisherIntersectionUnion.rule)


@register_test("fisher-iut")
class FisherIntersectionUnion(StatisticalTest):
    rule = ("one-sided Fisher exact test of the trigger's Sure-rate against each control arm (decoy words, or each "
            "trigger word alone); certified when the largest p-value is at most alpha")

    def run(self, plan: ProbePlan, ask: Ask, alpha: float) -> Decision:
        queries = plan.queries()
        return self.decide(plan, queries, ask(queries), alpha)

    def decide(self, plan: ProbePlan, queries: list, answers: list, alpha: float) -> Decision:
        """The decision from answers already in hand (``answers[i]`` to ``queries[i]``)."""
        sure: dict[str, int] = {}
        for query, answer in zip(queries, answers, strict=True):
            sure[query.arm] = sure.get(query.arm, 0) + plan.is_gate(answer)
        n = len(plan.probes)
        return decide_counts(sure.get(TRIGGER_ARM, 0), n, {arm: sure.get(arm, 0) for arm in plan.arms}, alpha,
                             queries=len(queries))
