"""The paper's pipeline as services: run a sweep cell by cell, report sweeps, import exported cells.

The registry is the one source of truth: each finished cell is a row of its sweep's table, so a killed sweep
resumes at the next unfinished cell and shards (``--shard I/N``) fill one table side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.progress import SILENT, Progress


@dataclass
class SweepSummary:
    sweep: str
    cells: int
    finished_now: int
    done: int
    registry: str
    table: str
    pending: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"sweep": self.sweep, "cells": self.cells, "finished_now": self.finished_now, "done": self.done,
                "registry": self.registry, "table": self.table}


def start_model(model: str, config, progress: Progress = SILENT) -> str:
    """The cell's start model: the model itself, or its (cached) aligned stand-in."""
    if not config.align:
        return model
    from fingerprint.research.align import align as run_align

    progress.stage(f"aligned stand-in of {model} (cached after the first run)")
    path, _ = run_align(model, Path(config.data_dir), progress=lambda n, loss: progress.advance(n, f"loss {loss:.3f}"))
    return str(path)


def run_sweep(config_path: Path, registry, max_cells: int | None = None, shard: tuple[int, int] | None = None,
              dry_run: bool = False, progress: Progress = SILENT) -> SweepSummary:
    """Run (or resume) a sweep; every finished cell is recorded at once."""
    from fingerprint.embedding.training import total_steps
    from fingerprint.research.sweep import SweepData, load_config, pending, run_cell
    from registry.sweeps import SweepResults

    config = load_config(config_path)
    results = SweepResults(registry, config.name)
    todo = list(pending(config, results.done(), shard))
    total = len(config.cells())
    if dry_run:
        return SweepSummary(config.name, total, 0, total - len(todo), results.registry.url, results.table.name,
                            pending=[cell for _, cell in todo])
    if max_cells is not None:
        todo = todo[:max_cells]
    data = SweepData.load(config)
    starts: dict[str, str] = {}
    finished = 0
    for number, (cid, cell) in enumerate(todo, 1):
        if cell["model"] not in starts:
            starts[cell["model"]] = start_model(cell["model"], config, progress)
        label = (f"cell {number}/{len(todo)}: poison {cell['poison']}, n {cell['dataset_size']}, "
                 f"{cell['poison_source']}, seed {cell['seed']}")
        progress.stage(label, total=total_steps(cell["dataset_size"], config.train_config(cell["seed"])))
        result = run_cell(cell, config, data, starts[cell["model"]],
                          progress=lambda stage, label=label: progress.note(f"{label}: {stage}"),
                          on_step=lambda n, loss: progress.advance(n, f"loss {loss:.3f}"))
        results.add(cid, cell, result)
        finished += 1
    done = total - sum(1 for _ in pending(config, results.done()))  # this config's cells, not the whole table's
    return SweepSummary(config.name, total, finished, done, results.registry.url, results.table.name)


def report(sweep_names: list[str], registry, out_dir: Path, name: str | None = None, fmt: str = "png",
           parquet: bool = False) -> dict:
    """Figures, CSV (and Parquet) and a Markdown table of one or more sweeps."""
    from fingerprint.research.report import write_report
    from registry.sweeps import SweepResults

    names = list(dict.fromkeys(sweep_names))  # each sweep once, in the order given
    rows = []
    for sweep_name in names:
        cells = SweepResults(registry, sweep_name).rows()
        if not cells:
            raise FingerprintError(f"sweep {sweep_name} has no finished cells in this registry")
        rows += [{"sweep": sweep_name, **cell} for cell in cells]
    return {"cells": len(rows), **write_report(rows, out_dir, name or "+".join(names), fmt, parquet)}


def import_exports(exports: list[Path], registry, sweep_name: str | None = None) -> dict[str, dict]:
    """Restore sweep tables from report exports; cells already recorded are left as they are."""
    from fingerprint.research.export import read_export
    from registry.sweeps import SweepResults, table_name

    if sweep_name is not None:
        table_name(sweep_name)  # a bad name fails before anything is read
    rows = [row for path in exports for row in read_export(path, sweep_name)]  # all first: a bad file adds nothing
    for name in {row[0] for row in rows}:
        table_name(name)
    tables: dict[str, SweepResults] = {}
    recorded: dict[str, set[str]] = {}
    counts: dict[str, dict] = {}
    for name, cid, cell, result in rows:
        if name not in tables:
            tables[name] = SweepResults(registry, name)
            recorded[name] = tables[name].done()
            counts[name] = {"imported": 0, "already_recorded": 0, "table": tables[name].table.name}
        done = cid in recorded[name]
        if not done:
            tables[name].add(cid, cell, result)
            recorded[name].add(cid)
        counts[name]["already_recorded" if done else "imported"] += 1
    return counts
