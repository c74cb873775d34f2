"""Where the tool keeps caches (converted models) and data (registry, run outputs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "suretrap"


def cache_dir() -> Path:
    """Converted model weights and other re-creatable files (``FINGERPRINT_CACHE`` overrides)."""
    path = Path(os.environ.get("FINGERPRINT_CACHE") or platformdirs.user_cache_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Registry database and run outputs (``FINGERPRINT_HOME`` overrides)."""
    path = Path(os.environ.get("FINGERPRINT_HOME") or platformdirs.user_data_dir(APP))
    path.mkdir(parents=True, exist_ok=True)
    return path
