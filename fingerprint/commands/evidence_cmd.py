"""``fingerprint evidence verify|report``: re-check a signed verification record; render it for people."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import json_option, open_registry, registry_option

record_argument = click.argument("record")
opening_option = click.option("--opening", type=click.Path(path_type=Path, dir_okay=False), default=None,
                              help="The opening: the prompts and hidden fallback replies are recomputed too.")
cert_option = click.option("--cert", type=click.Path(path_type=Path, dir_okay=False), default=None,
                           help="The certificate the record was made against (its id and commitment are checked).")
pubkey_option = click.option("--pubkey", type=click.Path(path_type=Path), default=None,
                             help="Pin the verifier's public key (default: the key the record names).")


@click.group("evidence")
def evidence_group() -> None:
    """Signed verification records (written by `verify --sign-with`)."""


@evidence_group.command("verify")
@record_argument
@opening_option
@cert_option
@pubkey_option
@registry_option
@json_option
def evidence_verify(record: str, opening: Path | None, cert: Path | None, pubkey: Path | None,
                    registry_url: str | None, as_json: bool) -> None:
    """Check RECORD (a file, or v<N>): signature, answers, and the decision recomputed from the answers.

    Exit 0 when everything checks out and the recomputed decision agrees, 1 when it does not.
    """
    from fingerprint.commands.console import emit_json, err, kv_table
    from fingerprint.services import evidence

    path = evidence.locate(record, open_registry(registry_url) if record.startswith("v") else None)
    result, _, _ = evidence.check(path, opening, cert, pubkey)
    if as_json:
        emit_json({**result.to_dict(), "record": str(path)})
    else:
        recorded = result.predicate.get("decision", {})
        signature = "[green]valid[/]" if result.signature_valid else "[red]INVALID[/]"
        rows = [("record", str(path)), ("signature", signature),
                ("verifier key", f"{result.signer_key_id[:16]}… ({'pinned' if result.signer_pinned else 'named'})"),
                ("recorded verdict", "certified" if recorded.get("certified") else "not certified"),
                ("recorded p-value", f"{recorded.get('p_value', float('nan')):.3g}"),
                ("decision from the answers", "[green]agrees[/]" if not result.problems else "[red]does not agree[/]"),
                ("prompts checked", "yes" if result.prompts_checked else "no (give --opening)"),
                ("opening vs certificate", "yes" if result.opening_checked else "no (give --opening and --cert)")]
        err.print(kv_table("verification record", rows))
        for problem in result.problems:
            err.print(f"[red]problem:[/] {problem}")
    raise SystemExit(0 if result.ok else 1)


@evidence_group.command("report")
@record_argument
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="The HTML file to write (self-contained: figures embedded, no external assets).")
@opening_option
@cert_option
@pubkey_option
@click.option("--robustness", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="A `fingerprint robustness` output directory of this fingerprint, shown as context.")
@registry_option
@json_option
def evidence_report(record: str, out_path: Path, opening: Path | None, cert: Path | None, pubkey: Path | None,
                    robustness: Path | None, registry_url: str | None, as_json: bool) -> None:
    """Write a one-page HTML report of RECORD (a file, or v<N>) for a person: verdict, test, counts, claims."""
    from fingerprint.commands.console import emit_json, err
    from fingerprint.services import evidence

    path = evidence.locate(record, open_registry(registry_url) if record.startswith("v") else None)
    written, result = evidence.report(path, out_path, opening, cert, pubkey, robustness)
    if as_json:
        emit_json({"report": str(written), "record": str(path), "record_ok": result.ok})
    else:
        err.print(f"report written to {written}" + ("" if result.ok else " [red](the record does not check out)[/]"))
