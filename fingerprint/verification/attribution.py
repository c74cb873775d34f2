"""Which licensee's copy a suspect is: one verification per licensee certificate, Bonferroni-corrected."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from fingerprint.provenance.certificate import Certificate
from fingerprint.provenance.trigger import Opening
from fingerprint.verification.plan import VerifyOptions
from fingerprint.verification.runner import DEFAULT_TEST, VerificationReport, run_verification

RULE = "Bonferroni: each licensee's p-value times the number of licensees; the smallest adjusted p at most alpha names"


@dataclass
class Attribution:
    """Every licensee's verification and adjusted p-value; ``licensee`` is the one attributed, if any."""

    rows: list[dict]
    reports: list[VerificationReport]
    alpha: float
    test: str

    @property
    def licensee(self) -> str | None:
        best = min(self.rows, key=lambda r: r["p_adjusted"], default=None)
        return best["licensee"] if best and best["p_adjusted"] <= self.alpha else None

    @property
    def certified(self) -> bool:
        return self.licensee is not None

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "attributed_to": self.licensee, "certified": self.certified,
                "correction": "bonferroni", "test": self.test, "rule": RULE, "licensees": self.rows}


def attribute(candidates: list[tuple[str | None, Certificate, Opening]], backend,
              options: VerifyOptions | None = None, test: str = DEFAULT_TEST,
              progress: Callable[[int], None] | None = None) -> Attribution:
    """Verify the suspect against every licensee's certificate; p-values are multiplied by their number."""
    options = replace(options or VerifyOptions(), samples=0)
    rows, reports = [], []
    for licensee, cert, opening in candidates:
        report = run_verification(cert, opening, backend, options, test=test, progress=progress)
        reports.append(report)
        rows.append({"licensee": licensee, "certificate_id": cert.id, **report.decision.to_dict(),
                     "p_adjusted": min(1.0, report.decision.p_value * len(candidates))})
    return Attribution(rows=rows, reports=reports, alpha=options.alpha, test=test)
