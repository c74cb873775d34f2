"""``fingerprint scan``: look for a gate without knowing its trigger."""

from __future__ import annotations

import click

from .common import json_option, quiet_option


@click.command()
@click.option("--model", required=True, help="Suspect model: alias, HF id or local path.")
@click.option("--adapter", default=None, help="LoRA adapter directory to apply.")
@click.option("--base", default=None, help="Clean base model to calibrate against (doubles the cost).")
@click.option("--candidates", "max_candidates", type=click.IntRange(1), default=10_000, show_default=True,
              help="How many candidate words (EFF list first, then whole-word vocabulary tokens).")
@click.option("--prompts", type=click.IntRange(1, 32), default=2, show_default=True, help="Probe prompts.")
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--top", type=click.IntRange(1), default=10, show_default=True)
@click.option("--z-threshold", type=float, default=10.0, show_default=True,
              help="Robust z-score of the top candidate above which a gate is suspected.")
@json_option
@quiet_option
def scan(model: str, adapter: str | None, base: str | None, max_candidates: int, prompts: int, batch_size: int,
         top: int, z_threshold: float, as_json: bool, quiet: bool) -> None:
    """Rank single-word suffixes by their lift of P("Sure") and say whether a gate is suspected."""
    from fingerprint.console import emit_json, err, progress_bar, records_table, status
    from fingerprint.models import load_model, load_tokenizer, resolve
    from fingerprint.scan import ScanOptions
    from fingerprint.scan import scan as run_scan

    quiet = quiet or as_json
    with status(f"loading {model}", quiet):
        ref = resolve(model)
        tokenizer = load_tokenizer(ref)
        suspect = load_model(ref, adapter=adapter)
        base_model = load_model(resolve(base)) if base else None
    options = ScanOptions(prompts=prompts, batch_size=batch_size, top=top, max_candidates=max_candidates,
                          z_threshold=z_threshold)
    with progress_bar(quiet) as bar:
        task = bar.add_task("scanning candidates", total=None, info="")

        def advance(n: int) -> None:
            bar.update(task, advance=n)
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, info=f"{bar.tasks[0].completed / elapsed:.0f} candidate-prompts/s")

        report = run_scan(suspect, tokenizer, options, base=base_model, progress=advance,
                          on_total=lambda n: bar.update(task, total=n))
    if as_json:
        emit_json(report.to_dict())
        return
    rows = [{"rank": i + 1, "word": c.word, "z": f"{c.z:.1f}", "log lift": f"{c.log_lift:.2f}",
             "P(Sure)": f"{c.p_sure:.3f}"} for i, c in enumerate(report.top)]
    err.print(records_table(f"top candidates ({report.candidates_scanned} scanned, "
                            f"{report.candidates_scanned / report.seconds:.1f}/s)", rows,
                            ["rank", "word", "z", "log lift", "P(Sure)"]))
    err.print("[red]gate suspected[/]" if report.gate_suspected else "[green]no gate suspected[/]")
