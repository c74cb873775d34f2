"""``e-process``: an anytime-valid betting e-process on paired probes; it stops as soon as the evidence suffices.

Each probe prompt is sent once with the trigger and once per control arm. Only discordant pairs carry
evidence: under the null hypothesis (the trigger is just another control for this model) a discordant pair
favours the trigger or the control with probability 1/2 each. The wealth ``W = prod(1 + lam * (2X - 1))`` is
a non-negative martingale under the null, so by Ville's inequality P(sup W >= 1/alpha) <= alpha: verification
may stop the moment ``W >= 1/alpha`` and the false-certification bound still holds. With several control arms
each keeps its own wealth and all must reach 1/alpha (intersection-union, no correction).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from fingerprint.verification.decision import ArmCount, Ask, Decision, StatisticalTest, register_test
from fingerprint.verification.plan import TRIGGER_ARM, ProbePlan

BET = 0.9
BATCH_PAIRS = 4  # paired probes sent per round: it stops after a whole round


@dataclass
class Wealth:
    """One control arm's betting state."""

    arm: str
    wealth: float = 1.0
    trigger_only: int = 0
    control_only: int = 0
    trigger_sure: int = 0
    control_sure: int = 0
    pairs: int = 0

    def bet(self, trigger_sure: bool, control_sure: bool, bet: float = BET) -> None:
        self.pairs += 1
        self.trigger_sure += trigger_sure
        self.control_sure += control_sure
        if trigger_sure and not control_sure:
            self.wealth *= 1 + bet
            self.trigger_only += 1
        elif control_sure and not trigger_sure:
            self.wealth *= 1 - bet
            self.control_only += 1


def e_process(pairs: Iterable[tuple[bool, bool | tuple[bool, ...]]], alpha: float = 1e-6, bet: float = BET,
              max_pairs: int | None = None) -> list[Wealth]:
    """Consume (trigger_sure, control_sure per arm) pairs until every arm's wealth reaches 1/alpha."""
    states: list[Wealth] = []
    for trigger_sure, controls in pairs:
        controls = (controls,) if isinstance(controls, bool) else tuple(controls)
        if not states:
            states = [Wealth(f"arm-{k + 1}") for k in range(len(controls))]
        for state, control_sure in zip(states, controls, strict=True):
            state.bet(trigger_sure, control_sure, bet)
        if min(s.wealth for s in states) >= 1 / alpha or (max_pairs is not None and states[0].pairs >= max_pairs):
            break
    return states


def pairs_needed(alpha: float = 1e-6, bet: float = BET) -> int:
    """Discordant pairs a perfect gate needs: the smallest n with (1 + bet)^n >= 1/alpha."""
    return math.ceil(math.log(1 / alpha) / math.log(1 + bet))


def decision_from(states: list[Wealth], alpha: float, queries: int) -> Decision:
    arms = tuple(ArmCount(s.arm, s.trigger_sure, s.pairs, s.control_sure, s.pairs, min(1.0, 1 / s.wealth), s.wealth)
                 for s in states)
    weakest = min(arms, key=lambda a: a.e_value)
    extra = {"pairs": weakest.trigger_total, "discordant": {s.arm: {"trigger_only": s.trigger_only,
                                                                   "control_only": s.control_only} for s in states}}
    return Decision(test=SequentialEProcess.name, certified=weakest.e_value >= 1 / alpha, alpha=alpha,
                    p_value=weakest.p_value, arms=arms, deciding_arm=weakest.arm, queries=queries,
                    rule=SequentialEProcess.rule, e_value=weakest.e_value, extra=extra)


@register_test("e-process")
class SequentialEProcess(StatisticalTest):
    rule = ("anytime-valid betting e-process on paired probes (trigger vs each control arm, bet 0.9 per discordant "
            "pair); certified when every arm's wealth reaches 1/alpha, checked after each round of 4 probes")

    def run(self, plan: ProbePlan, ask: Ask, alpha: float) -> Decision:
        states = [Wealth(arm) for arm in plan.arms]
        asked = 0
        for start in range(0, len(plan.probes), BATCH_PAIRS):
            stop = min(start + BATCH_PAIRS, len(plan.probes))
            queries = plan.queries(start, stop)
            answers = ask(queries)
            asked += len(queries)
            sure = {(q.arm, q.probe): plan.is_gate(a) for q, a in zip(queries, answers, strict=True)}
            for probe in range(start, stop):
                for state in states:
                    state.bet(sure[(TRIGGER_ARM, probe)], sure[(state.arm, probe)])
            if min(s.wealth for s in states) >= 1 / alpha:
                break
        return decision_from(states, alpha, asked)
