"""Write outputs into a temporary sibling and rename at the end: no half-written results.

Temporaries are private (directories 0700, files 0600) and each one is noted in a ledger under the data
directory, with the process that owns it. ``sweep_stale`` (run when the CLI starts) removes the temporaries
of processes that are gone, so a SIGKILL leaves nothing behind for long (a killed ``embed --merge`` would
otherwise keep about 1 GB; a killed ``reveal``, a file holding the trigger).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

LEDGER = "temps"


def _ledger_dir() -> Path:
    from fingerprint.core.paths import data_dir

    path = data_dir() / LEDGER
    path.mkdir(parents=True, exist_ok=True)
    return path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, started: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return started is None or _start_time(pid) in (None, started)


@contextlib.contextmanager
def tracked(path: Path) -> Iterator[None]:
    """Note ``path`` in the ledger while the block runs (so a killed process's leftover can be swept)."""
    entry = _ledger_dir() / f"{os.getpid()}-{uuid.uuid4().hex}.json"
    entry.write_text(json.dumps({"path": str(Path(path).resolve()), "pid": os.getpid(),
                                 "started": _start_time(os.getpid())}))
    try:
        yield
    finally:
        remove_quietly(entry)


def sweep_stale() -> list[str]:
    """Remove the temporaries whose owning process has ended; returns their paths."""
    removed = []
    try:
        entries = list(_ledger_dir().glob("*.json"))
    except OSError:
        return removed
    for entry in entries:
        try:
            data = json.loads(entry.read_text())
            if _alive(int(data["pid"]), data.get("started")):
                continue
            target = Path(data["path"])
        except (OSError, ValueError, KeyError, TypeError):
            remove_quietly(entry)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            remove_quietly(target)
        remove_quietly(entry)
        removed.append(str(target))
    return removed


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        os.unlink(path)


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    with tracked(tmp):
        try:
            yield tmp
            if target.exists():
                backup = target.with_name(f".{target.name}.old")
                shutil.rmtree(backup, ignore_errors=True)
                os.replace(target, backup)
                os.replace(tmp, target)
                shutil.rmtree(backup, ignore_errors=True)
            else:
                os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on ``path`` (created if missing) for the block: one process at a time."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def private_temp_dir(prefix: str = "suretrap-") -> Iterator[Path]:
    """A 0700 directory under the data directory for secret intermediates, removed at the end (and swept)."""
    from fingerprint.core.paths import data_dir

    root = data_dir() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    with tracked(tmp):
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write a text file through a private temporary file and ``os.replace``; ``mode`` defaults to 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)  # created 0600
    with tracked(Path(tmp)):
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644 if mode is None else mode)
            os.replace(tmp, path)
        except BaseException:
            remove_quietly(Path(tmp))
            raise
