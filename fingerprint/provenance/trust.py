"""Whose signature a verdict rests on: the trust decision for a certificate's signer is always explicit.

- ``owner``: the owner verifies with their own private key, so the certificate must carry their signature;
- ``pinned``: ``--pubkey`` named the expected signer;
- ``registry``: the signing key is registered in the registry (``keygen``, ``registry add --pubkey``);
- ``unpinned``: only the key the certificate names itself. Anyone can re-sign a copy of a commitment with a
  key of their own, so such a verdict proves the gate but not whose it is; it carries a warning.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fingerprint.core.errors import FingerprintError, InvalidCertificate
from fingerprint.provenance.certificate import Certificate, load_certificate
from fingerprint.provenance.keys import OwnerKey, load_public, public_key_from_pem, public_pem

UNPINNED_WARNING = ("the certificate's signer is not pinned: it is only the key the certificate names, which anyone "
                    "can replace by re-signing; pin it with --pubkey or register it (registry add --pubkey)")


@dataclass(frozen=True)
class SignerTrust:
    how: str  # owner | pinned | registry | unpinned
    key_id: str

    @property
    def pinned(self) -> bool:
        return self.how != "unpinned"

    @property
    def warning(self) -> str | None:
        return None if self.pinned else UNPINNED_WARNING

    def to_dict(self) -> dict:
        return {"signer_trust": self.how, "signer_pinned": self.pinned, "signer_key_id": self.key_id}


def load_trusted(cert_path: Path, *, owner: OwnerKey | None = None, pubkey: Path | None = None,
                 registry=None) -> tuple[Certificate, SignerTrust]:
    """Load a certificate and decide how far its signer is trusted (see the module docstring)."""
    if owner is not None:
        pinned = load_public(pubkey) if pubkey else owner.public_key
        try:
            cert = load_certificate(cert_path, pinned)
        except InvalidCertificate as exc:
            raise InvalidCertificate(f"{exc} (a certificate you verify as owner must carry your key's signature)") \
                from None
        return cert, SignerTrust("owner" if pubkey is None else "pinned", cert.key_id)
    if pubkey is not None:
        cert = load_certificate(cert_path, load_public(pubkey))
        return cert, SignerTrust("pinned", cert.key_id)
    cert = load_certificate(cert_path)
    if registry is not None:
        pem = registry.find_key(cert.key_id)
        if pem is not None:
            if public_pem(public_key_from_pem(pem)).strip() != cert.info.owner.public_key.strip():
                raise FingerprintError(f"key {cert.key_id[:16]}… is registered with another public key")
            return cert, SignerTrust("registry", cert.key_id)
    return cert, SignerTrust("unpinned", cert.key_id)  # callers show ``trust.warning`` with the verdict
