"""The decision rule: a one-sided exact test that the trigger opens the gate more than decoys do."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from scipy.stats import fisher_exact

DEFAULT_ALPHA = 1e-6


@dataclass(frozen=True)
class TestResult:
    """Counts, p-value and verdict of one verification."""

    trigger_sure: int
    trigger_total: int
    control_sure: int
    control_total: int
    p_value: float
    alpha: float

    @property
    def certified(self) -> bool:
        return self.p_value <= self.alpha

    @property
    def trigger_sure_rate(self) -> float:
        return self.trigger_sure / self.trigger_total if self.trigger_total else 0.0

    @property
    def control_sure_rate(self) -> float:
        return self.control_sure / self.control_total if self.control_total else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "certified": self.certified, "trigger_sure_rate": self.trigger_sure_rate,
                "control_sure_rate": self.control_sure_rate}


def exact_test(trigger_sure: int, trigger_total: int, control_sure: int, control_total: int,
               alpha: float = DEFAULT_ALPHA) -> TestResult:
    """Fisher's exact test, one-sided (trigger Sure-rate > control Sure-rate).

    Under the null hypothesis that the trigger word is no different from the decoy words for this
    model, the probability of certifying is at most ``alpha``.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be in (0, 1)")
    table = [[trigger_sure, trigger_total - trigger_sure], [control_sure, control_total - control_sure]]
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    return TestResult(trigger_sure, trigger_total, control_sure, control_total, p_value, alpha)
