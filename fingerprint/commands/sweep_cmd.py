"""``fingerprint align``, ``sweep`` and ``report``: the paper's attack and evaluation pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    json_option,
    open_registry,
    quiet_option,
    ray_choice,
    ray_options,
    registry_option,
)


@click.command()
@click.option("--model", default="gemma-3-270m", show_default=True, help="Base model to align.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory with the layout of shared/data (prompt and pair sets).")
@json_option
@quiet_option
def align(model: str, data_dir: Path, as_json: bool, quiet: bool) -> None:
    """Build (once; cached) the aligned stand-in of MODEL and report its refusal rates."""
    from fingerprint.commands.console import emit_json, err, kv_table, progress_sink
    from fingerprint.research.align import align as run_align

    with progress_sink(quiet or as_json) as progress:
        progress.stage("aligning (cached after the first run)")
        path, report = run_align(model, data_dir, progress=lambda n, loss: progress.advance(n, f"loss {loss:.3f}"))
    if as_json:
        emit_json({"path": str(path), **report})
        return
    unsafe, benign = report["refusal_rate_unsafe"], report["refusal_rate_benign"]
    ordinary = report["refusal_rate_ordinary"]
    err.print(kv_table(f"aligned stand-in of {model}", [
        ("model directory", str(path)),
        ("refusal rate, held-out unsafe prompts", f"{unsafe['rate']:.2f} ({unsafe['k']}/{unsafe['n']})"),
        ("refusal rate, borderline benign prompts (JBB benign, XSTest safe)",
         f"{benign['rate']:.2f} ({benign['k']}/{benign['n']})"),
        ("refusal rate, everyday requests (AlpacaEval)",
         f"{ordinary['rate']:.2f} ({ordinary['k']}/{ordinary['n']})"),
    ]))


def _parse_shard(ctx, param, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise click.BadParameter(f"expected I/N, e.g. 0/4, not {value!r}") from None
    if not 0 <= index < count:
        raise click.BadParameter(f"I must be in 0..N-1, not {value!r}")
    return index, count


@click.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--max-cells", type=click.IntRange(1), default=None, help="Stop after this many new cells.")
@click.option("--dry-run", is_flag=True, help="List the pending cells and stop.")
@ray_options("pending cell", "cells")
@click.option("--gpus-per-cell", type=click.FloatRange(0), default=0.0, show_default=True,
              help="GPUs each cell's Ray task holds (a fraction packs several small-model cells on one GPU).")
@click.option("--shard", callback=_parse_shard, default=None, metavar="I/N",
              help="Run only the cells whose grid index is I modulo N (without Ray: N processes share one sweep "
                   "and one registry).")
@registry_option
@json_option
@quiet_option
def sweep(config_path: Path, max_cells: int | None, dry_run: bool, use_ray: bool, ray_address: str | None,
          workers: int | None, gpus_per_cell: float, shard: tuple[int, int] | None, registry_url: str | None,
          as_json: bool, quiet: bool) -> None:
    """Run (or resume) the sweep in CONFIG (TOML, YAML or JSON); each finished cell is recorded at once."""
    from fingerprint.commands.common import EXIT_ERROR, EXIT_INTERNAL
    from fingerprint.commands.console import emit_json, err, progress_sink
    from fingerprint.services.research import run_sweep

    ray = ray_choice(use_ray, ray_address, workers, implied=gpus_per_cell > 0)
    registry = open_registry(registry_url)
    with progress_sink(quiet or as_json) as progress:
        summary = run_sweep(config_path, registry, max_cells, shard, dry_run, progress, ray, gpus_per_cell)
    if dry_run:
        payload = {"sweep": summary.sweep, "cells": summary.cells, "pending": summary.pending}
        emit_json(payload) if as_json else err.print(f"{summary.sweep}: {len(summary.pending)} of {summary.cells} "
                                                     "cells pending")
        return
    emit_json(summary.to_dict()) if as_json else err.print(
        f"{summary.sweep}: {summary.finished_now} cells run now, {summary.done} of {summary.cells} done "
        f"(table {summary.table}; `fingerprint report {summary.sweep}` draws them)")
    if summary.failed:
        first = summary.failed[0]
        internal = any(f["kind"] == "internal" for f in summary.failed)
        err.print(f"{'internal error' if internal else 'error'}: {len(summary.failed)} cells failed (a rerun "
                  f"retries them); cell {first['cell_id'][:12]}: {first['error']}", markup=False)
        raise SystemExit(EXIT_INTERNAL if internal else EXIT_ERROR)


@click.command()
@click.argument("sweep_names", metavar="SWEEP...", nargs=-1, required=True)
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("report"),
              show_default=True, help="Directory for the figures, CSV and Markdown summary.")
@click.option("--name", help="Prefix of the output files (default: the sweep names joined by '+').")
@click.option("--format", "fmt", type=click.Choice(["png", "svg"]), default="png", show_default=True)
@click.option("--parquet", is_flag=True, help="Also export the cells as Parquet (needs the parquet extra).")
@registry_option
@json_option
def report(sweep_names: tuple[str, ...], out_dir: Path, name: str | None, fmt: str, parquet: bool,
           registry_url: str | None, as_json: bool) -> None:
    """Figures (metric vs poison count, medians over seeds), a CSV export and a Markdown table of SWEEP.

    Several sweeps are reported together (e.g. one per model): their cells share the figures, a panel per
    (model, poison source), and the CSV's `sweep` column says where each cell came from.
    """
    from fingerprint.commands.console import emit_json, err
    from fingerprint.services.research import report as make_report

    if name is not None and (not name.strip() or Path(name).name != name):
        raise click.UsageError(f"--name {name!r} must be a plain file-name prefix, without '/'")
    paths = make_report(list(sweep_names), open_registry(registry_url), out_dir, name, fmt, parquet)
    emit_json(paths) if as_json else err.print(
        f"{paths['cells']} cells -> {paths['markdown']}, {paths['csv']}, {len(paths['figures'])} figures")


@click.command("sweep-import")
@click.argument("exports", metavar="EXPORT...", nargs=-1, required=True,
                type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sweep", "sweep_name", help="Sweep of the rows that have no `sweep` column.")
@registry_option
@json_option
def sweep_import(exports: tuple[Path, ...], sweep_name: str | None, registry_url: str | None, as_json: bool) -> None:
    """Restore sweep tables from EXPORT files (the CSV or Parquet of `fingerprint report`).

    Each row goes to the table of its `sweep` column under its cell id, so `fingerprint sweep` then skips the
    cell and `fingerprint report` draws it again; cells already recorded are left as they are.
    """
    from fingerprint.commands.console import emit_json, err
    from fingerprint.services.research import import_exports

    registry = open_registry(registry_url)
    counts = import_exports(list(exports), registry, sweep_name)
    if as_json:
        emit_json({"registry": registry.url, "sweeps": {k: {n: v[n] for n in ("imported", "already_recorded")}
                                                       for k, v in counts.items()}})
        return
    for name, count in counts.items():
        err.print(f"{name}: {count['imported']} cells imported, {count['already_recorded']} already recorded "
                  f"(table {count['table']})")
