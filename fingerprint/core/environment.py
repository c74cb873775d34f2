"""The environment handed to child processes (vLLM worker, servers, converters): never the passphrase."""

from __future__ import annotations

import os

SECRET_VARIABLES = ("FINGERPRINT_PASSPHRASE", "FINGERPRINT_NEW_PASSPHRASE", "FINGERPRINT_VERIFIER_PASSPHRASE")


def child_env(drop: tuple[str, ...] = ()) -> dict[str, str]:
    """``os.environ`` without the key passphrase(s) and without the names in ``drop``."""
    return {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES and k not in drop}
