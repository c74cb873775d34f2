"""Registry engines: SQLite that waits for its lock instead of failing, and migrations safe to run concurrently.

- SQLite: every transaction begins with ``BEGIN IMMEDIATE`` (a deferred transaction that later upgrades its
  lock does not wait on the busy timeout and fails with "database is locked"), the busy timeout is 60 s and
  the journal is WAL, so concurrent writers queue up.
- Schema: Alembic migrations (``registry/migrations``), applied inside one transaction that holds the
  database-wide lock (PostgreSQL: an advisory lock; SQLite: the write lock of ``BEGIN IMMEDIATE``), so
  processes that open a fresh registry at the same moment apply each migration exactly once.
- A database made by an earlier version (tables, no ``alembic_version``) is stamped at the first revision and
  then upgraded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL

ADVISORY_LOCK = 0x5375726554726170  # "SureTrap": one lock id for every suretrap registry on a server
SQLITE_BUSY_TIMEOUT_S = 60
BASELINE = "0001"


def make_engine(parsed: URL) -> Engine:
    """An engine for a parsed registry URL, with the SQLite locking described above."""
    connect_args: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if backend == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = 10
    if backend == "sqlite":
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    engine = create_engine(parsed, connect_args=connect_args)
    if backend == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA foreign_keys = ON")
    if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() not in ("wal", "memory"):
        cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the database-wide lock until it commits."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": ADVISORY_LOCK})
        yield connection


def _alembic_config(connection: Connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "registry:migrations")
    config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "registry:migrations")
    return ScriptDirectory.from_config(config).get_current_head()


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op (one SELECT) when it is there already."""
    with engine.connect() as connection:
        if _current_revision(connection) == head_revision():
            return
    from alembic import command

    with locked(engine) as connection:
        current = _current_revision(connection)
        if current == head_revision():
            return  # another process migrated while we waited for the lock
        config = _alembic_config(connection)
        if current is None and inspect(connection).has_table("keys"):
            command.stamp(config, BASELINE)  # made by create_all before migrations existed
        command.upgrade(config, "head")


def check_writable(engine: Engine) -> None:
    """Raise the database's error if a write transaction cannot be committed here (read-only file, no rights)."""
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
