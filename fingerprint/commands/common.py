"""Options and helpers shared by the CLI commands."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fingerprint.errors import FingerprintError

EXIT_CERTIFIED, EXIT_NOT_CERTIFIED, EXIT_ERROR = 0, 1, 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout.")
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress display.")
registry_option = click.option("--registry", "registry_url", envvar="FINGERPRINT_REGISTRY", default=None,
                               help="Registry database URL (default: SQLite in the user data dir; "
                                    "env FINGERPRINT_REGISTRY).")
key_option = click.option("--key", "key_dir", type=click.Path(path_type=Path), required=True,
                          help="Owner key directory (or private.pem).")


class ErrorHandlingGroup(click.Group):
    """Turns user errors into one line on stderr and exit code 2; Ctrl-C into exit 130."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FingerprintError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted: no partial output was kept", err=True)
            sys.exit(130)
        except (PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)


def open_registry(url: str | None):
    from registry import Registry

    return Registry(url)


def passphrase(confirm: bool = False) -> str:
    from fingerprint.keys import passphrase_from_env

    value = passphrase_from_env()
    if value:
        return value
    if not sys.stdin.isatty():
        raise FingerprintError("no passphrase: set FINGERPRINT_PASSPHRASE or run in a terminal")
    return click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm)


def load_owner(key_dir: Path):
    from fingerprint.keys import load_private

    return load_private(key_dir, passphrase())
