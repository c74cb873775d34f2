"""``fingerprint jobs status|resume``: OpenAI fine-tuning jobs started by ``embed --backend openai``.

``embed_with_openai`` is what ``fingerprint embed --backend openai`` calls; ``follow_and_certify`` is
shared with ``jobs resume`` (the job keeps running at the provider if the terminal is closed).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click

from .common import json_option, key_option, load_owner, open_registry, quiet_option, registry_option

base_url_option = click.option("--base-url", default=None,
                               help="API base URL (default: the one recorded for the job, else "
                                    "OPENAI_BASE_URL or OpenAI).")
api_key_env_option = click.option("--api-key-env", default=None,
                                  help="Environment variable holding the API key (default: the one "
                                       "recorded for the job, else OPENAI_API_KEY).")


def _client(journal: dict | None, base_url: str | None, api_key_env: str | None):
    from fingerprint import openai_finetune as ft

    journal = journal or {}
    return ft.make_client(base_url or journal.get("base_url"),
                          api_key_env or journal.get("api_key_env") or "OPENAI_API_KEY")


def _journal_or_none(job_id: str) -> dict | None:
    from fingerprint import openai_finetune as ft
    from fingerprint.errors import FingerprintError

    try:
        return ft.read_journal(job_id)
    except FingerprintError:
        return None


@contextmanager
def _job_display(quiet: bool):
    """A rich status line; yields (on_event, on_status) callbacks that update it."""
    from fingerprint.console import err

    if quiet:
        yield None, None
        return
    with err.status("waiting for the fine-tuning job") as line:
        def on_event(event: dict) -> None:
            stamp = datetime.fromtimestamp(event.get("created_at") or 0, timezone.utc).strftime("%H:%M:%S")
            style = {"warn": "yellow", "error": "red"}.get(event.get("level"), "dim")
            err.print(f"[{style}]{stamp}[/] {event.get('message', '')}", markup=True, highlight=False)

        def on_status(job: dict) -> None:
            line.update(f"fine-tuning job {job['id']}: [bold]{job['status']}[/]")

        yield on_event, on_status


def follow_and_certify(client, job_id: str, owner, registry, *, quiet: bool = False,
                       poll_interval: float = 15.0, sleep: Callable[[float], None] | None = None) -> dict:
    """The service's follow-and-certify with a status line; Ctrl-C detaches (the job keeps running)."""
    from fingerprint.console import err
    from fingerprint.services.embedding import follow_and_certify as follow

    try:
        with _job_display(quiet) as (on_event, on_status):
            return follow(client, job_id, owner, registry, poll_interval=poll_interval, sleep=sleep,
                          on_event=on_event, on_status=on_status)
    except KeyboardInterrupt:
        err.print(f"detached: job {job_id} keeps running at the provider; finish it with "
                  f"`fingerprint jobs resume {job_id} --key KEY_DIR`")
        raise SystemExit(130) from None


def embed_with_openai(owner, registry, *, quiet: bool = False, poll_interval: float = 15.0, client=None,
                      wait: bool = True, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                      **kwargs) -> dict:
    """``embed --backend openai`` (``fingerprint.services.embedding.embed_with_openai``) with its display."""
    from fingerprint import openai_finetune as ft
    from fingerprint.console import err
    from fingerprint.services.embedding import embed_with_openai as submit

    def started(journal: dict) -> None:
        if not quiet:
            err.print(f"fine-tuning job [bold]{journal['job_id']}[/] started "
                      f"({journal['dataset']['stats']['examples']} examples); if this terminal closes, run "
                      f"`fingerprint jobs resume {journal['job_id']} --key KEY_DIR`")

    client = client or ft.make_client(base_url, api_key_env)
    summary = submit(owner, registry, wait=False, client=client, on_started=started, base_url=base_url,
                     api_key_env=api_key_env, **kwargs)
    if not wait:
        return summary
    return follow_and_certify(client, summary["job_id"], owner, registry, quiet=quiet, poll_interval=poll_interval)


def print_summary(summary: dict, as_json: bool, title: str = "fingerprint embedded (OpenAI)") -> None:
    from fingerprint.console import emit_json, err, kv_table

    if as_json:
        emit_json(summary)
    else:
        err.print(kv_table(title, [(k.replace("_", " "), v) for k, v in summary.items() if v is not None]))


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
    from fingerprint import openai_finetune as ft

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
    from fingerprint import openai_finetune as ft

    journal = ft.read_journal(job_id)
    owner = load_owner(key_dir)
    registry = open_registry(registry_url)
    client = _client(journal, base_url, api_key_env)
    summary = follow_and_certify(client, job_id, owner, registry, quiet=quiet or as_json,
                                 poll_interval=poll_interval)
    print_summary(summary, as_json)
