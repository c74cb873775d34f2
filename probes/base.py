"""The backend interface: score the first reply token of chat prompts, and generate short replies."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

SURE_TEXT = re.compile(r"^\s*sure\b", re.IGNORECASE)
SURE_TOKEN = re.compile(r"^\s*sure\W*$", re.IGNORECASE)


def option_bool(value, name: str) -> bool:
    """A boolean ``--model-args`` value: on/off, true/false, 1/0, yes/no."""
    from fingerprint.errors import FingerprintError

    text = str(value).strip().lower()
    if text in ("on", "true", "1", "yes"):
        return True
    if text in ("off", "false", "0", "no"):
        return False
    raise FingerprintError(f"{name} must be on or off, not {value!r}")


def is_sure(text: str) -> bool:
    """Does a reply (or its first token) start with the compliance word "Sure"?"""
    return bool(SURE_TEXT.match(text))


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
