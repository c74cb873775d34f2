"""Re-check a verification record: its signature, every answer, and the decision recomputed from the answers
by the same test code that ``verify`` runs.

Without the opening the check covers the signature, the answers' consistency and the decision; with the opening
it also recomputes the probe plan (each query's salted prompt digest, the plan digest) and the hidden fallback
replies; with the certificate too, that the opening matches the certificate's commitment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

from fingerprint.core.errors import FingerprintError, InvalidCertificate
from fingerprint.core.sure import is_sure_reply, is_sure_token
from fingerprint.evidence.record import RECORD_TYPE, salted
from fingerprint.provenance.certificate import PAYLOAD_TYPE, STATEMENT_TYPE, _sslib_key, canonical
from fingerprint.provenance.keys import key_id, public_key_from_pem

HIDDEN = "\x00fallback"  # stands for a fallback reply whose word the record withholds


@dataclass
class RecordCheck:
    signature_valid: bool
    signer_key_id: str
    signer_pinned: bool
    statement: dict
    recomputed: dict | None = None
    prompts_checked: bool = False
    opening_checked: bool = False
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.signature_valid and not self.problems

    @property
    def predicate(self) -> dict:
        return self.statement.get("predicate", {})

    def to_dict(self) -> dict:
        recorded = self.predicate.get("decision", {})
        return {"ok": self.ok, "signature_valid": self.signature_valid, "signer_key_id": self.signer_key_id,
                "signer_pinned": self.signer_pinned, "prompts_checked": self.prompts_checked,
                "opening_checked": self.opening_checked, "problems": self.problems,
                "recorded": {k: recorded.get(k) for k in ("certified", "p_value", "e_value", "test", "queries")},
                "recomputed": self.recomputed and {k: self.recomputed.get(k)
                                                   for k in ("certified", "p_value", "e_value", "test", "queries")},
                "certificate_id": self.predicate.get("certificate", {}).get("id"),
                "subject": self.statement.get("subject")}


@dataclass(frozen=True)
class _Recorded:
    token: str
    is_sure: bool


def parse_record(text: str) -> tuple[object, dict]:
    """The DSSE envelope and the statement of a record file's text (InvalidCertificate when it is none)."""
    from securesystemslib.dsse import Envelope

    try:
        envelope = Envelope.from_dict(json.loads(text))
        same = canonical(envelope) == text
        statement = json.loads(envelope.payload)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidCertificate("not a verification record (a DSSE envelope)") from exc
    if not same:
        raise InvalidCertificate("record bytes differ from the signed canonical form (modified?)")
    if envelope.payload_type != PAYLOAD_TYPE or not isinstance(statement, dict):
        raise InvalidCertificate("not a verification record")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != RECORD_TYPE:
        raise InvalidCertificate("not a suretrap verification record")
    return envelope, statement


def check_record(text: str, pubkey=None, opening=None, certificate=None) -> RecordCheck:
    """Check a record (see the module docstring); ``pubkey`` pins the verifier's key."""
    envelope, statement = parse_record(text)
    predicate = statement.get("predicate")
    try:
        verifier = predicate["verifier"]
        key = pubkey or public_key_from_pem(verifier["public_key"])
        test, decision, queries = predicate["test"], predicate["decision"], predicate["queries"]
        cert_block = predicate["certificate"]
    except (KeyError, TypeError, FingerprintError) as exc:
        raise InvalidCertificate(f"the record lacks {exc}") from None
    try:
        envelope.verify([_sslib_key(key)], 1)
        valid = verifier.get("key_id") == key_id(key)
    except Exception:  # noqa: BLE001 - securesystemslib raises several kinds for a bad signature
        valid = False
    check = RecordCheck(valid, key_id(key), pubkey is not None, statement)
    if not valid:
        check.problems.append("the signature does not verify" + (" with the pinned key" if pubkey else ""))
    try:
        _recompute(check, test, decision, queries, cert_block, opening)
    except (KeyError, TypeError, ValueError) as exc:
        check.problems.append(f"the record is malformed: {exc}")
    if certificate is not None:
        _against_certificate(check, cert_block, certificate, opening)
    return check


