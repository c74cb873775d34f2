"""Evidence services: re-check a signed verification record, and render its report."""

from __future__ import annotations

from pathlib import Path

from fingerprint.core.errors import FingerprintError


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FingerprintError(f"record not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FingerprintError(f"cannot read {path}: {exc}") from None


def locate(record: str, registry=None) -> Path:
    """A record file: a path, or ``v<N>`` (the record the registry links to that verification)."""
    if record.startswith("v") and record[1:].isdigit():
        if registry is None:
            raise FingerprintError("a v<N> record id needs the registry")
        row = registry.get(record)
        if not row.get("record_path"):
            raise FingerprintError(f"verification {record} has no signed record (verify with --sign-with KEYDIR)")
        return Path(row["record_path"])
    return Path(record)


def check(record_path: Path, opening: Path | None = None, cert: Path | None = None, pubkey: Path | None = None):
    """Check a record file; returns ``(RecordCheck, record text, Certificate or None)``."""
    from fingerprint.evidence.check import check_record
    from fingerprint.provenance.certificate import load_certificate
    from fingerprint.provenance.keys import load_public
    from fingerprint.provenance.trigger import Opening

    text = read_text(record_path)
    certificate = load_certificate(cert) if cert else None
    result = check_record(text, pubkey=load_public(pubkey) if pubkey else None,
                          opening=Opening.load(opening) if opening else None, certificate=certificate)
    return result, text, certificate


def report(record_path: Path, out: Path, opening: Path | None = None, cert: Path | None = None,
           pubkey: Path | None = None, robustness: Path | None = None) -> tuple[Path, object]:
    """Write the HTML report of a record (after checking it); returns (path, RecordCheck)."""
    from fingerprint.core.atomic import write_text_atomic
    from fingerprint.evidence.report import render, robustness_rows

    result, text, certificate = check(record_path, opening, cert, pubkey)
    rows = robustness_rows(robustness) if robustness else None
    write_text_atomic(Path(out), render(result, text, certificate, rows))
    return Path(out), result
