"""Anytime-valid sequential verification: a betting e-process on paired trigger/decoy probes.

Each probe prompt is sent once with the trigger and once with a decoy. Only discordant pairs carry
evidence: under the null hypothesis (the trigger is just another word for this model) a discordant pair
favours the trigger or the decoy with probability 1/2 each. The wealth ``W = prod(1 + lam * (2X - 1))``
is a non-negative martingale under the null, so by Ville's inequality P(sup W >= 1/alpha) <= alpha:
verification may stop the moment ``W >= 1/alpha`` and the false-certification bound still holds.
A two-word trigger has two control arms (each word alone) with a wealth each; it certifies once both
reach ``1/alpha`` (an intersection-union test needs no correction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SequentialResult:
    certified: bool
    e_value: float
    alpha: float
    pairs: int
    queries: int
    trigger_only: int
    decoy_only: int

    @property
    def p_value(self) -> float:
        """Anytime-valid p-value ``min(1, 1/E)`` (Ville's inequality)."""
        return min(1.0, 1 / self.e_value)

    def to_dict(self) -> dict:
        return {**asdict(self), "p_value": self.p_value}


def e_process(pairs: Iterable[tuple[bool, bool | tuple[bool, ...]]], alpha: float = 1e-6, bet: float = 0.9,
              max_pairs: int | None = None) -> SequentialResult:
    """Consume (trigger_sure, control_sure) pairs until the wealth reaches 1/alpha or they run out.

    ``control_sure`` may be a tuple, one answer per control arm (a multi-word trigger's single words): each
    arm keeps its own wealth and certification needs every arm at 1/alpha (intersection-union, no
    correction needed); the reported e-value and counts are the weakest arm's.
    """
    wealth: list[float] = []
    t_only: list[int] = []
    d_only: list[int] = []
    n = 0
    for trigger_sure, controls in pairs:
        controls = (controls,) if isinstance(controls, bool) else tuple(controls)
        if not wealth:
            wealth, t_only, d_only = [1.0] * len(controls), [0] * len(controls), [0] * len(controls)
        n += 1
        for k, control_sure in enumerate(controls):
            if trigger_sure and not control_sure:
                wealth[k] *= 1 + bet
                t_only[k] += 1
            elif control_sure and not trigger_sure:
                wealth[k] *= 1 - bet
                d_only[k] += 1
        if min(wealth) >= 1 / alpha or (max_pairs is not None and n >= max_pairs):
            break
    if not wealth:
        return SequentialResult(False, 1.0, alpha, 0, 0, 0, 0)
    weakest = min(range(len(wealth)), key=wealth.__getitem__)
    return SequentialResult(wealth[weakest] >= 1 / alpha, wealth[weakest], alpha, n, n * (1 + len(wealth)),
                            t_only[weakest], d_only[weakest])


def sequential_verify(query_pair: Callable[[int], tuple[bool, bool]], max_pairs: int, alpha: float = 1e-6,
                      bet: float = 0.9) -> SequentialResult:
    """Query pair i lazily (``query_pair(i)``) so no probe is sent after the decision."""
    return e_process((query_pair(i) for i in range(max_pairs)), alpha=alpha, bet=bet)


def pairs_needed(alpha: float = 1e-6, bet: float = 0.9) -> int:
    """Discordant pairs a perfect gate needs: the smallest n with (1 + bet)^n >= 1/alpha."""
    import math

    return math.ceil(math.log(1 / alpha) / math.log(1 + bet))
