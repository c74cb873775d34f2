"""Named backends that probe a suspect model, selected with ``--backend`` and ``--model-args``."""

from __future__ import annotations

from collections.abc import Callable

from fingerprint.core.errors import FingerprintError

from .base import Backend, FirstToken, Usage

_BACKENDS: dict[str, Callable[..., Backend]] = {}


def register(name: str):
    """Class decorator adding a backend to the registry."""

    def wrap(cls):
        _BACKENDS[name] = cls
        cls.name = name
        return cls

    return wrap


def _load_builtin() -> None:
    from . import hf, llamacpp_backend, openai_backend, vllm_backend  # noqa: F401


def backend_names() -> list[str]:
    _load_builtin()
    return sorted(_BACKENDS)


def parse_model_args(text: str | None) -> dict[str, str]:
    """Parse ``key=value,key=value`` (as lm-evaluation-harness's ``--model_args``)."""
    args: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise FingerprintError(f"bad --model-args entry '{part}' (expected key=value)")
        args[key.strip()] = value.strip()
    return args


def make_backend(name: str, **kwargs) -> Backend:
    _load_builtin()
    if name not in _BACKENDS:
        raise FingerprintError(f"unknown backend '{name}' (choose from {', '.join(sorted(_BACKENDS))})")
    try:
        return _BACKENDS[name](**kwargs)
    except (TypeError, ValueError) as exc:  # an unknown or malformed --model-args entry
        raise FingerprintError(f"bad options for backend '{name}': {exc}") from exc


__all__ = ["Backend", "FirstToken", "Usage", "backend_names", "make_backend", "parse_model_args",
           "register"]
