"""The paper's pipeline as services: run a sweep cell by cell, report sweeps, import exported cells.

The registry is the one source of truth: each finished cell is a row of its sweep's table, so a killed sweep
resumes at the next unfinished cell. With Ray (``RayOptions``) each pending cell is a Ray task that runs the
same ``run_cell`` and records its own row as it finishes; without Ray, ``--shard I/N`` lets N processes fill
one table side by side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.progress import SILENT, Progress
from fingerprint.services.distributed import RayOptions


@dataclass
class SweepSummary:
    sweep: str
    cells: int
    finished_now: int
    done: int
    registry: str
    table: str
    pending: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # Ray: cells whose task failed ({cell_id, error})
    mode: str = "serial"

    def to_dict(self) -> dict:
        return {"sweep": self.sweep, "cells": self.cells, "finished_now": self.finished_now, "done": self.done,
                "registry": self.registry, "table": self.table, "failed": self.failed, "mode": self.mode}


def start_model(model: str, config, progress: Progress = SILENT) -> str:
    """The cell's start model: the model itself, or its (cached) aligned stand-in."""
    if not config.align:
        return model
    from fingerprint.research.align import align as run_align

    progress.stage(f"aligned stand-in of {model} (cached after the first run)")
    path, _ = run_align(model, Path(config.data_dir), progress=lambda n, loss: progress.advance(n, f"loss {loss:.3f}"))
    return str(path)


def run_sweep(config_path: Path, registry, max_cells: int | None = None, shard: tuple[int, int] | None = None,
              dry_run: bool = False, progress: Progress = SILENT, ray: RayOptions | None = None,
              gpus_per_cell: float = 0.0) -> SweepSummary:
    """Run (or resume) a sweep; every finished cell is recorded at once (on Ray, by its task)."""
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
    for _, cell in todo:  # the aligned stand-ins first, once each (cached), so that no two cells train one
        if cell["model"] not in starts:
            starts[cell["model"]] = start_model(cell["model"], config, progress)
    if ray is not None and todo:
        finished, failed = _run_cells_on_ray(todo, config, data, registry, ray, gpus_per_cell, progress)
    else:
        failed, finished = [], 0
        for number, (cid, cell) in enumerate(todo, 1):
            label = (f"cell {number}/{len(todo)}: poison {cell['poison']}, n {cell['dataset_size']}, "
                     f"{cell['poison_source']}, seed {cell['seed']}")
            progress.stage(label, total=total_steps(cell["dataset_size"], config.train_config(cell["seed"])))
            result = run_cell(cell, config, data, starts[cell["model"]],
                              progress=lambda stage, label=label: progress.note(f"{label}: {stage}"),
                              on_step=lambda n, loss: progress.advance(n, f"loss {loss:.3f}"))
            results.add(cid, cell, result)
            finished += 1
    done = total - sum(1 for _ in pending(config, results.done()))  # this config's cells, not the whole table's
    mode = "serial" if ray is None else ("ray local" if ray.local else f"ray {ray.address}")
    return SweepSummary(config.name, total, finished, done, results.registry.url, results.table.name,
                        failed=failed, mode=mode)


def sweep_cell_task(cid: str, cell: dict, config, data, registry_url: str, env: dict, cpus: float) -> dict:
    """One cell as a Ray task: the serial path's ``run_cell``, its row written to the registry here."""
    from fingerprint.research.sweep import run_cell
    from fingerprint.services.distributed import apply_env, set_torch_threads
    from registry import Registry
    from registry.sweeps import SweepResults

    apply_env(env)
    set_torch_threads(cpus)  # also keeps training deterministic: one thread per CPU the task holds
    result = run_cell(cell, config, data, start_model(cell["model"], config))
    registry = Registry(registry_url)
    try:
        SweepResults(registry, config.name).add(cid, cell, result)
    finally:
        registry.close()
    return {"cell_id": cid, "train_seconds": result["train_seconds"], "device": result["device"]}


def _run_cells_on_ray(todo, config, data, registry, options: RayOptions, gpus_per_cell: float,
                      progress: Progress) -> tuple[int, list[dict]]:
    from fingerprint.services.distributed import TaskFailure, as_finished, ray_session

    if not options.local and not registry.shared_across_machines:
        progress.note("warning: a SQLite registry is reachable only from this machine; on a cluster use "
                      "PostgreSQL (--registry postgresql://...)")
    finished, failed = 0, []
    with ray_session(options) as ray:
        remote = ray.remote(sweep_cell_task)
        cpus = options.cpus_per_task()
        shared_data = ray.put(data)  # once in the object store, not once per task
        url, env = registry.shareable_url(), options.task_env()
        resources = {"num_cpus": cpus, "num_gpus": gpus_per_cell, "max_retries": 1, "retry_exceptions": False}

        def submitter(cid: str, cell: dict):
            return lambda: remote.options(**resources).remote(cid, cell, config, shared_data, url, env, cpus)

        progress.stage(f"{len(todo)} cells as Ray tasks ({cpus:g} CPU, {gpus_per_cell:g} GPU each)", total=len(todo))
        for index, result in as_finished(ray, [submitter(cid, cell) for cid, cell in todo], options.workers):
            cid, cell = todo[index]
            if isinstance(result, TaskFailure):
                failed.append({"cell_id": cid, "cell": cell, "error": result.message, "kind": result.kind})
                progress.note(f"cell {cid[:12]} (poison {cell['poison']}, seed {cell['seed']}) failed: "
                              f"{result.message}")
                progress.advance(1, "failed")
                continue
            finished += 1
            progress.advance(1, f"poison {cell['poison']}, n {cell['dataset_size']}, seed {cell['seed']}: "
                                f"{result['train_seconds']:.0f} s on {result['device']}")
    return finished, failed


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
