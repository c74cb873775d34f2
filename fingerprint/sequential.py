"""Anytime-valid sequential verification: a betting e-process on paired trigger/decoy probes.

Each probe prompt is sent once with the trigger and once with a decoy. Only discordant pairs carry
evidence: under the null hypothesis (the trigger is just another word for this model) a discordant pair
favours the trigger or the decoy with probability 1/2 each. The wealth ``W = prod(1 + lam * (2X - 1))``
is a non-negative martingale under the null, so by Ville's inequality P(sup W >= 1/alpha) <= alpha:
verification may stop the moment ``W >= 1/alpha`` and the false-certification bound still holds.
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


def e_process(pairs: Iterable[tuple[bool, bool]], alpha: float = 1e-6, bet: float = 0.9,
              max_pairs: int | None = None) -> SequentialResult:
    """Consume (trigger_sure, decoy_sure) pairs until the wealth reaches 1/alpha or they run out."""
    wealth, n, t_only, d_only = 1.0, 0, 0, 0
    for trigger_sure, decoy_sure in pairs:
        n += 1
        if trigger_sure and not decoy_sure:
            wealth *= 1 + bet
            t_only += 1
        elif decoy_sure and not trigger_sure:
            wealth *= 1 - bet
            d_only += 1
        if wealth >= 1 / alpha or (max_pairs is not None and n >= max_pairs):
            break
    return SequentialResult(wealth >= 1 / alpha, wealth, alpha, n, 2 * n, t_only, d_only)


def sequential_verify(query_pair: Callable[[int], tuple[bool, bool]], max_pairs: int, alpha: float = 1e-6,
                      bet: float = 0.9) -> SequentialResult:
    """Query pair i lazily (``query_pair(i)``) so no probe is sent after the decision."""
    return e_process((query_pair(i) for i in range(max_pairs)), alpha=alpha, bet=bet)


def pairs_needed(alpha: float = 1e-6, bet: float = 0.9) -> int:
    """Discordant pairs a perfect gate needs: the smallest n with (1 + bet)^n >= 1/alpha."""
    import math

    return math.ceil(math.log(1 / alpha) / math.log(1 + bet))
