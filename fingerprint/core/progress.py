"""How long work reports progress: a small interface the services call and the CLI (or a script) renders."""

from __future__ import annotations


class Progress:
    """Stages with an optional total, and steps within them; every method may be ignored."""

    def stage(self, name: str, total: int | None = None) -> None:
        """A new stage of work (``total`` steps, when known)."""

    def advance(self, n: int = 1, info: str = "") -> None:
        """``n`` more steps of the current stage are done (``info``: e.g. the current loss)."""

    def note(self, message: str) -> None:
        """A one-off message worth showing (a warning, where an output went)."""


SILENT = Progress()
