"""``fingerprint cert verify``: check a certificate's signature and show what it states."""

from __future__ import annotations

from pathlib import Path

import click

from .common import json_option


@click.group("cert")
def cert_group() -> None:
    """Work with signed fingerprint certificates."""


@cert_group.command("verify")
@click.argument("cert_path", type=click.Path(path_type=Path))
@click.option("--pubkey", type=click.Path(path_type=Path), default=None,
              help="Expected signer (PEM or key directory); default: the key the certificate names.")
@json_option
def cert_verify(cert_path: Path, pubkey: Path | None, as_json: bool) -> None:
    """Exit 0 if the signature verifies, 2 otherwise."""
    from fingerprint.certificate import load_certificate
    from fingerprint.console import emit_json, err, kv_table
    from fingerprint.keys import load_public

    cert = load_certificate(cert_path, load_public(pubkey) if pubkey else None)
    predicate = cert.predicate
    info = {"valid": True, "certificate_id": cert.id, "key_id": cert.key_id, "pinned": pubkey is not None,
            "subject": cert.subjects, "base_model": predicate["base_model"]["name"],
            "label": predicate["fingerprint"]["label"], "poison_count": predicate["dataset"]["n_poison"],
            "created": predicate["created"]}
    if as_json:
        emit_json(info)
        return
    rows = [("signature", "[green]valid[/]" + ("" if pubkey else " (self-signed key; pin it with --pubkey)")),
            ("signed by", cert.key_id), ("base model", info["base_model"]), ("label", info["label"]),
            ("poisoned examples", info["poison_count"]), ("created", info["created"])]
    rows += [(f"subject {s['name']}", s["digest"]["sha256"]) for s in cert.subjects]
    err.print(kv_table(f"certificate {cert.id[:16]}…", rows))
