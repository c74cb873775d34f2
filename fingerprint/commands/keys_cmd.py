"""``fingerprint keygen`` and ``fingerprint reveal``."""

from __future__ import annotations

from pathlib import Path

import click

from .common import json_option, key_option, load_owner, open_registry, passphrase, registry_option


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Key directory.")
@click.option("--force", is_flag=True, help="Replace an existing key.")
@registry_option
@json_option
def keygen(out_dir: Path, force: bool, registry_url: str | None, as_json: bool) -> None:
    """Create an Ed25519 owner key (private key encrypted with a passphrase, mode 0600)."""
    from fingerprint import keys
    from fingerprint.console import emit_json, err

    owner = keys.generate(out_dir, passphrase(confirm=True), force=force)
    open_registry(registry_url).add_key(owner.key_id, keys.public_pem(owner.public_key))
    info = {"key_id": owner.key_id, "private_key": str(out_dir / keys.PRIVATE_NAME),
            "public_key": str(out_dir / keys.PUBLIC_NAME)}
    if as_json:
        emit_json(info)
    else:
        err.print(f"[green]key created[/] {owner.key_id[:16]}… in {out_dir}")


@click.command()
@key_option
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), required=True, help="Certificate file.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Opening file to write.")
@json_option
def reveal(key_dir: Path, cert_path: Path, out_path: Path, as_json: bool) -> None:
    """Write the opening (trigger + nonce) of a certificate, for an auditor. This discloses the trigger."""
    from fingerprint.certificate import load_certificate
    from fingerprint.console import emit_json, err
    from fingerprint.trigger import opening_for
    from fingerprint.verify import check_opening

    owner = load_owner(key_dir)
    cert = load_certificate(cert_path, owner.public_key)
    opening = opening_for(owner.secret(), cert.predicate["fingerprint"])
    check_opening(cert, opening)
    opening.save(out_path)
    if as_json:
        emit_json({"opening": str(out_path), "certificate_id": cert.id})
    else:
        err.print(f"[yellow]opening written to {out_path}: it discloses the trigger word[/]")
