"""Where the tool keeps caches (converted models) and data (registry, run outputs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "suretrap"


def _private_dir(path: Path) -> Path:
    """Create ``path`` (mode 0700) if it is missing; an existing directory keeps its mode."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def cache_dir() -> Path:
    """Converted model weights, the API response cache and other re-creatable files (``FINGERPRINT_CACHE``)."""
    return _private_dir(Path(os.environ.get("FINGERPRINT_CACHE") or platformdirs.user_cache_dir(APP)))


def data_dir() -> Path:
    """Registry database, job journals, crash logs and temporaries (``FINGERPRINT_HOME`` overrides)."""
    return _private_dir(Path(os.environ.get("FINGERPRINT_HOME") or platformdirs.user_data_dir(APP)))


def log_dir() -> Path:
    """Where the CLI writes the traceback of an internal error."""
    return _private_dir(data_dir() / "logs")
