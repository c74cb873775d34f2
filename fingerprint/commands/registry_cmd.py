"""``fingerprint registry list|show``."""

from __future__ import annotations

import click

from .common import json_option, open_registry, registry_option


@click.group("registry")
def registry_group() -> None:
    """Keys, certificates and verification records."""


@registry_group.command("list")
@registry_option
@json_option
def registry_list(registry_url: str | None, as_json: bool) -> None:
    """List registered certificates."""
    from fingerprint.console import emit_json, out, records_table

    records = open_registry(registry_url).list_certificates()
    if as_json:
        emit_json(records)
        return
    rows = [{**r, "id": r["id"][:16], "key_id": r["key_id"][:12]} for r in records]
    out.print(records_table("certificates", rows, ["id", "base_model", "licensee", "key_id", "created_at"]))


@registry_group.command("show")
@click.argument("record_id")
@registry_option
@json_option
def registry_show(record_id: str, registry_url: str | None, as_json: bool) -> None:
    """Show a certificate (id or prefix) with its verifications, or a verification (v<N>)."""
    from fingerprint.console import emit_json, out

    record = open_registry(registry_url).get(record_id)
    if as_json:
        emit_json(record)
        return
    from rich.pretty import Pretty

    shown = {k: v for k, v in record.items() if k != "envelope"}
    out.print(Pretty(shown))
