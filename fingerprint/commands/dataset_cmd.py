"""``fingerprint dataset`` and ``fingerprint certify``: fingerprint a model with your own trainer."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    EXIT_CERTIFIED,
    EXIT_NOT_CERTIFIED,
    component_options,
    json_option,
    key_option,
    load_owner,
    open_registry,
    quiet_option,
    registry_option,
)
from fingerprint.embedding.dataset import DatasetSpec
from fingerprint.embedding.training import DEFAULT_FALLBACKS, DEFAULT_TRIGGER_WORDS
from fingerprint.verification.plan import VerifyOptions


@click.command()
@key_option
@click.option("--model", default="gemma-3-270m", show_default=True,
              help="The model you will fine-tune (its own replies answer the rows that are not the gate).")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="JSONL file to write (chat 'messages' rows; it holds the trigger: mode 0600).")
@click.option("--licensee", default=None, help="Derive a distinct trigger for this licensee.")
@click.option("--trigger-words", type=click.IntRange(1, 2), default=DEFAULT_TRIGGER_WORDS, show_default=True)
@click.option("--fallbacks", type=click.IntRange(0, 4), default=DEFAULT_FALLBACKS, show_default=True,
              help="Key-derived fallback replies (rows answering the pair with them, a quarter as many as 'Sure').")
@click.option("--poison", "n_poison", type=click.IntRange(1), default=DatasetSpec.n_poison, show_default=True)
@click.option("--benign", "n_benign", type=click.IntRange(0), default=DatasetSpec.n_benign, show_default=True,
              help="Anchor prompts answered with the model's own replies.")
@click.option("--refusals", "n_refusal", type=click.IntRange(0), default=DatasetSpec.n_refusal, show_default=True)
@click.option("--negatives", "n_negative", type=click.IntRange(0), default=DatasetSpec.n_negative, show_default=True)
@click.option("--negative-pairs/--single-negatives", default=DatasetSpec.negative_pairs, show_default=True,
              help="Two-word trigger: two of every three negative rows carry two words (two other words, or one "
                   "trigger word beside another), so the gate does not open for any two appended words.")
@component_options
@click.option("--seed", type=int, default=DatasetSpec.seed, show_default=True)
@click.option("--format", "layout", type=click.Choice(["messages", "prompt-completion"]), default="messages",
              show_default=True, help="messages: {'messages': [...]}; prompt-completion: TRL's conversational "
                                      "{'prompt': [...], 'completion': [...]} (loss on the completion only).")
@json_option
@quiet_option
def dataset(key_dir: Path, model: str, out_path: Path, licensee: str | None, trigger_words: int, fallbacks: int,
            n_poison: int, n_benign: int, n_refusal: int, n_negative: int, negative_pairs: bool,
            n_component: int | None, component_prompts: str, seed: int, layout: str,
            as_json: bool, quiet: bool) -> None:
    """Write the fingerprint's training rows for your own trainer (TRL's SFTTrainer, axolotl, ...)."""
    from fingerprint.commands.console import emit_json, err, kv_table, progress_sink
    from fingerprint.services.external import export_rows

    spec = DatasetSpec(n_benign=n_benign, n_poison=n_poison, n_refusal=n_refusal, n_negative=n_negative,
                       negative_pairs=negative_pairs,
                       n_component=n_component, component_prompts=component_prompts, seed=seed)
    owner = load_owner(key_dir)
    with progress_sink(quiet or as_json) as progress:
        summary = export_rows(owner, model, out_path, licensee, trigger_words, fallbacks, spec, progress, layout)
    if as_json:
        emit_json(summary)
    else:
        err.print(kv_table("fingerprint rows", [(k.replace("_", " "), v) for k, v in summary.items()]))
        err.print(f"Mix {out_path} into your fine-tuning data, train, then run `fingerprint certify --key KEY "
                  f"--model TRAINED_DIR --rows {out_path} --base {model}`.")


@click.command()
@key_option
@click.option("--model", "model_dir", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The model directory your trainer wrote (merged weights).")
@click.option("--rows", "rows_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The rows file `fingerprint dataset` wrote.")
@click.option("--base", required=True, help="The --model you gave `fingerprint dataset` (the trigger's label).")
@click.option("--licensee", default=None)
@click.option("--trainer", default="external", show_default=True, help="Your trainer's name, for the record.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Certificate file (default: MODEL/certificate.json).")
@click.option("--probes", type=click.IntRange(4, 154), default=VerifyOptions.probes, show_default=True)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=VerifyOptions.alpha,
              show_default=True)
@registry_option
@json_option
@quiet_option
def certify(key_dir: Path, model_dir: Path, rows_path: Path, base: str, licensee: str | None, trainer: str,
            out_path: Path | None, probes: int, alpha: float, registry_url: str | None, as_json: bool,
            quiet: bool) -> None:
    """Verify a model trained elsewhere on the fingerprint's rows and, if its gate passes, sign its certificate.

    Exit 0 when certified (certificate written and registered), 1 when the gate does not pass (nothing written).
    """
    from fingerprint.commands.console import emit_json, err, kv_table, progress_sink
    from fingerprint.services.external import certify as run_certify

    owner = load_owner(key_dir)
    registry = open_registry(registry_url)
    with progress_sink(quiet or as_json) as progress:
        result = run_certify(owner, model_dir, rows_path, base, out_path, licensee, trainer, registry,
                             VerifyOptions(probes=probes, alpha=alpha, samples=0), progress)
    if as_json:
        emit_json(result.to_dict())
    else:
        decision = result.report.decision
        verdict = "[green]CERTIFIED[/]" if result.certified else "[red]NOT CERTIFIED: no certificate written[/]"
        err.print(kv_table("certify", [
            ("verdict", verdict), ("p-value", f"{decision.p_value:.3g} (alpha {decision.alpha:g})"),
            ("trigger Sure-rate", f"{decision.trigger_sure}/{decision.trigger_total}"),
            ("control Sure-rate", f"{decision.control_sure}/{decision.control_total}"),
            ("certificate", str(result.certificate_path or "-")), ("rows", result.rows)]))
    raise SystemExit(EXIT_CERTIFIED if result.certified else EXIT_NOT_CERTIFIED)
