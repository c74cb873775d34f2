"""The shape every statistical test shares: a plan is asked, the answers decide, the decision says how.

A test is a class registered by name (``@register_test("fisher-iut")``); ``verify --test NAME`` picks one. Its
``run`` gets the plan and an ``ask`` function that sends queries and returns their first tokens, so a
sequential test can stop asking early. The decision carries the counts of every control arm, the p-value
(or e-value), the alpha, which arm decided, and the rule in plain words.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import ClassVar

from fingerprint.core.errors import FingerprintError
from fingerprint.verification.plan import ProbePlan, Query

Ask = Callable[[list[Query]], list]  # queries -> answers (``.token``, ``.is_sure``), in order; see ProbePlan.is_gate


@dataclass(frozen=True)
class ArmCount:
    """The trigger arm against one control arm, over the probes asked."""

    arm: str
    trigger_sure: int
    trigger_total: int
    control_sure: int
    control_total: int
    p_value: float
    e_value: float | None = None

    @property
    def trigger_sure_rate(self) -> float:
        return self.trigger_sure / self.trigger_total if self.trigger_total else 0.0

    @property
    def control_sure_rate(self) -> float:
        return self.control_sure / self.control_total if self.control_total else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "trigger_sure_rate": self.trigger_sure_rate,
                "control_sure_rate": self.control_sure_rate}


@dataclass(frozen=True)
class Decision:
    """A verdict and everything needed to see how it follows from the answers."""

    test: str
    certified: bool
    alpha: float
    p_value: float
    arms: tuple[ArmCount, ...]
    deciding_arm: str
    queries: int
    rule: str
    e_value: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def deciding(self) -> ArmCount:
        return next(a for a in self.arms if a.arm == self.deciding_arm)

    # the deciding arm's counts, under the names the registry's columns use
    @property
    def trigger_sure(self) -> int:
        return self.deciding.trigger_sure

    @property
    def trigger_total(self) -> int:
        return self.deciding.trigger_total

    @property
    def control_sure(self) -> int:
        return self.deciding.control_sure

    @property
    def control_total(self) -> int:
        return self.deciding.control_total

    @property
    def trigger_sure_rate(self) -> float:
        return self.deciding.trigger_sure_rate

    @property
    def control_sure_rate(self) -> float:
        return self.deciding.control_sure_rate

    def to_dict(self) -> dict:
        return {"test": self.test, "certified": self.certified, "alpha": self.alpha, "p_value": self.p_value,
                "e_value": self.e_value, "deciding_arm": self.deciding_arm, "queries": self.queries,
                "rule": self.rule, "arms": [a.to_dict() for a in self.arms],
                "trigger_sure": self.trigger_sure, "trigger_total": self.trigger_total,
                "control_sure": self.control_sure, "control_total": self.control_total,
                "trigger_sure_rate": self.trigger_sure_rate, "control_sure_rate": self.control_sure_rate,
                **({"extra": self.extra} if self.extra else {})}


class StatisticalTest(ABC):
    """A named decision rule over a probe plan."""

    name: ClassVar[str] = ""
    rule: ClassVar[str] = ""  # the null hypothesis and the rule, in plain words

    @abstractmethod
    def run(self, plan: ProbePlan, ask: Ask, alpha: float) -> Decision:
        """Ask (some or all of) the plan's queries and decide."""


TESTS: dict[str, type[StatisticalTest]] = {}


def register_test(name: str):
    """Class decorator: make a test available under ``name`` (``verify --test NAME``)."""

    def wrap(cls: type[StatisticalTest]) -> type[StatisticalTest]:
        cls.name = name
        TESTS[name] = cls
        return cls

    return wrap


def make_test(name: str) -> StatisticalTest:
    from fingerprint.verification import rules  # noqa: F401 - registers the built-in tests

    if name not in TESTS:
        raise FingerprintError(f"unknown test {name!r} (choose from {', '.join(sorted(TESTS))})")
    return TESTS[name]()


def test_names() -> list[str]:
    from fingerprint.verification import rules  # noqa: F401

    return sorted(TESTS)
