"""Sweep results in the registry database: one table per sweep, one row per finished cell."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, DateTime, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from fingerprint.core.errors import FingerprintError
from fingerprint.research.export import flatten

from .store import Registry, _one_line

_NAME = re.compile(r"[a-z0-9_]{1,40}")


def table_name(sweep: str) -> str:
    """``sweep_<name>``; names are lower-case letters, digits and underscores (dashes become underscores)."""
    slug = sweep.strip().lower().replace("-", "_")
    if not _NAME.fullmatch(slug):
        raise FingerprintError(f"bad sweep name {sweep!r}: use up to 40 letters, digits, '-' or '_'")
    return f"sweep_{slug}"


class SweepResults:
    """Append-only results of one sweep; a cell is identified by a stable id derived from its settings."""

    def __init__(self, registry: Registry, sweep: str) -> None:
        self.registry, self.name = registry, sweep
        self.table = Table(table_name(sweep), MetaData(),
                           Column("cell_id", String(64), primary_key=True),
                           Column("cell", JSON, nullable=False),
                           Column("result", JSON, nullable=False),
                           Column("created_at", DateTime(timezone=True), nullable=False))
        try:
            with registry.locked() as connection:  # several shards may create the same table at once
                self.table.create(connection, checkfirst=True)
        except SQLAlchemyError as exc:
            raise FingerprintError(f"cannot create the sweep table in {registry.url}: {_one_line(exc)}") from exc

    def done(self) -> set[str]:
        with self.registry._engine.connect() as conn:
            return {row[0] for row in conn.execute(select(self.table.c.cell_id))}

    def add(self, cell_id: str, cell: dict, result: dict) -> None:
        """Record a finished cell (committed at once); recording the same cell twice is an error."""
        try:
            with self.registry._engine.begin() as conn:
                conn.execute(insert(self.table).values(cell_id=cell_id, cell=cell, result=result,
                                                       created_at=datetime.now(timezone.utc)))
        except IntegrityError as exc:
            raise FingerprintError(f"cell {cell_id[:12]} of sweep {self.name} is already recorded") from exc

    def rows(self) -> list[dict[str, Any]]:
        with self.registry._engine.connect() as conn:
            result = conn.execute(select(self.table).order_by(self.table.c.created_at))
            return [{"cell_id": r.cell_id, **r.cell, **flatten(r.result)} for r in result]
