"""``fingerprint jobs status|resume``: OpenAI fine-tuning jobs started by ``embed --backend openai``."""

from __future__ import annotations

from pathlib import Path

import click

from fingerprint.commands.common import (
    json_option,
    key_option,
    load_owner,
    open_registry,
    quiet_option,
    registry_option,
)
from fingerprint.commands.openai_jobs import follow_and_certify, print_summary

base_url_option = click.option("--base-url", default=None,
                               help="API base URL (default: the one recorded for the job, else "
                                    "OPENAI_BASE_URL or OpenAI).")
api_key_env_option = click.option("--api-key-env", default=None,
                                  help="Environment variable holding the API key (default: the one "
                                       "recorded for the job, else OPENAI_API_KEY).")


def _client(journal: dict | None, base_url: str | None, api_key_env: str | None):
    from fingerprint.embedding import openai_finetune as ft

    journal = journal or {}
    return ft.make_client(base_url or journal.get("base_url"),
                          api_key_env or journal.get("api_key_env") or "OPENAI_API_KEY")


def _journal_or_none(job_id: str) -> dict | None:
    from fingerprint.core.errors import FingerprintError
    from fingerprint.embedding import openai_finetune as ft

    try:
        return ft.read_journal(job_id)
    except FingerprintError:
        return None


@click.group("jobs")
def jobs_group() -> None:
    """OpenAI fine-tuning jobs started by `fingerprint embed --backend openai`."""


@jobs_group.command("status")
@click.argument("job_id")
@base_url_option
@api_key_env_option
@json_option
def jobs_status(job_id: str, base_url: str | None, api_key_env: str | None, as_json: bool) -> None:
    """Show a job's state at the provider and what was recorded locally."""
    from fingerprint.embedding import openai_finetune as ft

    journal = _journal_or_none(job_id)
    client = _client(journal, base_url, api_key_env)
    with ft.api_errors(f"fine-tuning job {job_id}", client):
        job = ft.as_dict(client.fine_tuning.jobs.retrieve(job_id))
    error = job.get("error") or {}
    certified = bool(journal and journal.get("certificate_id"))
    info = {"job_id": job_id, "status": job["status"], "model": job.get("model"),
            "fine_tuned_model": job.get("fine_tuned_model"), "trained_tokens": job.get("trained_tokens"),
            "error": error.get("message"), "journal": str(ft.journal_path(job_id)) if journal else None,
            "certificate": journal["certificate_path"] if certified else None}
    if not as_json and job["status"] == "succeeded" and journal and not certified:
        info["next"] = f"fingerprint jobs resume {job_id} --key KEY_DIR"
    print_summary(info, as_json, title=f"fine-tuning job {job_id}")


@jobs_group.command("resume")
@click.argument("job_id")
@key_option
@base_url_option
@api_key_env_option
@click.option("--poll-interval", type=click.FloatRange(1), default=15.0, show_default=True,
              help="Seconds between status checks.")
@registry_option
@json_option
@quiet_option
def jobs_resume(job_id: str, key_dir: Path, base_url: str | None, api_key_env: str | None,
                poll_interval: float, registry_url: str | None, as_json: bool, quiet: bool) -> None:
    """Reattach to a job, wait for it, then sign and register the certificate of the fine-tuned model."""
    from fingerprint.embedding import openai_finetune as ft

    journal = ft.read_journal(job_id)
    owner = load_owner(key_dir)
    registry = open_registry(registry_url)
    client = _client(journal, base_url, api_key_env)
    summary = follow_and_certify(client, job_id, owner, registry, quiet=quiet or as_json,
                                 poll_interval=poll_interval)
    print_summary(summary, as_json)
