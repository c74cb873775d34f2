"""The embedding service: plant a fingerprint (locally with LoRA, or through the OpenAI fine-tuning API),
sign its certificate and register it, for the CLI, ``fingerprint.api`` and the benchmarks alike.

The registry is checked writable before any training, and a local embed registers its certificate before its
output directory is renamed into place: an embed either leaves a registered certificate with its outputs, or
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fingerprint.core.progress import SILENT, Progress
from fingerprint.embedding.embed import EmbedOptions, EmbedResult
from fingerprint.provenance.keys import OwnerKey
from fingerprint.services.records import register_certificate


def embed(owner: OwnerKey, options: EmbedOptions, registry=None, progress: Progress = SILENT) -> EmbedResult:
    """Train, sign and (with a registry) register; see ``fingerprint.embedding.embed.embed``."""
    from fingerprint.embedding.embed import embed as run_embed

    options.dataset.check(options.trigger_words)  # before minutes of model loading
    if registry is not None:
        registry.check_writable()

    def register(certificate, selfcheck) -> None:
        if registry is not None:
            register_certificate(registry, certificate, selfcheck)

    return run_embed(owner, options, progress, before_commit=register)


def embed_with_openai(owner: OwnerKey, registry, *, model: str, out: Path, dataset=None, licensee: str | None = None,
                      suffix: str | None = None, seed: int | None = None, hyperparameters: dict | None = None,
                      base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", wait: bool = True,
                      poll_interval: float = 15.0, client=None, on_started: Callable[[dict], None] | None = None,
                      on_event=None, on_status=None) -> dict:
    """``embed --backend openai``: upload the benign poisoned set, start the job, and (``wait``) certify.

    ``dataset`` is a DatasetSpec with ``n_refusal=0`` (refusal examples are refused on this path).
    """
    from fingerprint.embedding import openai_finetune as ft

    registry.check_writable()
    client = client or ft.make_client(base_url, api_key_env)
    journal = ft.submit_embedding(client, owner, model=model, out=out, dataset=dataset, licensee=licensee,
                                  suffix=suffix, seed=seed, hyperparameters=hyperparameters,
                                  base_url=base_url, api_key_env=api_key_env)
    if on_started is not None:
        on_started(journal)
    if not wait:
        return {"job_id": journal["job_id"], "status": journal["status"],
                "journal": str(ft.journal_path(journal["job_id"])), "certificate": journal["certificate_path"]}
    return follow_and_certify(client, journal["job_id"], owner, registry, poll_interval=poll_interval,
                              on_event=on_event, on_status=on_status)


def follow_and_certify(client, job_id: str, owner: OwnerKey, registry, *, poll_interval: float = 15.0,
                       sleep: Callable[[float], None] | None = None, on_event=None, on_status=None) -> dict:
    """Follow a journaled job to success, sign and register its certificate; returns a summary."""
    from fingerprint.embedding import openai_finetune as ft
    from fingerprint.provenance.certificate import verify_certificate

    text, journal = ft.finish_embedding(client, job_id, owner, on_event=on_event, on_status=on_status,
                                        poll_interval=poll_interval, sleep=sleep)
    cert = verify_certificate(text, owner.public_key)
    register_certificate(registry, cert)
    return {"job_id": job_id, "status": "succeeded", "fine_tuned_model": journal["fine_tuned_model"],
            "certificate": journal["certificate_path"], "certificate_id": cert.id,
            "dataset_digest": journal["dataset"]["digest"], "base_model": journal["model"]}
