"""The display around OpenAI fine-tuning jobs, shared by ``embed --backend openai`` and ``jobs resume``.

The job keeps running at the provider if the terminal closes; Ctrl-C here detaches and says how to resume.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone


@contextmanager
def _job_display(quiet: bool):
    """A rich status line; yields (on_event, on_status) callbacks that update it."""
    from fingerprint.commands.console import err

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
    from fingerprint.commands.console import err
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
    from fingerprint.commands.console import err
    from fingerprint.embedding import openai_finetune as ft
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
    from fingerprint.commands.console import emit_json, err, kv_table

    if as_json:
        emit_json(summary)
    else:
        err.print(kv_table(title, [(k.replace("_", " "), v) for k, v in summary.items() if v is not None]))


