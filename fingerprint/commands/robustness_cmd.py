"""``fingerprint robustness``: verify the fingerprint after the usual derivative steps of a stolen model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import json_option, load_owner, quiet_option


@click.command()
@click.option("--cert", "cert_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--key", "key_dir", type=click.Path(path_type=Path), required=True, help="Owner key directory.")
@click.option("--model", required=True, help="Base model the fingerprint was embedded in.")
@click.option("--adapter", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The fingerprint's LoRA adapter (merged into the model before the derivatives).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("robustness"),
              show_default=True, help="Where rows.jsonl (one line per finished row), table.md and the plot go.")
@click.option("--probes", type=click.IntRange(4, 154), default=32, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=1e-6, show_default=True)
@click.option("--max-pairs", type=click.IntRange(10), default=600, show_default=True,
              help="Largest downstream fine-tune (benign pairs).")
@click.option("--only", default=None, help="Comma-separated kinds to run (finetune, interpolate, int8, ...).")
@json_option
@quiet_option
def robustness(cert_path: Path, key_dir: Path, model: str, adapter: Path, out_dir: Path, probes: int, alpha: float,
               max_pairs: int, only: str | None, as_json: bool, quiet: bool) -> None:
    """Apply fine-tuning, merging, quantization, a system prompt and sampling; verify each derivative."""
    from fingerprint.certificate import load_certificate
    from fingerprint.console import emit_json, err, progress_bar, records_table, status
    from fingerprint.models import load_model, load_tokenizer, resolve
    from fingerprint.robustness import control_label, default_matrix, plot_retention, run_matrix
    from fingerprint.trigger import opening_for
    from fingerprint.verification import check_opening

    owner = load_owner(key_dir)
    cert = load_certificate(cert_path, owner.public_key)
    opening = opening_for(owner.secret(), cert.fingerprint)
    check_opening(cert, opening)
    derivatives = default_matrix(max_pairs)
    if only:
        kinds = {k.strip() for k in only.split(",")}
        derivatives = [d for d in derivatives if d.kind in kinds or d.kind == "fingerprinted"]
    quiet = quiet or as_json
    with status(f"loading {model} and the adapter", quiet):
        ref = resolve(model)
        tokenizer = load_tokenizer(ref)
        fingerprinted = load_model(ref, adapter=adapter).merge_and_unload()
        base = load_model(ref)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "rows.jsonl"
    rows = _finished_rows(rows_path, cert.id)  # rerunning the command resumes an interrupted matrix
    done = {r["derivative"] for r in rows}
    derivatives = [d for d in derivatives if d.label not in done]
    with progress_bar(quiet) as bar:
        task = bar.add_task("derivatives", total=len(derivatives), info="")

        def on_row(row) -> None:
            data = {**row.to_dict(), "certificate_id": cert.id}
            rows.append(data)
            with rows_path.open("a") as fh:  # each row is kept as soon as it is measured
                fh.write(json.dumps(data) + "\n")
            bar.update(task, advance=1, info=f"{data['derivative']}: {'cert.' if data['certified'] else 'not'}")

        run_matrix(fingerprinted, base, tokenizer, cert, opening, derivatives, probes=probes, alpha=alpha,
                   on_row=on_row)
    control = control_label(opening)
    plot = plot_retention(rows, out_dir / "retention.png", control)
    decoys = any("decoy_sure_rate" in r.get("extra", {}) for r in rows)  # two-word rows also measure the decoys
    table = [f"| derivative | trigger Sure-rate | {control}: Sure-rate |{' decoys: Sure-rate |' if decoys else ''} "
             "p-value | verdict |", "|---|---|---|" + ("---|" if decoys else "") + "---|---|"]
    table += [f"| {r['derivative']} | {r['trigger_sure_rate']:.2f} | {r['decoy_sure_rate']:.2f} | "
              + (f"{_rate(r['extra'].get('decoy_sure_rate'))} | " if decoys else "")
              + f"{r['p_value']:.2g} | {'certified' if r['certified'] else 'NOT certified'} |" for r in rows]
    (out_dir / "table.md").write_text("\n".join(table) + "\n")
    if as_json:
        emit_json({"rows": rows, "plot": plot, "table": str(out_dir / "table.md")})
        return
    shown = [{"derivative": r["derivative"], "trigger": f"{r['trigger_sure_rate']:.2f}",
              control: f"{r['decoy_sure_rate']:.2f}", "p": f"{r['p_value']:.2g}",
              "verdict": "certified" if r["certified"] else "NOT certified"} for r in rows]
    err.print(records_table("robustness", shown, ["derivative", "trigger", control, "p", "verdict"]))
    err.print(f"table: {out_dir / 'table.md'}; plot: {plot}")


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _finished_rows(path: Path, certificate_id: str) -> list[dict]:
    """Rows of an earlier run of the same certificate (a file from another certificate is refused)."""
    from fingerprint.errors import FingerprintError

    if not path.is_file():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if any(r.get("certificate_id") != certificate_id for r in rows):
        raise FingerprintError(f"{path} holds rows of another certificate: choose another --out")
    return rows
