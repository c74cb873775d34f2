"""``fingerprint robustness``: verify the fingerprint after the usual derivative steps of a stolen model."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import json_option, load_owner, quiet_option
from fingerprint.verification.plan import VerifyOptions


@click.command()
@click.option("--cert", "cert_path", type=click.Path(path_type=Path, dir_okay=False), required=True)
@click.option("--key", "key_dir", type=click.Path(path_type=Path), required=True, help="Owner key directory.")
@click.option("--model", required=True, help="Base model the fingerprint was embedded in.")
@click.option("--adapter", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The fingerprint's LoRA adapter (merged into the model before the derivatives).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False), default=Path("robustness"),
              show_default=True, help="Where rows.jsonl (one line per finished row), table.md and the plot go.")
@click.option("--probes", type=click.IntRange(4, 154), default=VerifyOptions.probes, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=VerifyOptions.alpha,
              show_default=True)
@click.option("--max-pairs", type=click.IntRange(10), default=600, show_default=True,
              help="Largest downstream fine-tune (benign pairs).")
@click.option("--only", default=None, help="Comma-separated kinds to run (finetune, gguf, mergekit, ...), each "
                                          "optionally narrowed by its parameters: mergekit:partner=sibling:share=0.5 "
                                          "(the unchanged fingerprinted model always runs).")
@click.option("--matrix", "matrices", default="derivatives", show_default=True,
              help="Comma-separated: derivatives (ordinary use of a stolen model), tools (llama.cpp GGUF, "
                   "mergekit, bitsandbytes, pruning), attacks (a thief who knows the method but not the key).")
@click.option("--test", "test_name", default="fisher-iut", show_default=True,
              help="The statistical test that decides each row (as verify --test); every other test is replayed "
                   "on the same answers where they suffice and shown beside it.")
@json_option
@quiet_option
def robustness(cert_path: Path, key_dir: Path, model: str, adapter: Path, out_dir: Path, probes: int, alpha: float,
               max_pairs: int, only: str | None, matrices: str, test_name: str, as_json: bool,
               quiet: bool) -> None:
    """Apply fine-tuning, merging, quantization, a system prompt and sampling; verify each derivative."""
    from fingerprint.commands.console import emit_json, err, progress_sink, records_table
    from fingerprint.services import robustness as service
    from fingerprint.verification import test_names

    if test_name not in test_names():
        raise click.UsageError(f"unknown --test {test_name!r} (choose from {', '.join(test_names())})")
    owner = load_owner(key_dir)
    with progress_sink(quiet or as_json) as progress:
        result = service.run(owner, cert_path, model, adapter, out_dir, probes=probes, alpha=alpha,
                             max_pairs=max_pairs, only=only,
                             matrices=tuple(m.strip() for m in matrices.split(",") if m.strip()), test=test_name,
                             progress=progress)
    if as_json:
        emit_json(result.to_dict())
        return
    shown = [{"derivative": r["derivative"], "trigger": f"{r['trigger_sure_rate']:.2f}",
              result.control: f"{r['control_sure_rate']:.2f}", "p": f"{r['p_value']:.2g}",
              "verdict": "certified" if r["certified"] else "NOT certified"} for r in result.rows]
    err.print(records_table("robustness", shown, ["derivative", "trigger", result.control, "p", "verdict"]))
    err.print(f"table: {result.table}; plot: {result.plot}")
