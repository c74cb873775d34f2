"""Terminal output: tables and progress on stderr, JSON on stdout.

Progress is a rich bar on a terminal; when stderr is not a terminal (a log file, CI) it is plain lines, one per
stage and then at most one every ``PLAIN_EVERY_S`` seconds or 10% of the stage, so long work stays readable.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from fingerprint.core.progress import Progress as ProgressSink

err = Console(stderr=True)
out = Console()
PLAIN_EVERY_S = 30.0


def emit_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def progress_bar(quiet: bool = False) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=err, disable=quiet,
                    transient=False)


class _RichSink(ProgressSink):
    def __init__(self, bar: Progress) -> None:
        self.bar, self.task = bar, None

    def stage(self, name: str, total: int | None = None) -> None:
        if self.task is None:
            self.task = self.bar.add_task(name, total=total, info="")
        else:
            self.bar.reset(self.task, total=total, description=name, info="")

    def advance(self, n: int = 1, info: str = "") -> None:
        if self.task is not None:
            self.bar.update(self.task, advance=n, info=info)

    def note(self, message: str) -> None:
        self.bar.console.print(message)


class _PlainSink(ProgressSink):
    """One line per stage, then a line at most every PLAIN_EVERY_S seconds or 10% of the stage."""

    def __init__(self) -> None:
        self.name, self.total, self.done, self.started, self.last, self.last_share = "", None, 0, 0.0, 0.0, 0.0

    def _line(self, text: str) -> None:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")
        sys.stderr.flush()

    def stage(self, name: str, total: int | None = None) -> None:
        self.name, self.total, self.done = name, total, 0
        self.started = self.last = time.monotonic()
        self.last_share = 0.0
        self._line(f"{name}" + (f" (0/{total})" if total else ""))

    def advance(self, n: int = 1, info: str = "") -> None:
        self.done += n
        now = time.monotonic()
        share = self.done / self.total if self.total else 0.0
        finished = self.total is not None and self.done >= self.total
        if finished or now - self.last >= PLAIN_EVERY_S or share - self.last_share >= 0.1:
            count = f"{self.done}/{self.total} ({share:.0%})" if self.total else f"{self.done}"
            extra = f", {info}" if info else ""
            self._line(f"{self.name}: {count}, {now - self.started:.0f} s{extra}")
            self.last, self.last_share = now, share

    def note(self, message: str) -> None:
        self._line(message)


@contextmanager
def progress_sink(quiet: bool = False):
    """A Progress for the services: silent, a rich bar (terminal) or plain lines (not a terminal)."""
    if quiet:
        yield ProgressSink()
    elif err.is_terminal:
        with progress_bar() as bar:
            yield _RichSink(bar)
    else:
        yield _PlainSink()


@contextmanager
def status(message: str, quiet: bool = False):
    if quiet:
        yield
        return
    if not err.is_terminal:
        sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
        yield
        return
    with err.status(message):
        yield


def kv_table(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, str(value))
    return table


def records_table(title: str, records: list[dict], columns: list[str]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for record in records:
        table.add_row(*(str(record.get(c, ""))[:64] for c in columns))
    return table
