"""The built-in statistical tests; importing a module registers its test (one line each)."""

from fingerprint.verification.rules import eprocess, fisher  # noqa: F401
