"""The registry: a small database of keys, certificates and verification records."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, Select, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from fingerprint.core.errors import FingerprintError
from fingerprint.core.paths import data_dir

from .engine import check_writable, locked, make_engine, migrate
from .models import Certificate, Key, Verification

ENV_URL = "FINGERPRINT_REGISTRY"
MIN_PREFIX = 6
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]+")
_VERIFICATION_ID = re.compile(r"v(\d+)")
_REQUIRED_VERIFICATION = (
    "certificate_digest", "backend", "model", "trigger_sure", "trigger_total",
    "control_sure", "control_total", "queries", "p_value", "alpha", "certified",
)
_OPTIONAL_VERIFICATION = ("certificate_id", "adapter", "details", "created_at", "test", "record_path",
                          "record_digest")


def default_url() -> str:
    """``$FINGERPRINT_REGISTRY``, else a SQLite file ``registry.db`` in the data directory."""
    return os.environ.get(ENV_URL) or f"sqlite:///{(data_dir() / 'registry.db').as_posix()}"


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (of the DBAPI error, if wrapped)."""
    orig = getattr(exc, "orig", None) or exc
    for line in str(orig).splitlines():
        if line.strip():
            return line.strip()
    return type(orig).__name__


def _parse_url(url: str) -> URL:
    """Parse a database URL; a bare ``postgresql://`` uses the psycopg (3) driver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        shown = re.sub(r":[^:@/]*@", ":***@", url)
        raise FingerprintError(f"bad registry URL {shown!r}: e.g. sqlite:///dir/registry.db") from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _stamp(value: datetime) -> str:
    """ISO 8601 in UTC (SQLite hands back naive datetimes, which are UTC here)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat()


def _certificate_dict(row: Certificate) -> dict[str, Any]:
    return {
        "id": row.id, "key_id": row.key_id, "base_model": row.base_model, "label": row.label,
        "licensee": row.licensee, "subject": row.subject, "envelope": row.envelope,
        "selfcheck": row.selfcheck, "created_at": _stamp(row.created_at),
    }


def _verification_dict(row: Verification) -> dict[str, Any]:
    fields = ("id", "certificate_id") + _REQUIRED_VERIFICATION + ("adapter", "test", "record_path", "record_digest",
                                                                  "details")
    out = {name: getattr(row, name) for name in fields}
    out["certified"] = bool(row.certified)
    out["created_at"] = _stamp(row.created_at)
    return out


def _hex_id(value: str, what: str) -> str:
    """Check (and lower-case) a hex sha256 identifier."""
    norm = value.strip().lower() if isinstance(value, str) else ""
    if not _HEX64.fullmatch(norm):
        raise FingerprintError(f"{what} must be a hex sha256 digest (64 hex characters), got {value!r}")
    return norm


