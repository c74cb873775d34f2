"""Fingerprint certificates: in-toto Statements in DSSE envelopes signed with the owner's Ed25519 key.

The certificate file is the envelope's canonical JSON; ``verify_certificate`` rejects any other byte
sequence, so a change to any byte (signature, payload, key id or formatting) is caught.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

from fingerprint.core.errors import FingerprintError, InvalidCertificate
from fingerprint.provenance.keys import OwnerKey, key_id, public_pem
from fingerprint.provenance.predicate import PREDICATE_TYPE, PREDICATE_TYPES, Predicate, Subject, parse_subjects

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def _sslib_key(public_key: Ed25519PublicKey) -> SSlibKey:
    return SSlibKey.from_crypto(public_key, keyid=key_id(public_key))


def canonical(envelope: Envelope) -> str:
    return json.dumps(envelope.to_dict(), indent=2, sort_keys=True) + "\n"


def make_statement(subjects: list[dict], predicate: dict | Predicate) -> dict:
    """An in-toto v1 Statement of the current predicate type; ``subjects`` are ``{"name", "digest": {"sha256"}}``.

    The predicate is validated first, so a certificate that could not be read back is never signed.
    """
    data = predicate.to_dict() if isinstance(predicate, Predicate) else predicate
    Predicate.from_dict(data, PREDICATE_TYPE)
    parse_subjects(subjects)
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": data}


def sign_statement(statement: dict, owner: OwnerKey) -> str:
    """Sign a statement; returns the certificate text (canonical envelope JSON)."""
    payload = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    envelope = Envelope(payload=payload, payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(owner.private_key, _sslib_key(owner.public_key)))
    return canonical(envelope)


@dataclass(frozen=True)
class Certificate:
    """A verified certificate: its statement, the validated predicate and the key that signed it."""

    statement: dict
    key_id: str
    text: str
    info: Predicate
    subject_list: tuple[Subject, ...] = ()

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def predicate(self) -> dict:
        return self.statement["predicate"]

    @property
    def subjects(self) -> list[dict]:
        return self.statement["subject"]

    @property
    def created(self) -> datetime:
        return self.info.created

    @property
    def fingerprint(self):
        """The signed fingerprint block (label, trigger words, commitment and its scheme)."""
        return self.info.fingerprint


def _parse(text: str) -> tuple[Envelope, dict]:
    try:
        envelope = Envelope.from_dict(json.loads(text))
        same = canonical(envelope) == text
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise InvalidCertificate("not a DSSE envelope") from exc
    if not same:
        raise InvalidCertificate("certificate bytes differ from the signed canonical form (modified?)")
    if envelope.payload_type != PAYLOAD_TYPE:
        raise InvalidCertificate(f"unexpected payload type {envelope.payload_type!r}")
    try:
        statement = json.loads(envelope.payload)
    except (ValueError, RecursionError) as exc:
        raise InvalidCertificate("payload is not JSON") from exc
    if not isinstance(statement, dict) or not isinstance(statement.get("predicate"), dict):
        raise InvalidCertificate("payload is not an in-toto statement")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") not in PREDICATE_TYPES:
        raise InvalidCertificate("payload is not a suretrap fingerprint statement")
    return envelope, statement


def verify_certificate(text: str, public_key: Ed25519PublicKey | None = None) -> Certificate:
    """Check the signature; against ``public_key`` if given, else the owner key named in the predicate.

    Without ``public_key`` the result only proves the certificate is intact and self-consistent:
    trust in the key must come from elsewhere (the registry, or ``--pubkey``).
    """
    envelope, statement = _parse(text)
    if public_key is None:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            public_key = load_pem_public_key(statement["predicate"]["owner"]["public_key"].encode())
        except (KeyError, ValueError, TypeError, AttributeError, UnsupportedAlgorithm) as exc:
            raise InvalidCertificate("certificate names no valid owner public key") from exc
        if not isinstance(public_key, Ed25519PublicKey):
            raise InvalidCertificate("owner key is not Ed25519")
    try:
        envelope.verify([_sslib_key(public_key)], 1)
    except Exception as exc:  # securesystemslib raises VerificationError, or ValueError on bad keys
        raise InvalidCertificate("signature does not verify with the given public key") from exc
    owner = statement["predicate"].get("owner")
    if not isinstance(owner, dict) or owner.get("key_id") != key_id(public_key):
        raise InvalidCertificate("certificate's owner key id does not match the signing key")
    info = Predicate.from_dict(statement["predicate"], statement["predicateType"])
    subjects = parse_subjects(statement.get("subject"))
    return Certificate(statement=statement, key_id=key_id(public_key), text=text, info=info,
                       subject_list=tuple(subjects))


def load_certificate(path: Path, public_key: Ed25519PublicKey | None = None) -> Certificate:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FingerprintError(f"certificate not found: {path}") from exc
    except (UnicodeDecodeError, IsADirectoryError, NotADirectoryError) as exc:
        raise InvalidCertificate(f"{path} is not a certificate file") from exc
    except OSError as exc:
        raise FingerprintError(f"cannot read certificate {path}: {exc.strerror or exc}") from exc
    return verify_certificate(text, public_key)


def owner_block(owner: OwnerKey) -> dict:
    return {"key_id": owner.key_id, "public_key": public_pem(owner.public_key)}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
