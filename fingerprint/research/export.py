"""Sweep cells as files: the report's CSV and Parquet exports, and reading them back.

A row is ``{"sweep", "cell_id", <cell settings>, <result flattened with '/'>}`` (``SweepResults.rows``). Reading
an export back splits each row into its sweep, cell id, cell and nested result again, so that
``fingerprint sweep-import`` can restore a sweep's table from its committed export: the registry that ran it
may be gone (a throw-away machine, a GPU box), the export is what was kept.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

from fingerprint.core.errors import FingerprintError

# The settings of a cell (``SweepConfig.cells``) and their types; every other column is part of the result.
CELL_TYPES = {"model": str, "poison_source": str, "dataset_size": int, "trigger": str, "poison": int, "seed": int,
              "aligned": bool}
_CELL_ID = re.compile(r"[0-9a-f]{64}")


def write_csv(rows: list[dict], path: Path) -> None:
    keys = sorted({k for row in rows for k in row})
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def write_parquet(rows: list[dict], path: Path) -> None:
    """The same columns as the CSV, typed, in one Parquet file (needs the ``parquet`` extra: pyarrow)."""
    pa, pq = _pyarrow()
    keys = sorted({k for row in rows for k in row})
    pq.write_table(pa.Table.from_pylist([{k: row.get(k) for k in keys} for row in rows]), str(path))


def read_export(path: Path, sweep: str | None = None) -> list[tuple[str, str, dict, dict]]:
    """``(sweep, cell_id, cell, result)`` for each row of a CSV or Parquet export, in file order.

    ``sweep`` names the sweep of rows without a ``sweep`` column (a one-sweep report wrote none before it had one).
    """
    path = Path(path)
    if not path.is_file():
        raise FingerprintError(f"{path}: no such export file")
    try:
        if path.suffix == ".parquet":
            _, pq = _pyarrow()
            raw = pq.read_table(str(path)).to_pylist()
        elif path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                raw = [{k: _parse(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
        else:
            raise FingerprintError(f"{path}: expected a .csv or .parquet export of `fingerprint report`")
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        raise FingerprintError(f"{path}: cannot read it as an export: {exc}") from exc
    if sweep is not None:
        raw = [{"sweep": sweep, **row} for row in raw]
    return [_split(row, path, number) for number, row in enumerate(raw, start=1)]


def _split(row: dict, path: Path, number: int) -> tuple[str, str, dict, dict]:
    where = f"{path}, row {number}"
    missing = [k for k in ("sweep", "cell_id", *CELL_TYPES) if row.get(k) is None]
    if missing:
        hint = "; name it with --sweep" if missing == ["sweep"] else " (is this an export of `fingerprint report`?)"
        plural = "s" if len(missing) > 1 else ""
        raise FingerprintError(f"{where}: no {', '.join(missing)} column{plural}{hint}")
    cid = str(row["cell_id"])
    if not _CELL_ID.fullmatch(cid):
        raise FingerprintError(f"{where}: cell_id {cid!r} is not a sweep cell id (64 hex digits)")
    try:
        cell = {k: _typed(row[k], kind) for k, kind in CELL_TYPES.items()}
    except (TypeError, ValueError) as exc:
        raise FingerprintError(f"{where}: {exc}") from None
    flat = {k: v for k, v in row.items() if k not in CELL_TYPES and k not in ("sweep", "cell_id") and v is not None}
    return str(row["sweep"]), cid, cell, unflatten(flat)


def flatten(result: dict, prefix: str = "") -> dict:
    """{"unsafe": {"trigger": {"asr": {"rate": .5}}}} -> {"unsafe/trigger/asr/rate": .5}; ``unflatten`` undoes it."""
    flat = {}
    for key, value in result.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def unflatten(flat: dict) -> dict:
    """{"metrics/unsafe/trigger/asr/rate": .5} -> {"metrics": {"unsafe": {"trigger": {"asr": {"rate": .5}}}}}."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _parse(text: str):
    """A CSV cell back to a value: numbers, booleans and lists as written, anything else stays a string."""
    for parse in (json.loads, ast.literal_eval, float):  # float: "nan", which the other two refuse
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def _typed(value, kind: type):
    if kind is str:
        return str(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        raise ValueError(f"expected true or false, not {value!r}")
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"expected a whole number, not {value!r}")
    return int(value)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise FingerprintError("Parquet files need pyarrow: pip install 'suretrap[parquet]'") from None
    return pa, pq
