"""The built-in statistical tests; importing a module registers its test (one line each)."""

from . import eprocess, fisher  # noqa: F401
