"""The derivative interface: a named transformation of the fingerprinted model, applied in a shared context."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass
class Context:
    """What every derivative may use: the merged fingerprinted model, the base, the tokenizer, a work folder.

    ``cache`` keeps expensive shared pieces (an independently fine-tuned sibling) across derivatives.
    """

    model: Any
    base: Any
    tokenizer: Any
    workdir: Path
    seed: int = 0
    cache: dict = field(default_factory=dict)
    base_path: Path | None = None  # the base model's directory, when it is on disk

    def saved(self, name: str, model=None) -> Path:
        """``model`` (default: the fingerprinted one) saved once as a Hugging Face directory in the work folder."""
        path = self.workdir / name
        if not (path / "config.json").is_file():
            (model if model is not None else self.model).save_pretrained(str(path))
            self.tokenizer.save_pretrained(str(path))
        return path

    def base_dir(self) -> Path:
        return self.base_path if self.base_path is not None else self.saved("base", self.base)


@dataclass
class Suspect:
    """How to probe a derivative: an in-memory model (hf backend), any backend with its arguments, or a
    ``factory`` that builds the backend (a thief's serving stack around a model)."""

    model: Any = None
    backend: str = "hf"
    backend_args: dict = field(default_factory=dict)
    close: Callable[[], None] | None = None
    factory: Callable[[], Any] | None = None


@dataclass(frozen=True)
class Derivative(ABC):
    """One transformation; subclasses are frozen dataclasses registered with ``@register("kind")``."""

    kind: ClassVar[str] = ""
    series: str | None = field(default=None, kw_only=True)  # rows of one series share a plot line

    @property
    @abstractmethod
    def label(self) -> str:
        """A human-readable name for tables."""

    @abstractmethod
    def apply(self, ctx: Context) -> Suspect:
        """Make the derivative (a model, or a file and the backend that reads it)."""

    def x(self) -> float | None:
        """The derivative's position on its series' axis (plots), if it has one."""
        return None

    def params(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "series"}


DERIVATIVES: dict[str, type[Derivative]] = {}


def register(kind: str):
    """Class decorator: make a derivative available under ``kind`` (``robustness --only KIND``)."""

    def wrap(cls: type[Derivative]) -> type[Derivative]:
        cls.kind = kind
        DERIVATIVES[kind] = cls
        return cls

    return wrap
