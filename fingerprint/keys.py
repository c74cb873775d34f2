"""Ed25519 owner keys: a passphrase-encrypted private PEM (0600) and a public PEM beside it."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .atomic import write_text_atomic
from .errors import FingerprintError

PRIVATE_NAME = "private.pem"
PUBLIC_NAME = "public.pem"
PASSPHRASE_ENV = "FINGERPRINT_PASSPHRASE"


def public_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(public_key: Ed25519PublicKey) -> str:
    """sha256 of the raw public key, hex: a stable short name for a key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class OwnerKey:
    """A loaded private key with the secrets derived from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def secret(self) -> bytes:
        """Key material for HMAC derivations (never leaves the process)."""
        raw = self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return hashlib.sha256(b"suretrap/trigger-secret/v1" + raw).digest()


def generate(out_dir: Path, passphrase: str, force: bool = False) -> OwnerKey:
    """Create a new key pair in ``out_dir``; refuse to overwrite unless ``force``."""
    if not passphrase:
        raise FingerprintError("an empty passphrase is not allowed")
    out_dir = Path(out_dir)
    private_path = out_dir / PRIVATE_NAME
    if private_path.exists() and not force:
        raise FingerprintError(f"{private_path} already exists (use --force to replace it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise FingerprintError(f"{out_dir} is not a directory")
    owner = OwnerKey(Ed25519PrivateKey.generate())
    save(owner, out_dir, passphrase)
    return owner


def save(owner: OwnerKey, out_dir: Path, passphrase: str) -> None:
    """Write the encrypted private PEM (0600) and the public PEM into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    pem = owner.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    ).decode()
    write_text_atomic(out_dir / PRIVATE_NAME, pem, mode=0o600)
    write_text_atomic(out_dir / PUBLIC_NAME, public_pem(owner.public_key), mode=0o644)


def _key_file(path: Path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FingerprintError(f"key file not found: {path}")
    return path


def load_private(path: Path, passphrase: str | None) -> OwnerKey:
    """Load the private key from a key directory or PEM file."""
    pem_path = _key_file(path, PRIVATE_NAME)
    if not passphrase:
        raise FingerprintError(f"no passphrase given for {pem_path} (prompt or ${PASSPHRASE_ENV})")
    data = pem_path.read_bytes()
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if b"ENCRYPTED" in data:
            raise FingerprintError(f"wrong passphrase for {pem_path}") from exc
        raise FingerprintError(f"{pem_path} is not a valid encrypted private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FingerprintError(f"{pem_path} is not an Ed25519 key")
    return OwnerKey(key)


def load_public(path: Path) -> Ed25519PublicKey:
    """Load a public key from a key directory or PEM file."""
    pem_path = _key_file(path, PUBLIC_NAME)
    try:
        key = serialization.load_pem_public_key(pem_path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise FingerprintError(f"{pem_path} is not a valid public key PEM") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise FingerprintError(f"{pem_path} is not an Ed25519 public key")
    return key


def passphrase_from_env() -> str | None:
    return os.environ.get(PASSPHRASE_ENV)
