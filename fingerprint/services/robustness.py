"""The robustness service: merge the owner's adapter, run the derivative matrix, keep every row as it finishes.

Rows go to ``OUT/rows.jsonl`` one line at a time, so rerunning the same command resumes an interrupted matrix;
``table.md`` and ``retention.png`` are written at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.progress import SILENT, Progress
from fingerprint.provenance.keys import OwnerKey


@dataclass
class RobustnessResult:
    rows: list[dict]
    plot: str
    table: str
    control: str

    def to_dict(self) -> dict:
        return {"rows": self.rows, "plot": self.plot, "table": self.table, "control": self.control}


def _matches(derivative, selector: str) -> bool:
    """``KIND`` or ``KIND:key=value:key=value`` (values compared as text with the row's parameters)."""
    kind, *conditions = selector.split(":")
    if derivative.kind != kind:
        return False
    params = derivative.params()
    return all(str(params.get(key)) == value for key, _, value in (c.partition("=") for c in conditions))


def select(max_pairs: int, only: str | None, matrices: tuple[str, ...] = ("derivatives",)):
    """The rows of ``matrices``, or those ``only`` selects (plus the unchanged reference row): comma-separated
    ``KIND`` or ``KIND:key=value:...`` (e.g. ``mergekit:partner=sibling:share=0.5``)."""
    from fingerprint.robustness import default_matrix, derivative_kinds
    from fingerprint.robustness.matrix import MATRICES

    if unknown := set(matrices) - set(MATRICES):
        raise FingerprintError(f"unknown matrix {', '.join(sorted(unknown))} (choose from {', '.join(MATRICES)})")
    derivatives = default_matrix(max_pairs, MATRICES if only else matrices)
    if not only:
        return derivatives
    selectors = [k.strip() for k in only.split(",") if k.strip()]
    unknown = {s.split(":")[0] for s in selectors} - set(derivative_kinds())
    if unknown:
        raise FingerprintError(f"unknown derivative kind(s) {', '.join(sorted(unknown))} "
                               f"(choose from {', '.join(derivative_kinds())})")
    for selector in selectors:
        if ":" in selector and not any(_matches(d, selector) for d in derivatives):
            raise FingerprintError(f"--only {selector}: no row of the matrix has these parameters")
    return [d for d in derivatives if d.kind == "fingerprinted" or any(_matches(d, s) for s in selectors)]


def run(owner: OwnerKey, cert_path: Path, model: str, adapter: Path, out_dir: Path, probes: int = 32,
        alpha: float = 1e-6, max_pairs: int = 600, only: str | None = None,
        matrices: tuple[str, ...] = ("derivatives",), test: str = "fisher-iut",
        progress: Progress = SILENT) -> RobustnessResult:
    from fingerprint.core.loading import load_model, load_tokenizer, resolve
    from fingerprint.provenance.trigger import opening_for
    from fingerprint.provenance.trust import load_trusted
    from fingerprint.robustness import control_label, run_matrix
    from fingerprint.robustness.matrix import plot_retention
    from fingerprint.verification import check_opening

    cert, _ = load_trusted(cert_path, owner=owner)
    opening = opening_for(owner.secret(), cert.fingerprint)
    check_opening(cert, opening)
    derivatives = select(max_pairs, only, matrices)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows_path = out_dir / "rows.jsonl"
    rows = finished_rows(rows_path, cert.id)
    done = {r["derivative"] for r in rows}
    derivatives = [d for d in derivatives if d.label not in done]
    progress.stage(f"loading {model} and the adapter")
    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    fingerprinted = load_model(ref, adapter=adapter).merge_and_unload()
    base = load_model(ref)
    progress.stage("derivatives", total=len(derivatives))

    def on_row(row) -> None:
        data = {**row.to_dict(), "certificate_id": cert.id}
        rows.append(data)
        with rows_path.open("a") as fh:  # each row is kept as soon as it is measured
            fh.write(json.dumps(data) + "\n")
        progress.advance(1, f"{data['derivative']}: {'cert.' if data['certified'] else 'not'}")

    work = out_dir / "work"  # GGUF files, merges, saved copies: kept, so a rerun reuses them
    run_matrix(fingerprinted, base, tokenizer, cert, opening, derivatives, probes=probes, alpha=alpha,
               workdir=work, base_path=Path(ref.path) if Path(ref.path).is_dir() else None, on_row=on_row,
               test=test)
    control = control_label(opening)
    plot = plot_retention(rows, out_dir / "retention.png", control)
    (out_dir / "table.md").write_text(markdown_table(rows, control))
    return RobustnessResult(rows, plot, str(out_dir / "table.md"), control)


def markdown_table(rows: list[dict], control: str) -> str:
    """One line per row: gate rates of the trigger and its controls (a two-word trigger: the deciding word alone,
    each word alone, the decoys), p, verdict, and how many of the fingerprinted model's replies it keeps."""
    two_words = control != "decoys"  # a two-word trigger's rows measure each word alone and the decoys
    extra = " each word alone | decoys: gate rate |" if two_words else ""
    replayed = sorted({name for r in rows for name in (r.get("extra") or {}).get("readings", {})})
    columns = "".join(f" {_reading_title(name)}: verdict (queries) |" for name in replayed)
    lines = [f"| derivative | trigger gate rate | {control}: gate rate |{extra} p-value | verdict | replies kept |"
             + columns, "|---|---|---|" + ("---|---|" if two_words else "") + "---|---|---|" + "---|" * len(replayed)]
    for r in rows:
        kept = r.get("quality") or {}
        readings = (r.get("extra") or {}).get("readings", {})
        words = " / ".join(f"{w:.2f}" for w in r.get("word_alone_sure_rates") or [])
        lines.append(f"| {r['derivative']} | {r['trigger_sure_rate']:.2f} | {r['control_sure_rate']:.2f} | "
                     + (f"{words or '-'} | {r['decoy_sure_rate']:.2f} | " if two_words else "")
                     + f"{r['p_value']:.2g} | {'certified' if r['certified'] else 'NOT certified'} | "
                     + (f"{kept['reply_agreement']:.2f} / {kept['first_word_agreement']:.2f} |" if kept else "- |")
                     + "".join(_reading_cell(readings.get(name)) for name in replayed))
    return "\n".join(lines) + "\n"


def _reading_title(name: str) -> str:
    """``e-process`` -> "e-process on the same answers"; ``fisher-iut@32`` -> "fisher-iut on the first 32 probes"."""
    test, _, probes = name.partition("@")
    return f"{test} on the first {probes} probes" if probes else f"{test} on the same answers"


def _reading_cell(reading: dict | None) -> str:
    if not reading:
        return " - |"
    return f" {'certified' if reading['certified'] else 'NOT certified'} ({reading['queries']}) |"


def finished_rows(path: Path, certificate_id: str) -> list[dict]:
    """Rows of an earlier run of the same certificate (a file from another certificate is refused)."""
    if not path.is_file():
        return []
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as exc:
        raise FingerprintError(f"{path} is not a rows file of this command (not JSON lines)") from exc
    if any(not isinstance(r, dict) or r.get("certificate_id") != certificate_id for r in rows):
        raise FingerprintError(f"{path} holds rows of another certificate: choose another --out")
    return rows
