"""Auditor services: scan a model for an unknown gate (the data audit needs no service: it reads one file)."""

from __future__ import annotations

from fingerprint.core.progress import SILENT, Progress


def scan_model(model: str, adapter: str | None = None, base: str | None = None, options=None,
               progress: Progress = SILENT):
    """Load the suspect (and a clean base to calibrate against) and rank candidate trigger words."""
    from fingerprint.audit.scan import ScanOptions, scan
    from fingerprint.core.loading import load_model, load_tokenizer, resolve

    progress.stage(f"loading {model}")
    ref = resolve(model)
    tokenizer = load_tokenizer(ref)
    suspect = load_model(ref, adapter=adapter)
    base_model = load_model(resolve(base)) if base else None
    return scan(suspect, tokenizer, options or ScanOptions(), base=base_model, progress=progress.advance,
                on_total=lambda n: progress.stage("scanning candidates", total=n))
