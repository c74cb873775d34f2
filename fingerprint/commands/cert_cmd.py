"""``fingerprint cert verify``: check a certificate's signature, say how its signer is trusted, show its claims."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import json_option, open_registry, registry_option


@click.group("cert")
def cert_group() -> None:
    """Work with signed fingerprint certificates."""


@cert_group.command("verify")
@click.argument("cert_path", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Expected signer (PEM or key directory); default: a key registered in the registry, else "
                   "the key the certificate names (reported as unpinned).")
@registry_option
@json_option
def cert_verify(cert_path: Path, pubkey: Path | None, registry_url: str | None, as_json: bool) -> None:
    """Exit 0 if the signature verifies, 2 otherwise; ``signer_pinned`` says whether the signer is trusted."""
    from fingerprint.commands.console import emit_json, err, kv_table
    from fingerprint.provenance.trust import load_trusted

    cert, trust = load_trusted(cert_path, pubkey=pubkey, registry=open_registry(registry_url) if not pubkey else None)
    info = cert.info
    summary = {"valid": True, "certificate_id": cert.id, "key_id": cert.key_id, "pinned": trust.pinned,
               **trust.to_dict(), "subject": cert.subjects, "base_model": info.base_model.name,
               "label": info.fingerprint.label, "trigger_words": info.fingerprint.trigger_words,
               "commitment_scheme": info.fingerprint.commitment_scheme,
               "poison_count": getattr(info.dataset, "n_poison", None), "created": info.created.isoformat(),
               "predicate_type": cert.statement["predicateType"]}
    if trust.warning:  # on stderr with --json too
        click.echo(f"warning: {trust.warning}", err=True)
    if as_json:
        emit_json(summary)
        return
    signature = {"pinned": "[green]valid[/] (pinned with --pubkey)", "registry": "[green]valid[/] (key registered)",
                 "unpinned": "[yellow]valid, signer not pinned[/]"}[trust.how]
    rows = [("signature", signature), ("signed by", cert.key_id), ("base model", summary["base_model"]),
            ("label", summary["label"]), ("trigger words", summary["trigger_words"]),
            ("poisoned examples", summary["poison_count"]), ("created", summary["created"])]
    rows += [(f"subject {s['name']}", s["digest"]["sha256"]) for s in cert.subjects]
    err.print(kv_table(f"certificate {cert.id[:16]}…", rows))