class Registry:
    """Keys, certificates and verifications in a SQLAlchemy database (SQLite or PostgreSQL)."""

    def __init__(self, url: str | None = None) -> None:
        raw = url or default_url()
        parsed = _parse_url(raw)
        self.url = parsed.render_as_string(hide_password=True)
        try:
            self._engine: Engine = make_engine(parsed)
        except ImportError as exc:
            raise FingerprintError(
                f"no database driver for {self.url} ({exc.name or exc}); for PostgreSQL: "
                "pip install 'suretrap[postgres]'"
            ) from exc
        except ArgumentError as exc:
            raise FingerprintError(f"bad registry URL {self.url}: {_one_line(exc)}") from exc
        try:
            migrate(self._engine)
        except (SQLAlchemyError, OSError) as exc:
            self._engine.dispose()
            raise FingerprintError(f"cannot open registry {self.url}: {_one_line(exc)}") from exc
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def check_writable(self) -> None:
        """Fail now (FingerprintError) if nothing could be recorded here: before minutes of probing or training."""
        try:
            check_writable(self._engine)
        except SQLAlchemyError as exc:
            raise FingerprintError(f"registry {self.url} is not writable: {_one_line(exc)}") from exc

    @contextmanager
    def locked(self) -> Iterator[Any]:
        """A connection holding the database-wide lock (for DDL such as a sweep's table)."""
        try:
            with locked(self._engine) as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise FingerprintError(f"registry {self.url}: {_one_line(exc)}") from exc

    def __repr__(self) -> str:
        return f"Registry({self.url!r})"

    def shareable_url(self) -> str:
        """The URL other processes open this registry with: password kept, a SQLite path made absolute."""
        parsed = self._engine.url
        if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:" \
                and not parsed.database.startswith("file:"):
            parsed = parsed.set(database=os.path.abspath(parsed.database))
        return parsed.render_as_string(hide_password=False)

    @property
    def shared_across_machines(self) -> bool:
        """Whether processes on other machines can reach this registry (not a SQLite file)."""
        return self._engine.url.get_backend_name() != "sqlite"

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session in a transaction, committed on success; database failures become FingerprintError."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except FingerprintError:
            raise
        except IntegrityError:
            raise  # callers decide (concurrent insert of the same row)
        except SQLAlchemyError as exc:
            raise FingerprintError(f"registry {self.url}: {_one_line(exc)}") from exc

    # -- keys ---------------------------------------------------------------------------------------

    def add_key(self, key_id: str, public_pem: str) -> None:
        """Register an owner's public key; a no-op if it is already there."""
        key_id = _hex_id(key_id, "key id")
        for attempt in range(2):
            try:
                with self._session() as s:
                    row = s.get(Key, key_id)
                    if row is None:
                        s.add(Key(key_id=key_id, public_pem=public_pem))
                    elif row.public_pem.strip() != public_pem.strip():
                        raise FingerprintError(f"key {key_id} is already registered with another public key")
                return
            except IntegrityError:
                if attempt:
                    raise

    def public_key(self, key_id: str) -> str:
        """The PEM of a registered key (FingerprintError if unknown)."""
        pem = self.find_key(key_id)
        if pem is None:
            raise FingerprintError(f"no key {key_id} in the registry")
        return pem

    def find_key(self, key_id: str) -> str | None:
        """The PEM of a registered key, or None."""
        with self._session() as s:
            row = s.get(Key, key_id.strip().lower())
            return None if row is None else row.public_pem

    def has_certificate(self, cert_id: str) -> bool:
        with self._session() as s:
            return s.get(Certificate, cert_id.strip().lower()) is not None

    # -- certificates -------------------------------------------------------------------------------

    def add_certificate(
        self,
        *,
        cert_id: str,
        key_id: str,
        base_model: str,
        label: str,
        licensee: str | None,
        subject: list[dict[str, Any]],
        envelope: str,
        selfcheck: dict[str, Any] | None = None,
    ) -> str:
        """Register a certificate and return its id; a no-op (bar a new selfcheck) if already there."""
        cert_id = _hex_id(cert_id, "certificate id")
        key_id = _hex_id(key_id, "key id")
        for attempt in range(2):
            try:
                with self._session() as s:
                    if s.get(Key, key_id) is None:
                        raise FingerprintError(f"key {key_id} is not registered; add the public key first")
                    row = s.get(Certificate, cert_id)
                    if row is None:
                        s.add(Certificate(
                            id=cert_id, key_id=key_id, base_model=base_model, label=label,
                            licensee=licensee, subject=subject, envelope=envelope, selfcheck=selfcheck,
                        ))
                    elif selfcheck is not None:
                        row.selfcheck = selfcheck
                return cert_id
            except IntegrityError:
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def set_selfcheck(self, cert_id: str, selfcheck: dict[str, Any]) -> None:
        """Store the owner's self-check result on a registered certificate."""
        with self._session() as s:
            row = s.get(Certificate, cert_id.strip().lower())
            if row is None:
                raise FingerprintError(f"no certificate {cert_id} in the registry")
            row.selfcheck = selfcheck

    def list_certificates(self) -> list[dict[str, Any]]:
        """All certificates, oldest first."""
        with self._session() as s:
            rows = s.scalars(select(Certificate).order_by(Certificate.created_at, Certificate.id))
            return [_certificate_dict(r) for r in rows]

    def licensees(self, key_id: str) -> list[tuple[str | None, str]]:
        """``(licensee, certificate id)`` of every certificate issued under a key, oldest first."""
        with self._session() as s:
            rows = s.execute(
                select(Certificate.licensee, Certificate.id)
                .where(Certificate.key_id == key_id.strip().lower())
                .order_by(Certificate.created_at, Certificate.id)
            )
            return [(licensee, cert_id) for licensee, cert_id in rows]

    # -- verifications ------------------------------------------------------------------------------

    def add_verification(self, **fields: Any) -> int:
        """Record a verification and return its number (shown as ``v<N>``).

        Required: certificate_digest, backend, model, trigger_sure, trigger_total, control_sure,
        control_total, queries, p_value, alpha, certified; optional: adapter, details, test (the decision
        rule whose counts these are), certificate_id (defaults to the digest when that certificate is
        registered here, else NULL).
        """
        unknown = set(fields) - set(_REQUIRED_VERIFICATION) - set(_OPTIONAL_VERIFICATION)
        missing = [name for name in _REQUIRED_VERIFICATION if fields.get(name) is None]
        if unknown or missing:
            raise TypeError(f"add_verification: unknown fields {sorted(unknown)}, missing {missing}")
        fields["certificate_digest"] = _hex_id(fields["certificate_digest"], "certificate digest")
        fields["certified"] = bool(fields["certified"])
        fields.setdefault("details", {})
        with self._session() as s:
            cert_id = fields.get("certificate_id")
            if cert_id is None:
                known = s.get(Certificate, fields["certificate_digest"]) is not None
                fields["certificate_id"] = fields["certificate_digest"] if known else None
            else:
                fields["certificate_id"] = cert_id = cert_id.strip().lower()
                if s.get(Certificate, cert_id) is None:
                    raise FingerprintError(f"no certificate {cert_id} in the registry")
            row = Verification(**fields)
            s.add(row)
            s.flush()
            return row.id

    def set_record(self, verification_id: int, path: str, digest: str) -> None:
        """Link a verification to its signed record file."""
        with self._session() as s:
            row = s.get(Verification, verification_id)
            if row is None:
                raise FingerprintError(f"no verification v{verification_id} in the registry")
            row.record_path, row.record_digest = path, digest

    def list_verifications(self, certificate_id: str | None = None,
                           monitor_run: str | None = None) -> list[dict[str, Any]]:
        """All verifications (or those of one certificate, matched by digest), oldest first.

        ``monitor_run``: only the records a ``fingerprint monitor`` run of that name wrote
        (``details["monitor"]["run"]``).
        """
        query = _verifications_of(certificate_id)
        if monitor_run is not None:
            query = query.where(Verification.details["monitor"]["run"].as_string() == monitor_run)
        with self._session() as s:
            return [_verification_dict(r) for r in s.scalars(query)]

    # -- lookup -------------------------------------------------------------------------------------

    def get(self, record_id: str) -> dict[str, Any]:
        """A record by id: a certificate id or unique prefix (>= 6 hex chars), or ``v<N>``.

        The result has ``kind`` ("certificate" or "verification"); a certificate also carries
        its ``verifications``.
        """
        token = record_id.strip().lower()
        match = _VERIFICATION_ID.fullmatch(token)
        with self._session() as s:
            if match:
                row = s.get(Verification, int(match.group(1)))
                if row is None:
                    raise FingerprintError(f"no verification {token} in the registry")
                return {"kind": "verification", **_verification_dict(row)}
            if not _HEX.fullmatch(token) or len(token) < MIN_PREFIX:
                raise FingerprintError(
                    f"bad record id {record_id!r}: give a certificate id (at least {MIN_PREFIX} hex "
                    "characters) or v<N> for a verification"
                )
            if len(token) > 64:
                raise FingerprintError(f"no certificate {token} in the registry")
            rows = list(s.scalars(
                select(Certificate).where(Certificate.id.startswith(token)).order_by(Certificate.id).limit(6)
            ))
            if not rows:
                raise FingerprintError(f"no certificate {token} in the registry")
            if len(rows) > 1:
                shown = ", ".join(r.id[:12] for r in rows[:5]) + (", ..." if len(rows) > 5 else "")
                raise FingerprintError(f"certificate id prefix {token} is ambiguous: {shown}")
            cert = rows[0]
            checks = [_verification_dict(v) for v in s.scalars(_verifications_of(cert.id))]
            return {"kind": "certificate", **_certificate_dict(cert), "verifications": checks}


def _verifications_of(digest: str | None) -> Select[tuple[Verification]]:
    """Verifications of one certificate (by digest), or all of them, oldest first."""
    query = select(Verification).order_by(Verification.id)
    return query if digest is None else query.where(Verification.certificate_digest == digest.strip().lower())