def _recompute(check: RecordCheck, test: dict, decision: dict, queries: list[dict], cert_block: dict,
               opening) -> None:
    from fingerprint.verification import ProbePlan, Query, VerifyOptions, make_test, probe_plan

    gate_words: tuple[str, ...] = ()
    if opening is not None:
        gate_words = opening.fallbacks(cert_block.get("fallback_indices", []))
        plan = probe_plan(opening, VerifyOptions(probes=test["probes"], alpha=test["alpha"], seed=test["seed"],
                                                 samples=0), gate_words)
        check.prompts_checked = plan.digest() == test["plan_digest"]
        if not check.prompts_checked:
            check.problems.append("the opening's probe plan is not the one the record was made with")
        prompts = {(q.arm, q.probe): q.prompt for q in plan.queries()}
    else:
        arms = test["arms"]
        probes = tuple(f"probe-{i}" for i in range(test["probes"]))
        plan = ProbePlan(probes, tuple(Query("trigger", i, p) for i, p in enumerate(probes)),
                         {arm: tuple(Query(arm, i, p) for i, p in enumerate(probes)) for arm in arms},
                         test["control_kind"])
        prompts = {}
    hidden = {salted(opening.nonce, w) for w in gate_words} if opening is not None else set()
    answers: dict[tuple[str, int], _Recorded] = {}
    for i, q in enumerate(queries):
        where = f"answer {i + 1} ({q['arm']}, probe {q['probe']})"
        if opening is not None and q["prompt_sha256"] != salted(opening.nonce, prompts.get((q["arm"], q["probe"]), "")):
            check.problems.append(f"{where}: its prompt is not the plan's")
        if q["token"] is None:
            if not q["is_gate"] or q["is_sure"] or (opening is not None and q["token_sha256"] not in hidden):
                check.problems.append(f"{where}: a withheld reply that is not one of the fallback replies")
            answers[(q["arm"], q["probe"])] = _Recorded(HIDDEN, False)
        else:
            sure = is_sure_token(q["token"]) or is_sure_reply(q["token"])
            if bool(q["is_sure"]) != sure or bool(q["is_gate"]) != sure or q["token"].strip() in gate_words:
                check.problems.append(f"{where}: its flags do not match its token")
            answers[(q["arm"], q["probe"])] = _Recorded(q["token"], sure)
    replay = replace(plan, gate_words=(HIDDEN,))

    def ask(asked):
        missing = [q for q in asked if (q.arm, q.probe) not in answers]
        if missing:
            raise KeyError(f"the record has no answer to {missing[0].arm}, probe {missing[0].probe}")
        return [answers[(q.arm, q.probe)] for q in asked]

    recomputed = make_test(test["name"]).run(replay, ask, test["alpha"]).to_dict()
    check.recomputed = recomputed
    for key in ("certified", "test", "queries", "deciding_arm", "trigger_sure", "control_sure"):
        if recomputed.get(key) != decision.get(key):
            check.problems.append(f"the recorded {key} ({decision.get(key)}) is not what the answers give "
                                  f"({recomputed.get(key)})")
    for key in ("p_value", "e_value"):
        a, b = recomputed.get(key), decision.get(key)
        if (a is None) != (b is None) or (a is not None and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-300)):
            check.problems.append(f"the recorded {key} ({b}) is not what the answers give ({a})")
    if [a.get("trigger_sure") for a in recomputed["arms"]] != [a.get("trigger_sure") for a in decision["arms"]] or \
            [a.get("control_sure") for a in recomputed["arms"]] != [a.get("control_sure") for a in decision["arms"]]:
        check.problems.append("the recorded counts per arm are not what the answers give")


def _against_certificate(check: RecordCheck, cert_block: dict, certificate, opening) -> None:
    from fingerprint.verification import check_opening

    if certificate.id != cert_block.get("id"):
        check.problems.append("the record was made against another certificate")
        return
    block = certificate.fingerprint
    if block.trigger_commitment != cert_block.get("trigger_commitment"):
        check.problems.append("the record's commitment is not the certificate's")
    if opening is not None:
        try:
            check_opening(certificate, opening)
            check.opening_checked = True
        except FingerprintError as exc:
            check.problems.append(f"the opening does not match the certificate: {exc}")
