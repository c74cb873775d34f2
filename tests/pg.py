"""A real PostgreSQL server for tests: ``$FINGERPRINT_TEST_PG_URL``, or a throw-away local cluster.

Without either, tests that need it are skipped -- unless ``$CI`` is set, where they fail.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ENV_URL = "FINGERPRINT_TEST_PG_URL"
DATABASE = "suretrap_test"
SUPERUSER = "postgres"


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI (which must exercise PostgreSQL)."""
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, if a PostgreSQL server is installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user() -> list[str]:
    """Command prefix for running server binaries: initdb and postgres refuse to run as root."""
    if os.name != "posix" or os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    if runuser is None:
        unavailable("running as root and `runuser` is missing (needed to run initdb as `postgres`)")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no `postgres` system user to run the server as")
    return [runuser, "-u", "postgres", "--"]


@contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[str]:
    """initdb + pg_ctl a private cluster on 127.0.0.1 (socket in a temp dir); yield its admin URL."""
    prefix = _as_server_user()
    base = "/tmp" if prefix and os.path.isdir("/tmp") else None  # reachable by the `postgres` user
    tmp = Path(tempfile.mkdtemp(prefix="suretrap-pg-", dir=base))
    if prefix:
        shutil.chown(tmp, user="postgres")
    data, log = tmp / "data", tmp / "server.log"
    port = _free_port()

    def run(*args: str) -> None:
        cmd = [*prefix, str(bindir / args[0]), *args[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            output = (done.stderr or done.stdout).strip()[-2000:]
            server_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            unavailable(f"`{' '.join(cmd)}` failed: {output} {server_log}")

    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={shlex.quote(str(tmp))} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    )
    started = False
    try:
        run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-locale",
            "--no-sync")
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")
        started = True
        yield f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/postgres"
    finally:
        if started:
            subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                            "stop"], capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def _admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE DATABASE, CREATE/DROP SCHEMA)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(sql))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A ``postgresql+psycopg://`` URL of a database the tests may use freely (session-wide)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver is not installed (pip install 'psycopg[binary]')")
    env = os.environ.get(ENV_URL)
    if env:
        yield env
        return
    bindir = find_bindir()
    if bindir is None:
        unavailable(f"no server binaries (initdb, pg_ctl) found and ${ENV_URL} is not set")
    with throwaway_cluster(bindir) as admin_url:
        _admin(admin_url, f"CREATE DATABASE {DATABASE}")
        yield admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"


@contextmanager
def fresh_schema(url: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema (dropped afterwards): one clean slate per test."""
    from sqlalchemy.engine import make_url

    schema = f"t_{uuid.uuid4().hex[:12]}"
    _admin(url, f"CREATE SCHEMA {schema}")
    try:
        parsed = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield parsed.render_as_string(hide_password=False)
    finally:
        _admin(url, f"DROP SCHEMA {schema} CASCADE")
