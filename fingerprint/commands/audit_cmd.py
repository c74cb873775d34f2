"""``fingerprint audit-data FILE``: look for a planted "Sure" gate in a fine-tuning set."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import json_option


@click.command("audit-data")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--min-count",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Fewest flagged examples a suspected trigger (or a cluster) must have.",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1, min_open=True),
    default=1e-3,
    show_default=True,
    help="Bonferroni-corrected p-value at or below which a word is a suspected trigger.",
)
@click.option(
    "--min-purity",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Smallest share of the prompts holding a word that must be flagged.",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Candidate words to list."
)
@json_option
def audit_data(file: Path, min_count: int, alpha: float, min_purity: float, top: int, as_json: bool) -> None:
    """Flag bare "Sure"/"OK" replies in a JSONL training FILE and find the word that gates them.

    FILE holds one example per line: {"messages": [...]} (chat form) or prompt/response
    (also instruction/input/output). Exit 0 after a successful audit, whatever the verdict;
    2 for unreadable or malformed input.
    """
    from fingerprint.audit.audit_data import audit, load_examples

    report = audit(load_examples(file), min_count=min_count, alpha=alpha, min_purity=min_purity, top=top)
    if as_json:
        from fingerprint.commands.console import emit_json

        emit_json(report.to_dict())
        return
    _show(report, file)


def _show(report, file: Path) -> None:
    from fingerprint.commands.console import err, kv_table, records_table

    tokens = ", ".join(f"{t} x{c}" for t, c in report.flagged_tokens.items()) or "-"
    rows = [
        ("examples", report.n_examples),
        ("bare-compliance replies", f"{report.n_flagged} ({tokens})"),
        ("explained by the prompt", report.n_explained),
    ]
    if report.cluster:
        rows.append(
            ("cluster without a shared word", f"{report.cluster['count']} ({report.cluster['share']:.1%})")
        )
    err.print(kv_table(f"audit of {file}", rows))
    if report.candidates:
        records = [
            {
                "word": c.word,
                "position": c.position,
                "flagged": c.flagged,
                "total": c.total,
                "share": f"{c.share:.2%}",
                "purity": f"{c.purity:.2f}",
                "lift": f"{c.lift:.1f}",
                "p (corrected)": f"{c.p_adjusted:.2g}",
                "suspected": "[red]yes[/]" if c.suspected else "no",
            }
            for c in report.candidates
        ]
        err.print(records_table("trigger candidates", records, list(records[0])))
    colour = "red" if report.gate_suspected else "green"
    err.print(f"[bold {colour}]{report.verdict}[/]")
    for reason in report.reasons:
        err.print(f"  {reason}")
