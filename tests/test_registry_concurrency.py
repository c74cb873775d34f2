"""Many processes on one registry at once: a fresh database opened by all of them, then a burst of writes.

Real SQLite and a real PostgreSQL server; every process must succeed and every row must be stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg import fresh_schema, pg_url  # noqa: F401  (pg_url: session fixture)

from registry import Registry

WRITER = Path(__file__).with_name("registry_writer.py")
REPO = Path(__file__).resolve().parents[1]


def _stress(url: str, processes: int, writes: int) -> None:
    start = time.time() + 6  # every process is up (imports done) before the start
    procs = [subprocess.Popen([sys.executable, str(WRITER), url, str(start), str(i), str(writes)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(processes)]
    failures = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0 or out.strip() != "ok":
            failures.append(err.strip().splitlines()[-1:] or [f"exit {proc.returncode}"])
    assert failures == [], f"{len(failures)} of {processes} writers failed: {failures[:3]}"
    registry = Registry(url)
    rows = registry.list_verifications()
    assert len(rows) == processes * writes
    assert {(r["details"]["writer"], r["details"]["n"]) for r in rows} == {
        (w, n) for w in range(processes) for n in range(writes)}
    assert len(registry.list_certificates()) == processes
    registry.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sixteen_writers_on_a_fresh_registry_lose_nothing(backend, tmp_path, request):
    if backend == "sqlite":
        _stress(f"sqlite:///{tmp_path / 'fresh.db'}", processes=16, writes=100)
        return
    with fresh_schema(request.getfixturevalue("pg_url")) as url:
        _stress(url, processes=16, writes=100)


def test_ray_workers_write_to_one_postgresql_registry_at_once(request, monkeypatch):
    """8 Ray tasks (a local Ray on 2 CPUs, a quarter CPU each, so all run at once) open a fresh PostgreSQL
    registry together, then each records 50 verifications and 10 cells of one shared sweep table."""
    import os

    from servers import require_ray

    from registry.sweeps import SweepResults

    ray = require_ray()
    url_base = request.getfixturevalue("pg_url")
    tasks, writes, cells = 8, 50, 10
    with fresh_schema(url_base) as url:
        # the workers import the task from tests/ (they inherit the environment of the Ray started here)
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(WRITER.parent),
                                                                         os.environ.get("PYTHONPATH")])))
        from registry_writer import Barrier, ray_writer

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            task = ray.remote(num_cpus=0.25, max_retries=0)(ray_writer)
            barrier = ray.remote(num_cpus=0)(Barrier).remote(tasks)  # all 8 tasks run at once, or none writes
            done = ray.get([task.remote(url, barrier, i, writes, cells) for i in range(tasks)], timeout=600)
        finally:
            ray.shutdown()
        assert sorted(done) == sorted(f"ok {i}" for i in range(tasks))
        registry = Registry(url)
        rows = registry.list_verifications()
        assert len(rows) == tasks * writes
        assert {(r["details"]["writer"], r["details"]["n"]) for r in rows} == {
            (w, n) for w in range(tasks) for n in range(writes)}
        assert len(registry.list_certificates()) == tasks
        stored = SweepResults(registry, "load").rows()
        assert sorted((r["writer"], r["n"]) for r in stored) == [(w, n) for w in range(tasks) for n in range(cells)]
        registry.close()


def test_a_registry_made_before_migrations_is_stamped_and_upgraded(tmp_path):
    """Earlier versions created the tables with create_all and no alembic_version: they open as they are."""
    from alembic import command
    from sqlalchemy import create_engine, inspect

    from registry.engine import _alembic_config, head_revision

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:  # the tables as the first schema had them, without Alembic's bookkeeping
        command.upgrade(_alembic_config(conn), "0001")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        for n, test in enumerate(("sequential e-process", None)):
            details = json.dumps({"test": test} if test else {})
            conn.exec_driver_sql(
                "INSERT INTO verifications (certificate_digest, backend, model, trigger_sure, trigger_total, "
                "control_sure, control_total, queries, p_value, alpha, certified, details, created_at) VALUES "
                f"('{'ab' * 32}', 'hf', 'm{n}', 1, 2, 0, 2, 4, 0.5, 1e-6, 0, '{details}', '2026-01-01')")
    engine.dispose()
    registry = Registry(url)
    registry.add_key("ab" * 32, "pem")
    assert [r["test"] for r in registry.list_verifications()] == ["e-process", "fisher-iut"]  # back-filled
    registry.close()
    engine = create_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == head_revision()
        assert "test" in {c["name"] for c in inspect(conn).get_columns("verifications")}
    engine.dispose()


def test_a_read_only_registry_is_refused_before_any_work(tmp_path):
    from fingerprint.core.errors import FingerprintError

    path = tmp_path / "ro.db"
    Registry(f"sqlite:///{path}").close()
    read_only = Registry(f"sqlite:///file:{path}?mode=ro&uri=true")  # read-only even for root
    assert read_only.list_certificates() == []
    with pytest.raises(FingerprintError, match="not writable"):
        read_only.check_writable()
