"""ORM tables of the registry: owners' keys, fingerprint certificates and verification records."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQL NULL (not JSON ``null``) for a missing value; works on SQLite and PostgreSQL alike.
NullableJSON = JSON(none_as_null=True)


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base of the registry tables."""


class Key(Base):
    """An owner's Ed25519 public key."""

    __tablename__ = "keys"

    key_id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex sha256 of the raw key
    public_pem: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Certificate(Base):
    """A signed fingerprint certificate (a DSSE envelope) issued under a key."""

    __tablename__ = "certificates"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # hex sha256 of the envelope bytes
    key_id: Mapped[str] = mapped_column(ForeignKey("keys.key_id"), index=True)
    base_model: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(Text)
    licensee: Mapped[str | None] = mapped_column(Text, nullable=True)
    subject: Mapped[list[dict[str, Any]]] = mapped_column(JSON)  # [{"name": ..., "digest": ...}]
    envelope: Mapped[str] = mapped_column(Text)
    selfcheck: Mapped[dict[str, Any] | None] = mapped_column(NullableJSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class Verification(Base):
    """The outcome of checking one model against one certificate."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # NULL when the certificate is not registered here; certificate_digest is always kept.
    certificate_id: Mapped[str | None] = mapped_column(
        ForeignKey("certificates.id"), nullable=True, index=True
    )
    certificate_digest: Mapped[str] = mapped_column(String(64), index=True)
    backend: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    adapter: Mapped[str | None] = mapped_column(Text, nullable=True)
    trigger_sure: Mapped[int] = mapped_column(Integer)
    trigger_total: Mapped[int] = mapped_column(Integer)
    control_sure: Mapped[int] = mapped_column(Integer)
    control_total: Mapped[int] = mapped_column(Integer)
    queries: Mapped[int] = mapped_column(Integer)
    p_value: Mapped[float] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    certified: Mapped[bool] = mapped_column()
    test: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the decision rule: fisher-iut, e-process
    record_path: Mapped[str | None] = mapped_column(Text, nullable=True)  # the signed record, if one was written
    record_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
