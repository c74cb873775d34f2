"""``fingerprint monitor``: verify many suspects against one or many certificates, serially or on Ray."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    EXIT_ERROR,
    EXIT_INTERNAL,
    json_option,
    open_registry,
    passphrase,
    quiet_option,
    ray_choice,
    ray_options,
    registry_option,
    write_log,
)


@click.command()
@click.argument("suspects_path", metavar="SUSPECTS.toml", type=click.Path(path_type=Path, dir_okay=False))
@ray_options("(suspect, certificate) pair", "pairs")
@click.option("--dry-run", is_flag=True, help="List the pairs, which are recorded already, and stop.")
@registry_option
@json_option
@quiet_option
def monitor(suspects_path: Path, use_ray: bool, ray_address: str | None, workers: int | None, dry_run: bool,
            registry_url: str | None, as_json: bool, quiet: bool) -> None:
    """Verify every suspect of SUSPECTS.toml against every certificate in it; each pair is recorded as it
    finishes, and a rerun skips the pairs already recorded.

    Exit 0 when every pair has a verdict (certified or not), 2 when a pair still failed after its retries or on
    a user error, 3 on an internal error.
    """
    from fingerprint.commands.console import emit_json, err, progress_sink
    from fingerprint.services.monitor import run_monitor
    from fingerprint.services.monitor_spec import load_spec

    ray = ray_choice(use_ray, ray_address, workers)
    spec = load_spec(suspects_path)
    secret = passphrase() if any(entry.key for entry in spec.certificates) else None
    registry = open_registry(registry_url)
    with progress_sink(quiet or as_json) as progress:
        summary = run_monitor(suspects_path, registry, secret, ray, progress, dry_run)
    tracebacks = [row.pop("traceback") for row in summary.rows if row.get("traceback")]
    if as_json:
        emit_json(summary.to_dict())
    else:
        _show(summary, dry_run)
    for cert in summary.certificates:
        if cert["warning"]:
            click.echo(f"warning: certificate {cert['certificate'][:12]}: {cert['warning']}", err=True)
    errors = summary.errors
    if not errors:
        return
    first = errors[0]
    line = f"{len(errors)} of {len(summary.rows)} pairs failed (a rerun retries them); {first['suspect']}: " \
           f"{first['error']}"
    if tracebacks:
        path = write_log("crash", "\n\n".join(tracebacks))
        err.print(f"internal error: {line}" + (f" (traceback: {path})" if path else ""), markup=False)
        raise SystemExit(EXIT_INTERNAL)
    err.print(f"error: {line}", markup=False)
    raise SystemExit(EXIT_ERROR)


def _show(summary, dry_run: bool) -> None:
    from fingerprint.commands.console import err, records_table

    def verdict(row: dict) -> str:
        if row["status"] == "pending":
            return "pending"
        if row["status"] == "error":
            return "ERROR"
        return "CERTIFIED" if row["certified"] else "not certified"

    shown = [{**row, "verdict": verdict(row), "certificate": row["certificate"][:12],
              "p": "" if row.get("p_value") is None else f"{row['p_value']:.3g}",
              "record": f"v{row['record_id']}" if row.get("record_id") else "",
              "when": {"new": "now", "recorded": "earlier"}.get(row["status"], ""),
              "time": f"{row['seconds']:.0f} s" if row.get("seconds") is not None else ""}
             for row in summary.rows]
    columns = ["suspect", "certificate", "verdict", "trigger", "control", "p", "record", "when", "time"]
    err.print(records_table(f"monitor {summary.run}", shown, columns))
    data = summary.to_dict()
    counts = data["counts"]
    if dry_run:
        pending = sum(row["status"] == "pending" for row in summary.rows)
        err.print(f"{summary.run}: {pending} of {counts['pairs']} pairs pending (registry {summary.registry})")
        return
    rate = f", {data['pairs_per_hour']:.0f} pairs/hour" if data["pairs_per_hour"] else ""
    err.print(f"{summary.run}: {counts['pairs']} pairs, {counts['new']} verified now, {counts['recorded_earlier']} "
              f"recorded earlier, {counts['errors']} failed; {counts['certified']} certified "
              f"({summary.mode}, {summary.wall_s:.0f} s{rate}; registry {summary.registry})")
