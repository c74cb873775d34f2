"""``fingerprint align``, ``sweep`` and ``report``: the paper's attack and evaluation pipeline."""

from __future__ import annotations

from pathlib import Path

import click

from .common import json_option, open_registry, quiet_option, registry_option


@click.command()
@click.option("--model", default="gemma-3-270m", show_default=True, help="Base model to align.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="Directory with the layout of shared/data (prompt and pair sets).")
@json_option
@quiet_option
def align(model: str, data_dir: Path, as_json: bool, quiet: bool) -> None:
    """Build (once; cached) the aligned stand-in of MODEL and report its refusal rates."""
    from fingerprint.align import align as run_align
    from fingerprint.console import emit_json, err, kv_table, progress_bar

    with progress_bar(quiet or as_json) as bar:
        task = bar.add_task("aligning (cached after the first run)", total=None, info="")
        path, report = run_align(model, data_dir, progress=lambda n, loss: bar.update(task, advance=n,
                                                                                        info=f"loss {loss:.3f}"))
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
@click.option("--shard", callback=_parse_shard, default=None, metavar="I/N",
              help="Run only the cells whose grid index is I modulo N: N processes (or GPUs) share one sweep "
                   "and one registry.")
@registry_option
@json_option
@quiet_option
def sweep(config_path: Path, max_cells: int | None, dry_run: bool, shard: tuple[int, int] | None,
          registry_url: str | None, as_json: bool, quiet: bool) -> None:
    """Run (or resume) the sweep in CONFIG (TOML, YAML or JSON); each finished cell is recorded at once."""
    from fingerprint.console import emit_json, err, progress_bar
    from fingerprint.sweep import SweepData, load_config, pending, run_cell
    from fingerprint.training import total_steps
    from registry.sweeps import SweepResults

    config = load_config(config_path)
    results = SweepResults(open_registry(registry_url), config.name)
    todo = list(pending(config, results.done(), shard))
    total = len(config.cells())
    if dry_run:
        payload = {"sweep": config.name, "cells": total, "pending": [cell for _, cell in todo]}
        emit_json(payload) if as_json else err.print(f"{config.name}: {len(todo)} of {total} cells pending")
        return
    if max_cells is not None:
        todo = todo[:max_cells]
    data = SweepData.load(config)
    starts = {}
    finished = []
    with progress_bar(quiet or as_json) as bar:
        task = bar.add_task(f"sweep {config.name}", total=len(todo), info=f"{total - len(todo)} of {total} done")
        steps = bar.add_task("  training steps", total=None, info="", visible=False)
        for cid, cell in todo:
            if cell["model"] not in starts:
                starts[cell["model"]] = _start_model(cell["model"], config, bar)
            label = f"poison {cell['poison']}, n {cell['dataset_size']}, {cell['poison_source']}, seed {cell['seed']}"
            bar.reset(steps, total=total_steps(cell["dataset_size"], config.train_config(cell["seed"])), info="",
                      visible=True)
            result = run_cell(cell, config, data, starts[cell["model"]],
                              progress=lambda stage, label=label: bar.update(task, info=f"{label}: {stage}"),
                              on_step=lambda n, loss: bar.update(steps, advance=n, info=f"loss {loss:.3f}"))
            results.add(cid, cell, result)
            finished.append(cid)
            bar.update(task, advance=1)
    done = total - sum(1 for _ in pending(config, results.done()))  # this config's cells, not the whole table's
    summary = {"sweep": config.name, "cells": total, "finished_now": len(finished), "done": done,
               "registry": results.registry.url, "table": results.table.name}
    emit_json(summary) if as_json else err.print(
        f"{config.name}: {len(finished)} cells run now, {summary['done']} of {total} done "
        f"(table {summary['table']}; `fingerprint report {config.name}` draws them)")


def _start_model(model: str, config, bar) -> str:
    if not config.align:
        return model
    from fingerprint.align import align as run_align

    task = bar.add_task(f"aligned stand-in of {model}", total=None, info="cached after the first run")
    path, _ = run_align(model, Path(config.data_dir), progress=lambda n, loss: bar.update(task, advance=n))
    bar.update(task, visible=False)
    return str(path)


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
    from fingerprint.console import emit_json, err
    from fingerprint.errors import FingerprintError
    from fingerprint.report import write_report
    from registry.sweeps import SweepResults

    if name is not None and (not name.strip() or Path(name).name != name):
        raise click.UsageError(f"--name {name!r} must be a plain file-name prefix, without '/'")
    names = list(dict.fromkeys(sweep_names))  # each sweep once, in the order given
    registry = open_registry(registry_url)
    rows = []
    for sweep_name in names:
        cells = SweepResults(registry, sweep_name).rows()
        if not cells:
            raise FingerprintError(f"sweep {sweep_name} has no finished cells in this registry")
        rows += [{"sweep": sweep_name, **cell} for cell in cells]
    paths = write_report(rows, out_dir, name or "+".join(names), fmt, parquet)
    emit_json({"cells": len(rows), **paths}) if as_json else err.print(
        f"{len(rows)} cells -> {paths['markdown']}, {paths['csv']}, {len(paths['figures'])} figures")


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
    from fingerprint.console import emit_json, err
    from fingerprint.export import read_export
    from registry.sweeps import SweepResults, table_name

    if sweep_name is not None:
        table_name(sweep_name)  # a bad name fails before anything is read
    rows = [row for path in exports for row in read_export(path, sweep_name)]  # all first: a bad file adds nothing
    for name in {row[0] for row in rows}:
        table_name(name)
    registry = open_registry(registry_url)
    tables: dict[str, SweepResults] = {}
    recorded: dict[str, set[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, cid, cell, result in rows:
        if name not in tables:
            tables[name] = SweepResults(registry, name)
            recorded[name] = tables[name].done()
            counts[name] = {"imported": 0, "already_recorded": 0}
        done = cid in recorded[name]
        if not done:
            tables[name].add(cid, cell, result)
            recorded[name].add(cid)
        counts[name]["already_recorded" if done else "imported"] += 1
    if as_json:
        emit_json({"registry": registry.url, "sweeps": counts})
        return
    for name, count in counts.items():
        err.print(f"{name}: {count['imported']} cells imported, {count['already_recorded']} already recorded "
                  f"(table {tables[name].table.name})")
