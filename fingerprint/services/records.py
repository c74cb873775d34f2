"""Registry records of what the services did: one place that turns an outcome into a registry row."""

from __future__ import annotations

from fingerprint.provenance.certificate import Certificate


def register_certificate(registry, cert: Certificate, selfcheck: dict | None = None) -> str:
    """Register a certificate and its signing key (the caller has decided to trust that key)."""
    info = cert.info
    registry.add_key(cert.key_id, info.owner.public_key)
    return registry.add_certificate(cert_id=cert.id, key_id=cert.key_id, base_model=info.base_model.name,
                                    label=info.fingerprint.label, licensee=info.fingerprint.licensee,
                                    subject=cert.subjects, envelope=cert.text, selfcheck=selfcheck)


def record_verification(registry, outcome, certified: bool | None = None, extra: dict | None = None) -> int:
    """Store a verification outcome; returns its record number (``v<N>``).

    A certificate whose signer is trusted (owner, pinned, registry) is registered too, so the record links to
    it; an unpinned one is not (registering it would make its key trusted later): its envelope is kept in the
    record's details instead.
    """
    cert, decision, request = outcome.certificate, outcome.report.decision, outcome.request
    details = {"verifier": outcome.verifier, **outcome.trust.to_dict(), "rule": decision.rule,
               "arms": [a.to_dict() for a in decision.arms], "deciding_arm": decision.deciding_arm,
               "e_value": decision.e_value, "samples": outcome.report.samples, "usage": outcome.report.usage,
               "seed": request.options.seed, "probes": request.options.probes,
               "plan_digest": outcome.report.plan.digest(), "control_kind": outcome.report.plan.control_kind,
               **({"extra": decision.extra} if decision.extra else {}), **(extra or {})}
    if outcome.trust.pinned:
        register_certificate(registry, cert)
    else:
        details["certificate_envelope"] = cert.text
    return registry.add_verification(
        certificate_digest=cert.id, backend=request.backend, model=request.model, adapter=request.adapter,
        trigger_sure=decision.trigger_sure, trigger_total=decision.trigger_total,
        control_sure=decision.control_sure, control_total=decision.control_total, queries=decision.queries,
        p_value=decision.p_value, alpha=decision.alpha,
        certified=decision.certified if certified is None else certified, test=decision.test, details=details)
