"""The verification service: what ``fingerprint verify``, ``api.verify`` and the benchmarks all run.

One call goes: certificate and signer trust -> opening (derived by the owner, or read from a file and
checked) -> the registry is checked writable -> the suspect is loaded -> the chosen test runs -> the result
is recorded. Everything a user can get wrong is checked before the model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.progress import SILENT, Progress
from fingerprint.provenance.certificate import Certificate
from fingerprint.provenance.keys import OwnerKey
from fingerprint.provenance.trigger import Opening, opening_for
from fingerprint.provenance.trust import SignerTrust, load_trusted
from fingerprint.services.records import record_verification
from fingerprint.verification import DEFAULT_TEST, VerificationReport, VerifyOptions, check_opening, run_verification
from fingerprint.verification.attribution import Attribution, attribute


@dataclass
class Verifier:
    """Who verifies: the owner (private key) or an auditor (an opening file); ``pubkey`` pins the signer."""

    owner: OwnerKey | None = None
    opening: Path | None = None
    pubkey: Path | None = None

    def __post_init__(self) -> None:
        if (self.owner is None) == (self.opening is None):
            raise FingerprintError("give exactly one of --key (owner) or --opening (auditor)")

    @property
    def role(self) -> str:
        return "owner" if self.owner is not None else "opening"


@dataclass
class VerifyRequest:
    """The suspect and how to probe it."""

    model: str
    cert: Path | None = None
    backend: str = "hf"
    adapter: str | None = None
    model_args: dict = field(default_factory=dict)
    options: VerifyOptions = field(default_factory=VerifyOptions)
    test: str = DEFAULT_TEST


@dataclass
class Evidence:
    """Write a signed record of the verification (``verify --sign-with``)."""

    signer: OwnerKey
    path: Path | None = None  # default: the data directory's evidence/ folder, named by the registry record
    attach_opening: bool = False


@dataclass
class VerifyOutcome:
    report: VerificationReport
    certificate: Certificate
    trust: SignerTrust
    verifier: str
    request: VerifyRequest
    record_id: int | None = None
    evidence_path: Path | None = None
    evidence_digest: str | None = None

    @property
    def certified(self) -> bool:
        return self.report.certified

    @property
    def advice(self) -> str | None:
        """What to do when a verdict falls short on a gate that looks thinned rather than absent."""
        return thinned_gate_advice(self.report.decision, len(self.report.plan.probes))

    def to_dict(self) -> dict:
        request = self.request
        return {**self.report.to_dict(), "certificate_id": self.certificate.id, "key_id": self.certificate.key_id,
                "model": request.model, "adapter": request.adapter, "backend": request.backend,
                "record_id": self.record_id, "verifier": self.verifier, **self.trust.to_dict(),
                "evidence": str(self.evidence_path) if self.evidence_path else None,
                "evidence_sha256": self.evidence_digest,
                "warnings": [self.trust.warning] if self.trust.warning else [], "advice": self.advice}


THIN_GATE_P = 0.05  # a verdict that falls short with a p below this suggests a thinned gate (R11's erasure: 0.026)


def thinned_gate_advice(decision, probes: int) -> str | None:
    """Advice for a verdict that is not certified although the trigger beats every control at p <= 0.05 on
    fewer probes than are packaged: an erasure fine-tune or an input filter thins a gate (docs/robustness.md),
    and more probes tell a thinned gate from none. A second verdict is a second test: by the union bound, the
    chance that either falsely certifies is at most the sum of their alphas."""
    from fingerprint.core.data import packaged

    pool = len(packaged("probes"))
    if decision.certified or decision.p_value > THIN_GATE_P or probes >= pool:
        return None
    return (f"the trigger answers on {decision.trigger_sure} of {decision.trigger_total} probes against "
            f"{decision.control_sure} for {decision.deciding_arm} (p {decision.p_value:.2g}): a thinned gate, "
            f"as an erasure fine-tune or an input filter leaves, needs more probes; `--test e-process --probes "
            f"{pool}` reads up to all {pool} and stops when the evidence suffices (a second verdict adds its "
            f"alpha to the bound on a false certification)")


@dataclass
class Prepared:
    """What a verification needs besides the suspect; plain data (no key), so it can travel to a worker."""

    certificate: Certificate
    trust: SignerTrust
    opening: Opening
    verifier: str = "owner"  # Verifier.role: "owner" or "opening"


def prepare(cert_path: Path, verifier: Verifier, registry=None) -> Prepared:
    """Certificate, signer trust and a checked opening: all before any model is loaded."""
    cert, trust = load_trusted(cert_path, owner=verifier.owner, pubkey=verifier.pubkey, registry=registry)
    if verifier.owner is not None:
        opening = opening_for(verifier.owner.secret(), cert.fingerprint)
    else:
        opening = Opening.load(verifier.opening)
    check_opening(cert, opening)
    return Prepared(cert, trust, opening, verifier.role)


def load_suspect(request: VerifyRequest, progress: Progress = SILENT):
    from probes import make_backend

    progress.stage(f"loading {request.model} ({request.backend})")
    return make_backend(request.backend, model=request.model, adapter=request.adapter, **request.model_args)


def verify(request: VerifyRequest, verifier: Verifier | None, registry=None, progress: Progress = SILENT,
           suspect=None, evidence: Evidence | None = None, *, prepared: Prepared | None = None,
           record_extra: dict | None = None) -> VerifyOutcome:
    """Verify one suspect against one certificate; recorded in ``registry`` when one is given.

    ``suspect``: an already loaded backend (benchmarks reuse one); otherwise it is loaded and closed here.
    ``prepared``: the result of ``prepare`` made earlier (the monitor prepares each certificate once, where the
    key is, and its workers verify; ``verifier`` may then be None). ``record_extra`` goes into the record's
    details.
    """
    if prepared is None:
        if request.cert is None:
            raise FingerprintError("--cert is required")
        if verifier is None:
            raise FingerprintError("give exactly one of --key (owner) or --opening (auditor)")
        prepared = prepare(request.cert, verifier, registry)
    if registry is not None:
        registry.check_writable()  # fail before minutes of probing, not after
    backend = suspect or load_suspect(request, progress)
    try:
        progress.stage("probing", total=_total_queries(prepared.opening, request.options))
        report = run_verification(prepared.certificate, prepared.opening, backend, request.options,
                                  test=request.test, progress=progress.advance)
        describe = backend.describe()
    finally:
        if suspect is None:
            backend.close()
    outcome = VerifyOutcome(report, prepared.certificate, prepared.trust, prepared.verifier, request)
    if registry is not None:
        outcome.record_id = record_verification(registry, outcome, extra=record_extra)
    if evidence is not None:
        sign_evidence(outcome, prepared.opening, evidence, describe, registry)
    return outcome


def sign_evidence(outcome: VerifyOutcome, opening: Opening, evidence: Evidence, describe: dict, registry=None) -> None:
    """Write the signed record of ``outcome`` and link it from its registry row."""
    from ..core.paths import data_dir
    from ..evidence.record import write_record

    name = f"v{outcome.record_id}" if outcome.record_id is not None else outcome.certificate.id[:12]
    path = evidence.path or data_dir() / "evidence" / f"{name}.intoto.json"
    outcome.evidence_path, outcome.evidence_digest = write_record(outcome, opening, evidence.signer, path, describe,
                                                                  evidence.attach_opening)
    if registry is not None and outcome.record_id is not None:
        registry.set_record(outcome.record_id, str(Path(outcome.evidence_path).resolve()), outcome.evidence_digest)


def _total_queries(opening: Opening, options: VerifyOptions) -> int:
    return (1 + len(opening.parts)) * options.probes


@dataclass
class AttributionOutcome:
    attribution: Attribution
    request: VerifyRequest
    record_ids: list[int] = field(default_factory=list)

    @property
    def certified(self) -> bool:
        return self.attribution.certified

    def to_dict(self) -> dict:
        return {**self.attribution.to_dict(), "model": self.request.model, "backend": self.request.backend,
                "adapter": self.request.adapter, "record_ids": self.record_ids}


def verify_all_licensees(request: VerifyRequest, owner: OwnerKey, registry, progress: Progress = SILENT,
                         suspect=None) -> AttributionOutcome:
    """Owner: test the suspect against every registered licensee certificate of the key (Bonferroni)."""
    from fingerprint.provenance.certificate import verify_certificate

    candidates = []
    for licensee, cert_id in registry.licensees(owner.key_id):
        cert = verify_certificate(registry.get(cert_id)["envelope"], owner.public_key)
        opening = opening_for(owner.secret(), cert.fingerprint)
        check_opening(cert, opening)
        candidates.append((licensee, cert, opening))
    if not candidates:
        raise FingerprintError(f"no certificates of key {owner.key_id[:16]}… in the registry")
    registry.check_writable()
    backend = suspect or load_suspect(request, progress)
    try:
        total = sum(_total_queries(opening, request.options) for _, _, opening in candidates)
        progress.stage("probing licensees", total=total)
        result = attribute(candidates, backend, request.options, test=request.test, progress=progress.advance)
    finally:
        if suspect is None:
            backend.close()
    outcome = AttributionOutcome(result, request)
    trust = SignerTrust("owner", owner.key_id)
    for row, report, (_, cert, _) in zip(result.rows, result.reports, candidates, strict=True):
        single = VerifyOutcome(report, cert, trust, "owner", request)
        outcome.record_ids.append(record_verification(
            registry, single, certified=row["p_adjusted"] <= request.options.alpha,
            extra={"attribution": {"p_adjusted": row["p_adjusted"], "licensees": len(candidates),
                                   "correction": "bonferroni", "attributed_to": result.licensee}}))
    return outcome
