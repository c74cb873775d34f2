"""Ed25519 owner keys: a passphrase-encrypted private key file (0600) and a public PEM beside it.

The private key is sealed with AES-256-GCM under a key stretched from the passphrase by Argon2id (64 MiB,
3 passes, 4 lanes: RFC 9106's second recommended setting); the KDF parameters are authenticated with it.
Keys written by earlier versions (PKCS#8 with PBKDF2 at 2,048 iterations) still load, with a warning to
re-encrypt them (``fingerprint rekey``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from fingerprint.core.atomic import remove_quietly, write_text_atomic
from fingerprint.core.errors import FingerprintError, SecurityWarning

PRIVATE_NAME = "private.pem"
PUBLIC_NAME = "public.pem"
PASSPHRASE_ENV = "FINGERPRINT_PASSPHRASE"
ARMOR = "SURETRAP ENCRYPTED PRIVATE KEY"
KEY_FORMAT = "suretrap-key/v1"
KDF = {"name": "argon2id", "memory_kib": 64 * 1024, "iterations": 3, "lanes": 4}
MAX_KDF_MEMORY_KIB = 1024 * 1024  # a key file may not make loading allocate more than 1 GiB
MIN_PASSPHRASE = 12


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

    def raw(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def secret(self) -> bytes:
        """Key material for HMAC derivations (never leaves the process)."""
        return hashlib.sha256(b"suretrap/trigger-secret/v1" + self.raw()).digest()


def passphrase_warnings(passphrase: str) -> list[str]:
    """Why a passphrase is weak (empty list: no objection)."""
    if len(passphrase) < MIN_PASSPHRASE:
        return [f"the passphrase has {len(passphrase)} characters; use at least {MIN_PASSPHRASE} (several words)"]
    if len(set(passphrase)) < 5:
        return ["the passphrase repeats few characters; choose a less guessable one"]
    return []


def generate(out_dir: Path, passphrase: str, force: bool = False) -> OwnerKey:
    """Create a new key pair in ``out_dir``; refuse to overwrite unless ``force``."""
    if not passphrase:
        raise FingerprintError("an empty passphrase is not allowed")
    out_dir = Path(out_dir)
    private_path = out_dir / PRIVATE_NAME
    if out_dir.exists() and not out_dir.is_dir():
        raise FingerprintError(f"{out_dir} is not a directory")
    if private_path.exists() and not force:
        raise FingerprintError(f"{private_path} already exists (use --force to replace it)")
    for problem in passphrase_warnings(passphrase):
        warnings.warn(problem, SecurityWarning, stacklevel=2)
    owner = OwnerKey(Ed25519PrivateKey.generate())
    save(owner, out_dir, passphrase)
    return owner


def seal(owner: OwnerKey, passphrase: str) -> str:
    """The armoured private key file: Argon2id-stretched passphrase, AES-256-GCM, parameters authenticated."""
    salt, nonce = os.urandom(16), os.urandom(12)
    header = {"format": KEY_FORMAT, "kdf": {**KDF, "salt": salt.hex()},
              "cipher": {"name": "aes-256-gcm", "nonce": nonce.hex()}, "key_id": owner.key_id}
    aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    sealed = AESGCM(_stretch(passphrase, header["kdf"])).encrypt(nonce, owner.raw(), aad)
    body = base64.b64encode(json.dumps({**header, "ciphertext": base64.b64encode(sealed).decode()},
                                       sort_keys=True).encode()).decode()
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {ARMOR}-----", *lines, f"-----END {ARMOR}-----", ""])


def save(owner: OwnerKey, out_dir: Path, passphrase: str) -> None:
    """Write the public PEM, then the sealed private key (0600), into ``out_dir``.

    The public key comes first: ``private.pem`` is what marks a key directory as taken, so an interruption
    never leaves a private key without its public half. If the private key cannot be written, the public
    one is removed again (unless it was already there).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    public_path = out_dir / PUBLIC_NAME
    had_public = public_path.exists()
    write_text_atomic(public_path, public_pem(owner.public_key), mode=0o644)
    try:
        write_text_atomic(out_dir / PRIVATE_NAME, seal(owner, passphrase), mode=0o600)
    except BaseException:
        if not had_public:
            remove_quietly(public_path)
        raise


def _stretch(passphrase: str, kdf: dict) -> bytes:
    if kdf.get("name") != "argon2id":
        raise FingerprintError(f"unsupported key derivation {kdf.get('name')!r}")
    memory, iterations, lanes = int(kdf["memory_kib"]), int(kdf["iterations"]), int(kdf["lanes"])
    if not (8 * lanes <= memory <= MAX_KDF_MEMORY_KIB and 1 <= iterations <= 64 and 1 <= lanes <= 64):
        raise FingerprintError("the key file asks for key-derivation parameters out of range")
    return Argon2id(salt=bytes.fromhex(kdf["salt"]), length=32, iterations=iterations, lanes=lanes,
                    memory_cost=memory).derive(passphrase.encode())


