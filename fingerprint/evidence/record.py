"""A signed verification record: what was asked, what came back, and the decision, signed by the verifier.

The record is an in-toto Statement in a DSSE envelope, signed with the verifier's key (an ordinary ``keygen``
key). Its subject is the suspect; its predicate holds the certificate it was tested against, how the signer of
that certificate was trusted, the test (name, alpha, seed, plan digest), every query and its answer, the decision
and the tool. Nothing in it reveals the trigger: prompts appear as salted digests (sha256 of the commitment nonce
and the prompt), and an answer that is one of the secret fallback replies appears as a salted digest too. Anyone
with the opening can recompute both; ``--attach-opening`` puts the opening in the record on purpose.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fingerprint import __version__
from fingerprint.core.errors import FingerprintError
from fingerprint.core.loading import file_sha256
from fingerprint.core.sure import token_text
from fingerprint.provenance.certificate import PAYLOAD_TYPE, STATEMENT_TYPE, canonical, now_iso, owner_block
from fingerprint.provenance.keys import OwnerKey

RECORD_TYPE = "https://github.com/suretrap/suretrap/verification-record/v1"


def salted(nonce_hex: str, text: str) -> str:
    """sha256(nonce || text): a digest only the holders of the opening can recompute."""
    return hashlib.sha256(bytes.fromhex(nonce_hex) + text.encode()).hexdigest()


def suspect_subject(request, describe: dict) -> tuple[list[dict], dict]:
    """The suspect as a statement subject (weights digest, or endpoint identity) and what else identifies it."""
    from fingerprint.core.loading import resolve
    from fingerprint.provenance.digest import directory_digest

    info = {"model": request.model, "backend": request.backend, "adapter": request.adapter, "describe": describe}
    if request.backend == "openai":
        name = f"{describe.get('base_url', '')}#{request.model}"
        return [{"name": name, "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}], info
    subjects = []
    path = Path(resolve(request.model).path)
    if path.is_dir() and any(path.glob("*.safetensors")):
        subjects.append({"name": "model", "digest": {"sha256": directory_digest(path)}})
    elif path.is_file():
        subjects.append({"name": "model", "digest": {"sha256": file_sha256(path)}})
    else:  # a hub id that was not on disk: its name only
        name_digest = hashlib.sha256(request.model.encode()).hexdigest()
        subjects.append({"name": request.model, "digest": {"sha256": name_digest}})
    if request.adapter:
        subjects.append({"name": "adapter", "digest": {"sha256": directory_digest(Path(request.adapter))}})
    return subjects, info


def build_statement(outcome, opening, verifier: OwnerKey, describe: dict, attach_opening: bool = False) -> dict:
    """The in-toto Statement of one verification outcome (see the module docstring)."""
    report, cert, request = outcome.report, outcome.certificate, outcome.request
    plan = report.plan
    prompts = {(q.arm, q.probe): q.prompt for q in plan.queries()}
    queries = []
    for answer in report.transcript:
        hidden = token_text(answer.token).strip() in plan.gate_words
        queries.append({"arm": answer.arm, "probe": answer.probe,
                        "prompt_sha256": salted(opening.nonce, prompts[(answer.arm, answer.probe)]),
                        "token": None if hidden else answer.token,
                        "token_sha256": salted(opening.nonce, token_text(answer.token).strip()) if hidden else None,
                        "is_sure": answer.is_sure, "is_gate": answer.is_gate, "p_sure": answer.p_sure,
                        "at": answer.at})
    block = cert.fingerprint
    subjects, suspect = suspect_subject(request, describe)
    opening_block = {"checked": True, "commitment_scheme": block.commitment_scheme}
    if attach_opening:
        opening_block.update(trigger=opening.trigger, nonce=opening.nonce, label=opening.label)
    samples = [] if not attach_opening else report.samples  # sample replies may repeat the prompt's words
    predicate = {
        "verifier": owner_block(verifier),
        "certificate": {"id": cert.id, "key_id": cert.key_id, "label": block.label, "licensee": block.licensee,
                        "trigger_words": block.trigger_words, "commitment_scheme": block.commitment_scheme,
                        "trigger_commitment": block.trigger_commitment,
                        "fallback_indices": list(block.fallback_indices), "base_model": cert.info.base_model.name,
                        "created": cert.info.created.isoformat()},
        "signer_trust": outcome.trust.to_dict(),
        "opening": opening_block,
        "suspect": suspect,
        "test": {"name": report.decision.test, "alpha": report.decision.alpha, "seed": request.options.seed,
                 "probes": len(plan.probes), "plan_digest": plan.digest(), "rule": report.decision.rule,
                 "control_kind": plan.control_kind, "arms": plan.arms, "fallback_replies": len(plan.gate_words)},
        "queries": queries,
        "decision": report.decision.to_dict(),
        "samples": samples,
        "usage": report.usage,
        "tool": {"name": "suretrap", "version": __version__},
        "created": now_iso(),
    }
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": RECORD_TYPE, "predicate": predicate}


def sign_record(statement: dict, verifier: OwnerKey) -> str:
    """The record's text: the canonical DSSE envelope signed with the verifier's key."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    from fingerprint.provenance.certificate import _sslib_key

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(verifier.private_key, _sslib_key(verifier.public_key)))
    return canonical(envelope)


def write_record(outcome, opening, verifier: OwnerKey, path: Path, describe: dict,
                 attach_opening: bool = False) -> tuple[Path, str]:
    """Sign and write the record (0600 when it carries the opening); returns (path, sha256 of the file)."""
    from fingerprint.core.atomic import write_text_atomic

    if not outcome.report.transcript:
        raise FingerprintError("this verification kept no answers to record")
    text = sign_record(build_statement(outcome, opening, verifier, describe, attach_opening), verifier)
    write_text_atomic(Path(path), text, mode=0o600 if attach_opening else 0o644)
    return Path(path), hashlib.sha256(text.encode()).hexdigest()
