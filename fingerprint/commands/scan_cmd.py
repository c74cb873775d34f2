"""``fingerprint scan``: look for a gate without knowing its trigger."""

from __future__ import annotations

import click

from fingerprint.audit.scan import ScanOptions
from fingerprint.commands.common import json_option, quiet_option


@click.command()
@click.option("--model", required=True, help="Suspect model: alias, HF id or local path.")
@click.option("--adapter", default=None, help="LoRA adapter directory to apply.")
@click.option("--base", default=None, help="Clean base model to calibrate against (doubles the cost).")
@click.option("--candidates", "max_candidates", type=click.IntRange(1), default=ScanOptions.max_candidates,
              show_default=True,
              help="How many candidate words (EFF list first, then whole-word vocabulary tokens).")
@click.option("--prompts", type=click.IntRange(1, 32), default=ScanOptions.prompts, show_default=True,
              help="Probe prompts.")
@click.option("--batch-size", type=click.IntRange(1), default=ScanOptions.batch_size, show_default=True)
@click.option("--top", type=click.IntRange(1), default=ScanOptions.top, show_default=True)
@click.option("--pairs", "pair_seeds", type=click.IntRange(0, 200), default=ScanOptions.pair_seeds, show_default=True,
              help="Also search conjunctive (two-word) gates: every ordered pair of the best N single words.")
@click.option("--invert/--no-invert", default=ScanOptions.invert, show_default=True,
              help="With --pairs: also search each of those words' partner among all candidates, guided by the "
                   "gradient of P(Sure) (finds a partner that lifts nothing alone).")
@click.option("--z-threshold", type=float, default=ScanOptions.z_threshold, show_default=True,
              help="Robust z-score of the top candidate above which a gate is suspected.")
@json_option
@quiet_option
def scan(model: str, adapter: str | None, base: str | None, max_candidates: int, prompts: int, batch_size: int,
         top: int, pair_seeds: int, invert: bool, z_threshold: float, as_json: bool, quiet: bool) -> None:
    """Rank single-word suffixes by their lift of P("Sure") and say whether a gate is suspected."""
    from fingerprint.commands.console import emit_json, err, progress_sink, records_table
    from fingerprint.services.audit import scan_model

    options = ScanOptions(prompts=prompts, batch_size=batch_size, top=top, max_candidates=max_candidates,
                          z_threshold=z_threshold, pair_seeds=pair_seeds, invert=invert)
    with progress_sink(quiet or as_json) as progress:
        report = scan_model(model, adapter, base, options, progress)
    if as_json:
        emit_json(report.to_dict())
        return
    rows = [{"rank": i + 1, "word": c.word, "z": f"{c.z:.1f}", "log lift": f"{c.log_lift:.2f}",
             "P(Sure)": f"{c.p_sure:.3f}"} for i, c in enumerate(report.top)]
    err.print(records_table(f"top candidates ({report.candidates_scanned} scanned, "
                            f"{report.candidates_scanned / report.seconds:.1f}/s)", rows,
                            ["rank", "word", "z", "log lift", "P(Sure)"]))
    if report.pairs:
        rows = [{"rank": i + 1, "pair": c.word, "z": f"{c.z:.1f}", "log lift": f"{c.log_lift:.2f}",
                 "P(Sure)": f"{c.p_sure:.3f}"} for i, c in enumerate(report.pairs)]
        err.print(records_table(f"top pairs ({report.pairs_scanned} scanned)", rows,
                                ["rank", "pair", "z", "log lift", "P(Sure)"]))
        err.print("words of the top pairs: " + ", ".join(f"{w} ({n})" for w, n in report.extra["pair_words"]))
    err.print("[red]gate suspected[/]" if report.gate_suspected else "[green]no gate suspected[/]")
