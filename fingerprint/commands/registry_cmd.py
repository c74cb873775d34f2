"""``fingerprint registry list|show|add``."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import json_option, open_registry, registry_option


@click.group("registry")
def registry_group() -> None:
    """Keys, certificates and verification records."""


@registry_group.command("list")
@registry_option
@json_option
def registry_list(registry_url: str | None, as_json: bool) -> None:
    """List registered certificates."""
    from fingerprint.commands.console import emit_json, out, records_table

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
    from fingerprint.commands.console import emit_json, out

    record = open_registry(registry_url).get(record_id)
    if as_json:
        emit_json(record)
        return
    from rich.pretty import Pretty

    shown = {k: v for k, v in record.items() if k != "envelope"}
    if isinstance(shown.get("details"), dict):
        shown["details"] = {k: v for k, v in shown["details"].items() if k != "certificate_envelope"}
    out.print(Pretty(shown))


@registry_group.command("add")
@click.argument("cert_path", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="The signer's public key (PEM or key directory): the certificate must verify against it.")
@click.option("--trust-certificate-key", is_flag=True,
              help="Register the key the certificate names without pinning it (trust on first use).")
@registry_option
@json_option
def registry_add(cert_path: Path, pubkey: Path | None, trust_certificate_key: bool, registry_url: str | None,
                 as_json: bool) -> None:
    """Register a certificate and its signer, so later verifications link to it and trust its key."""
    from fingerprint.commands.console import emit_json, err
    from fingerprint.core.errors import FingerprintError
    from fingerprint.provenance.certificate import load_certificate
    from fingerprint.provenance.keys import load_public
    from fingerprint.services.records import register_certificate

    registry = open_registry(registry_url)
    if pubkey is not None:
        cert, how = load_certificate(cert_path, load_public(pubkey)), "pinned"
    else:
        cert = load_certificate(cert_path)
        if registry.find_key(cert.key_id) is not None:
            how = "registry"
        elif trust_certificate_key:
            how = "certificate key (trust on first use)"
        else:
            raise FingerprintError("the signer of this certificate is not registered: give its public key with "
                                   "--pubkey, or --trust-certificate-key to trust the key it names")
    cert_id = register_certificate(registry, cert)
    info = {"certificate_id": cert_id, "key_id": cert.key_id, "signer": how, "registry": registry.url}
    if as_json:
        emit_json(info)
    else:
        err.print(f"[green]registered[/] certificate {cert_id[:16]}… signed by {cert.key_id[:16]}… ({how})")
