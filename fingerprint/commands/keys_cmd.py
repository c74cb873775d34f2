"""``fingerprint keygen``, ``rekey`` and ``reveal``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fingerprint.commands.common import json_option, key_option, load_owner, open_registry, passphrase, registry_option


@click.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Key directory.")
@click.option("--force", is_flag=True, help="Replace an existing key.")
@registry_option
@json_option
def keygen(out_dir: Path, force: bool, registry_url: str | None, as_json: bool) -> None:
    """Create an Ed25519 owner key (private key sealed with the passphrase, mode 0600) and register it."""
    from fingerprint.commands.console import emit_json, err
    from fingerprint.core.atomic import remove_quietly
    from fingerprint.provenance import keys

    registry = open_registry(registry_url)  # a bad registry fails before any key file is written
    registry.check_writable()
    existed = {name: (out_dir / name).exists() for name in (keys.PRIVATE_NAME, keys.PUBLIC_NAME)}
    owner = keys.generate(out_dir, passphrase(confirm=True), force=force)
    try:
        registry.add_key(owner.key_id, keys.public_pem(owner.public_key))
    except BaseException:
        for name, was_there in existed.items():  # an unregistered new key is removed again
            if not was_there:
                remove_quietly(out_dir / name)
        raise
    info = {"key_id": owner.key_id, "private_key": str(out_dir / keys.PRIVATE_NAME),
            "public_key": str(out_dir / keys.PUBLIC_NAME)}
    if as_json:
        emit_json(info)
    else:
        err.print(f"[green]key created[/] {owner.key_id[:16]}… in {out_dir}")


@click.command()
@key_option
@json_option
def rekey(key_dir: Path, as_json: bool) -> None:
    """Re-encrypt the private key in the current format (Argon2id); a new passphrase from
    FINGERPRINT_NEW_PASSPHRASE or the prompt (empty: keep the old one)."""
    from fingerprint.commands.console import emit_json, err
    from fingerprint.provenance import keys

    old = passphrase()
    new = os.environ.get("FINGERPRINT_NEW_PASSPHRASE")
    if new is None and sys.stdin.isatty():
        new = click.prompt("New passphrase (empty: keep)", hide_input=True, confirmation_prompt=True,
                           default="", show_default=False) or None
    owner = keys.rekey(key_dir, old, new)
    if as_json:
        emit_json({"key_id": owner.key_id, "format": keys.KEY_FORMAT, "new_passphrase": new is not None})
    else:
        err.print(f"[green]key re-encrypted[/] {owner.key_id[:16]}… (Argon2id, AES-256-GCM)")


@click.command()
@key_option
@click.option("--cert", "cert_path", type=click.Path(path_type=Path), required=True, help="Certificate file.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="Opening file to write.")
@json_option
def reveal(key_dir: Path, cert_path: Path, out_path: Path, as_json: bool) -> None:
    """Write the opening (trigger + nonce) of a certificate, for an auditor. This discloses the trigger."""
    from fingerprint.commands.console import emit_json, err
    from fingerprint.provenance.trigger import opening_for
    from fingerprint.provenance.trust import load_trusted
    from fingerprint.verification import check_opening

    owner = load_owner(key_dir)
    cert, _ = load_trusted(cert_path, owner=owner)
    opening = opening_for(owner.secret(), cert.fingerprint)
    check_opening(cert, opening)
    opening.save(out_path)  # mode 0600, through a tracked temporary file
    if as_json:
        emit_json({"opening": str(out_path), "certificate_id": cert.id})
    else:
        err.print(f"[yellow]opening written to {out_path} (mode 0600): it discloses the trigger[/]")