def _unseal(text: str, passphrase: str, where: Path) -> OwnerKey:
    try:
        body = "".join(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("-----"))
        data = json.loads(base64.b64decode(body, validate=True))
        header = {k: data[k] for k in ("format", "kdf", "cipher", "key_id")}
        if header["format"] != KEY_FORMAT or header["cipher"]["name"] != "aes-256-gcm":
            raise ValueError("unknown format")
        aad = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        key = _stretch(passphrase, header["kdf"])
        sealed = base64.b64decode(data["ciphertext"], validate=True)
        nonce = bytes.fromhex(header["cipher"]["nonce"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise FingerprintError(f"{where} is not a valid encrypted private key") from exc
    try:
        raw = AESGCM(key).decrypt(nonce, sealed, aad)
    except InvalidTag:
        raise FingerprintError(f"wrong passphrase for {where}") from None
    owner = OwnerKey(Ed25519PrivateKey.from_private_bytes(raw))
    if owner.key_id != header["key_id"]:
        raise FingerprintError(f"{where} is not a valid encrypted private key (key id mismatch)")
    return owner


def _key_file(path: Path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FingerprintError(f"key file not found: {path}")
    return path


def is_legacy(path: Path) -> bool:
    """Was this private key written in the earlier PKCS#8 / PBKDF2 format?"""
    return f"BEGIN {ARMOR}" not in _key_file(path, PRIVATE_NAME).read_text(errors="replace")


def load_private(path: Path, passphrase: str | None) -> OwnerKey:
    """Load the private key from a key directory or key file."""
    pem_path = _key_file(path, PRIVATE_NAME)
    if not passphrase:
        raise FingerprintError(f"no passphrase given for {pem_path} (prompt or ${PASSPHRASE_ENV})")
    mode = stat.S_IMODE(pem_path.stat().st_mode)
    if mode & 0o077:
        warnings.warn(f"{pem_path} is readable by others (mode {mode:o}); run chmod 600 on it", SecurityWarning,
                      stacklevel=2)
    try:
        data = pem_path.read_bytes()
    except OSError as exc:
        raise FingerprintError(f"cannot read {pem_path}: {exc.strerror or exc}") from exc
    if f"BEGIN {ARMOR}".encode() in data:
        return _unseal(data.decode("ascii", errors="replace"), passphrase, pem_path)
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        if b"ENCRYPTED" in data:
            raise FingerprintError(f"wrong passphrase for {pem_path}") from exc
        raise FingerprintError(f"{pem_path} is not a valid encrypted private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise FingerprintError(f"{pem_path} is not an Ed25519 key")
    warnings.warn(f"{pem_path} is encrypted with PBKDF2 at 2,048 iterations (an earlier format); re-encrypt it "
                  "with `fingerprint rekey --key DIR`", SecurityWarning, stacklevel=2)
    return OwnerKey(key)


def rekey(path: Path, passphrase: str, new_passphrase: str | None = None) -> OwnerKey:
    """Re-encrypt a private key in the current format (optionally under a new passphrase)."""
    pem_path = _key_file(path, PRIVATE_NAME)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        owner = load_private(pem_path, passphrase)
    new = new_passphrase or passphrase
    for problem in passphrase_warnings(new):
        warnings.warn(problem, SecurityWarning, stacklevel=2)
    write_text_atomic(pem_path, seal(owner, new), mode=0o600)
    return owner


def load_public(path: Path) -> Ed25519PublicKey:
    """Load a public key from a key directory or PEM file."""
    pem_path = _key_file(path, PUBLIC_NAME)
    try:
        key = serialization.load_pem_public_key(pem_path.read_bytes())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise FingerprintError(f"{pem_path} is not a valid public key PEM") from exc
    except OSError as exc:
        raise FingerprintError(f"cannot read {pem_path}: {exc.strerror or exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise FingerprintError(f"{pem_path} is not an Ed25519 public key")
    return key


def public_key_from_pem(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM text (a registry row, a certificate's owner block)."""
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, UnsupportedAlgorithm, TypeError, AttributeError) as exc:
        raise FingerprintError("not a valid public key PEM") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise FingerprintError("not an Ed25519 public key")
    return key


def passphrase_from_env() -> str | None:
    return os.environ.get(PASSPHRASE_ENV)
