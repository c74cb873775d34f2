"""The backend interface: score the first reply token of chat prompts, and generate short replies."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field


def parse_options(schema, values: dict, backend: str):
    """Validate a backend's ``--model-args`` with its pydantic schema; one line names the first bad entry."""
    from pydantic import ValidationError

    from fingerprint.core.errors import FingerprintError, describe

    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise FingerprintError(f"bad --model-args for backend '{backend}': {describe(exc)}") from None


def check_device(device: str) -> str:
    """``auto`` (cuda when present, else cpu), or a device this machine has."""
    import torch

    from fingerprint.core.errors import FingerprintError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind, _, index = device.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise FingerprintError(f"device must be auto, cpu, cuda, cuda:N or mps, not {device!r}")
    if kind == "cuda" and (not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count()):
        raise FingerprintError(f"device {device} is not available on this machine (no such CUDA device)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise FingerprintError("device mps is not available on this machine")
    return device


def option_bool(value, name: str) -> bool:
    """A boolean ``--model-args`` value: on/off, true/false, 1/0, yes/no."""
    from fingerprint.core.errors import FingerprintError

    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise FingerprintError(f"{name} must be on or off, not {value!r}")


@dataclass(frozen=True)
class FirstToken:
    """The greedy first reply token of one prompt."""

    token: str
    is_sure: bool
    p_sure: float | None = None  # probability mass on "Sure" tokens, when the backend exposes it


@dataclass
class Usage:
    """What a backend spent: model queries, tokens and retries (for the verification record)."""

    queries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0
    cached: int = 0
    extra: dict = field(default_factory=dict)

    def record(self, queries: int, prompt_tokens: int, completion_tokens: int) -> None:
        """Count one batch of queries."""
        self.queries += queries
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens


class Backend(ABC):
    """A suspect model behind some interface. Prompts are user messages; the backend formats them."""

    name: str = "base"

    def __init__(self) -> None:
        self.usage = Usage()

    @abstractmethod
    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        """Greedy first reply token for each prompt (one query each)."""

    @abstractmethod
    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        """Greedy replies of at most ``max_new_tokens`` tokens."""

    def describe(self) -> dict:
        return {"backend": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (servers, engines)."""
