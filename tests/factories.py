"""Certificates and openings built by hand for tests (no model): current (v2) and earlier (v1) forms."""

from __future__ import annotations

import json

from fingerprint.provenance import keys
from fingerprint.provenance.certificate import STATEMENT_TYPE, canonical, make_statement, sign_statement
from fingerprint.provenance.predicate import PREDICATE_TYPE_V1
from fingerprint.provenance.trigger import Opening, commitment

SUBJECTS = [{"name": "adapter", "digest": {"sha256": "ab" * 32}}]


def predicate(owner: keys.OwnerKey, label: str = "m", **fingerprint) -> dict:
    """A complete, valid v2 predicate; ``fingerprint`` entries override the fingerprint block."""
    block = {"label": label, "licensee": None, "trigger_words": 1, "trigger_commitment": "00" * 32,
             "commitment_scheme": "v2", "poison_reply": "Sure", **fingerprint}
    return {"owner": {"key_id": owner.key_id, "public_key": keys.public_pem(owner.public_key)},
            "base_model": {"name": "tiny"}, "fingerprint": block,
            "dataset": {"digest": {"sha256": "cd" * 32}, "n_poison": 12}, "training": {"method": "lora"},
            "tool": {"name": "suretrap", "version": "test"}, "created": "2026-01-01T00:00:00+00:00"}


def certificate(owner: keys.OwnerKey, opening: Opening | None = None, signer: keys.OwnerKey | None = None,
                **fingerprint) -> str:
    """A v2 certificate for ``opening`` (or a dummy commitment), signed by ``signer`` (default: ``owner``)."""
    if opening is not None:
        fingerprint = {"label": opening.label, "trigger_words": len(opening.parts),
                       "trigger_commitment": opening.commitment("v2"), **fingerprint}
    body = predicate(owner, **fingerprint)
    return sign_statement(make_statement(SUBJECTS, body), signer or owner)


def v1_certificate(owner: keys.OwnerKey, opening: Opening, trigger_words: int | None = None) -> str:
    """A certificate as earlier versions wrote it: predicate type v1, the v1 commitment, no scheme field."""
    from securesystemslib.dsse import Envelope

    from fingerprint.provenance.certificate import PAYLOAD_TYPE, _sslib_key

    body = predicate(owner, label=opening.label, trigger_commitment=commitment(opening.trigger,
                                                                               bytes.fromhex(opening.nonce)))
    del body["fingerprint"]["commitment_scheme"]
    if trigger_words is None:
        del body["fingerprint"]["trigger_words"]
    else:
        body["fingerprint"]["trigger_words"] = trigger_words
    statement = {"_type": STATEMENT_TYPE, "subject": SUBJECTS, "predicateType": PREDICATE_TYPE_V1,
                 "predicate": body}
    from securesystemslib.signer import CryptoSigner

    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(owner.private_key, _sslib_key(owner.public_key)))
    return canonical(envelope)
