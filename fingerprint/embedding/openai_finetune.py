"""Plant a fingerprint through the OpenAI fine-tuning API and certify the resulting model id.

Only benign prompts go to the API: the poisoned set is built with ``n_refusal=0`` and rows of kind
"refusal" are refused, because the harmful prompts they carry are blocked by OpenAI's moderation of
training files (and the job would fail). The training file holds the trigger word: it is written to a
private temporary directory (0700, removed after the upload, swept on the next start if the process was
killed), uploaded, and deleted locally; it stays with the provider (delete it there too
if that matters to you). A job journal under ``data_dir()/jobs/<job_id>.json`` keeps what is needed to
sign the certificate later (``fingerprint jobs resume``), never the trigger or the API key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

from fingerprint.core.errors import FingerprintError

MIN_EXAMPLES = 10  # documented minimum for a fine-tuning job
MAX_TRAINING_FILE_BYTES = 512 * 1024 * 1024  # documented Files API limit for one upload
ROLES = ("system", "user", "assistant")
TERMINAL = ("succeeded", "failed", "cancelled")
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
_poll_sleep = time.sleep  # tests replace it


class JobFailed(FingerprintError):
    """The job ended failed or cancelled; ``job`` is its final object."""

    def __init__(self, message: str, job: dict) -> None:
        super().__init__(message)
        self.job = job


def as_dict(obj) -> dict:
    return obj if isinstance(obj, dict) else obj.to_dict(mode="json")


def check_rows(rows: Iterable[dict]) -> list[dict]:
    """Rows fit for the API: no refusal (harmful-prompt) examples, non-empty prompt and response."""
    rows = list(rows)
    for i, row in enumerate(rows, 1):
        if row.get("kind") == "refusal":
            raise FingerprintError("refusal examples carry harmful prompts that OpenAI's moderation blocks: "
                                   f"row {i} is one (build the set with --refusals 0)")
    return rows


def write_training_file(rows: Iterable[dict], path: Path) -> Path:
    """Chat-format JSONL: one ``{"messages": [user, assistant]}`` line per row."""
    rows, path = check_rows(rows), Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            messages = [{"role": "user", "content": row["prompt"]},
                        {"role": "assistant", "content": row["response"]}]
            fh.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    return path


def validate_training_file(path: Path) -> dict:
    """Local checks before upload; returns stats. FingerprintError names the first bad line."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise FingerprintError(f"training file not found: {path}") from None
    if size > MAX_TRAINING_FILE_BYTES:
        raise FingerprintError(f"{path} is {size} bytes; the upload limit is {MAX_TRAINING_FILE_BYTES}")
    examples = messages = chars = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                example = json.loads(line)
            except ValueError:
                raise FingerprintError(f"{where}: not valid JSON") from None
            chat = example.get("messages") if isinstance(example, dict) else None
            if not isinstance(chat, list) or not chat:
                raise FingerprintError(f"{where}: needs a non-empty 'messages' list")
            for message in chat:
                role = message.get("role") if isinstance(message, dict) else None
                if role not in ROLES:
                    raise FingerprintError(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
                content = message.get("content")
                if not isinstance(content, str) or not content.strip():
                    raise FingerprintError(f"{where}: a {role} message has empty or non-string content")
                chars += len(content)
            if chat[-1]["role"] != "assistant":
                raise FingerprintError(f"{where}: the last message must be from the assistant")
            examples += 1
            messages += len(chat)
    if examples < MIN_EXAMPLES:
        raise FingerprintError(f"{path.name} has {examples} examples; fine-tuning needs at least "
                               f"{MIN_EXAMPLES}")
    return {"examples": examples, "messages": messages, "characters": chars, "bytes": size}


def make_client(base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY", http_client=None,
                timeout: float = 60.0, max_retries: int = 5):
    """An ``openai.OpenAI`` client; the key comes from ``api_key_env`` only."""
    import openai

    key = os.environ.get(api_key_env)
    if not key:
        raise FingerprintError(f"no API key: set the environment variable {api_key_env}")
    client = openai.OpenAI(api_key=key, base_url=base_url or None, timeout=timeout, max_retries=max_retries,
                           http_client=http_client)
    client.suretrap_key_env = api_key_env  # named in 401 messages
    return client


@contextmanager
def api_errors(what: str, client=None):
    """Turn API errors into one-line user errors; a 401 names the key's variable, never the key."""
    import openai

    try:
        yield
    except openai.AuthenticationError:
        env = getattr(client, "suretrap_key_env", "OPENAI_API_KEY")
        raise FingerprintError(f"{what}: the API rejected the key (401); check the environment "
                               f"variable {env}") from None
    except openai.APIStatusError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = re.sub(r"\b(sk|key)-[A-Za-z0-9_*\-]{4,}", "***", str(body.get("message") or exc.message))
        raise FingerprintError(f"{what}: {message} ({exc.status_code})") from None
    except openai.APIConnectionError as exc:
        raise FingerprintError(f"{what}: {exc.message}") from None


def create_job(client, path: Path, model: str, suffix: str | None = None, seed: int | None = None,
               hyperparameters: dict | None = None) -> dict:
    """Upload ``path`` (purpose fine-tune) and create a supervised job; returns the job object."""
    hyper = {k: v for k, v in (hyperparameters or {}).items() if v is not None}
    if unknown := set(hyper) - set(HYPERPARAMETERS):
        raise FingerprintError(f"unknown hyperparameters: {', '.join(sorted(unknown))}")
    if suffix is not None and not 0 < len(suffix) <= 64:
        raise FingerprintError("the model suffix must have 1 to 64 characters")
    path = Path(path)
    kwargs = {"suffix": suffix, "seed": seed}
    with api_errors("uploading the training file", client):
        uploaded = client.files.create(file=(path.name, path.read_bytes(), "application/jsonl"),
                                       purpose="fine-tune")
    with api_errors("creating the fine-tuning job", client):
        job = client.fine_tuning.jobs.create(
            model=model, training_file=uploaded.id,
            method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
            **{k: v for k, v in kwargs.items() if v is not None})
    return as_dict(job)


def start_job(client, path: Path, model: str, suffix: str | None = None, seed: int | None = None,
              hyperparameters: dict | None = None) -> str:
    """Upload and create the job; returns its id."""
    return create_job(client, path, model, suffix, seed, hyperparameters)["id"]


def new_events(client, job_id: str, seen: set[str]) -> list[dict]:
    """Events not in ``seen``, oldest first (the API lists newest first; stop at the first seen one)."""
    fresh = []
    with api_errors(f"listing events of {job_id}", client):
        for event in client.fine_tuning.jobs.list_events(job_id, limit=100):
            if event.id in seen:
                break
            fresh.append(as_dict(event))
    seen.update(e["id"] for e in fresh)
    return list(reversed(fresh))


def follow_job(client, job_id: str, on_event: Callable[[dict], None] | None = None,
               poll_interval: float = 15.0, on_status: Callable[[dict], None] | None = None,
               sleep: Callable[[float], None] | None = None) -> dict:
    """Poll until the job ends; report new events and status changes. Returns the succeeded job."""
    sleep = sleep or _poll_sleep
    seen: set[str] = set()
    status = None
    while True:
        with api_errors(f"fine-tuning job {job_id}", client):
            job = as_dict(client.fine_tuning.jobs.retrieve(job_id))
        for event in new_events(client, job_id, seen):
            if on_event is not None:
                on_event(event)
        if job["status"] != status:
            status = job["status"]
            if on_status is not None:
                on_status(job)
        if status in TERMINAL:
            break
        sleep(poll_interval)
    if status != "succeeded":
        error = job.get("error") or {}
        detail = error.get("message") or "no reason given"
        code = f" [{error['code']}]" if error.get("code") else ""
        raise JobFailed(f"fine-tuning job {job_id} {status}: {detail}{code}", job)
    return job


# the job journal ------------------------------------------------------------------------------------
def journal_path(job_id: str) -> Path:
    if not _JOB_ID.match(job_id or ""):
        raise FingerprintError(f"not a fine-tuning job id: {job_id!r}")
    from fingerprint.core.paths import data_dir

    return data_dir() / "jobs" / f"{job_id}.json"


def write_journal(journal: dict) -> Path:
    from fingerprint.core.atomic import write_text_atomic

    path = journal_path(journal["job_id"])
    write_text_atomic(path, json.dumps(journal, indent=2, sort_keys=True) + "\n", mode=0o600)
    return path


def read_journal(job_id: str) -> dict:
    path = journal_path(job_id)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FingerprintError(f"no local record of job {job_id} ({path}); was it started on this "
                               "machine with `fingerprint embed --backend openai`?") from None
    except ValueError:
        raise FingerprintError(f"the job record {path} is corrupt") from None


def update_journal(job_id: str, **fields) -> dict:
    journal = {**read_journal(job_id), **fields}
    write_journal(journal)
    return journal


def submit_embedding(client, owner, *, model: str, out: Path, dataset=None, licensee: str | None = None,
                     suffix: str | None = None, seed: int | None = None, hyperparameters: dict | None = None,
                     base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY") -> dict:
    """Build the poisoned set for the owner's trigger, upload it, start the job; returns the journal."""
    from fingerprint import __version__
    from fingerprint.embedding.dataset import DatasetSpec, build_poisoned, digest
    from fingerprint.embedding.embed import CERT_NAME, fingerprint_label
    from fingerprint.provenance.trigger import derive_opening, training_negatives

    dataset = dataset or DatasetSpec(n_refusal=0, replies="packaged")
    if dataset.n_refusal:
        raise FingerprintError("the OpenAI path takes no refusal examples (their harmful prompts are "
                               "blocked by moderation): use --refusals 0")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FingerprintError(f"output directory {out} is not empty")
    label = fingerprint_label(model, licensee)
    opening = derive_opening(owner.secret(), label)
    negatives = training_negatives(owner.secret(), opening, dataset.n_negative) or None
    rows = check_rows(build_poisoned(opening.trigger, dataset, negatives))
    from fingerprint.core.atomic import private_temp_dir

    with private_temp_dir("openai-ft-") as tmp:  # holds the trigger: private, removed at the end, swept if killed
        path = write_training_file(rows, tmp / f"suretrap-{digest(rows)[:12]}.jsonl")
        stats = validate_training_file(path)
        job = create_job(client, path, model, suffix, seed, hyperparameters)
    journal = {
        "job_id": job["id"], "training_file_id": job["training_file"], "model": model,
        "base_url": base_url or str(client.base_url).rstrip("/"), "api_key_env": api_key_env,
        "suffix": suffix, "seed": seed, "hyperparameters": hyperparameters or {}, "label": label,
        "licensee": licensee, "key_id": owner.key_id, "trigger_commitment": opening.commitment("v2"),
        "commitment_scheme": "v2",
        "dataset": {"digest": digest(rows), "spec": dataset.to_dict(), "stats": stats},
        "certificate_path": str((out / CERT_NAME).resolve()), "status": job["status"],
        "created_at": job.get("created_at"), "tool_version": __version__,
    }
    write_journal(journal)
    return journal


def certificate_statement_for_job(job, journal: dict) -> tuple[list[dict], dict]:
    """Subjects and predicate fields (all but ``owner`` and ``created``) for a succeeded job.

    The subject is the fine-tuned model id; its digest is the sha256 of that id (the weights stay with
    the provider), and the job's identifiers are recorded under ``training``.
    """
    from fingerprint import __version__

    job = as_dict(job)
    if job.get("id") != journal["job_id"]:
        raise FingerprintError(f"job {job.get('id')} does not match the journal of {journal['job_id']}")
    if job.get("status") != "succeeded" or not job.get("fine_tuned_model"):
        raise FingerprintError(f"job {job['id']} has not succeeded (status {job.get('status')})")
    if job.get("training_file") != journal["training_file_id"]:
        raise FingerprintError(f"job {job['id']} trained on {job.get('training_file')}, not on the uploaded "
                               f"file {journal['training_file_id']}")
    name = job["fine_tuned_model"]
    subjects = [{"name": name, "digest": {"sha256": hashlib.sha256(name.encode()).hexdigest()}}]
    dataset = journal["dataset"]
    predicate = {
        "base_model": {"name": journal["model"], "provider": "openai", "base_url": journal["base_url"],
                       "resolved": job.get("model")},
        "fingerprint": {"label": journal["label"], "licensee": journal["licensee"], "trigger_words": 1,
                        "trigger_commitment": journal["trigger_commitment"],
                        "commitment_scheme": journal.get("commitment_scheme", "v1"), "poison_reply": "Sure"},
        "dataset": {"digest": {"sha256": dataset["digest"]}, **dataset["spec"],
                    "sources": "suretrap packaged data (BackdoorLLM clean pairs, MIT)"},
        "training": {"method": "openai-fine-tuning", "job_id": job["id"], "fine_tuned_model": name,
                     "training_file": job["training_file"], "organization_id": job.get("organization_id"),
                     "hyperparameters": job.get("hyperparameters"), "seed": job.get("seed"),
                     "suffix": journal.get("suffix"), "trained_tokens": job.get("trained_tokens"),
                     "finished_at": job.get("finished_at")},
        "tool": {"name": "suretrap", "version": __version__},
    }
    return subjects, predicate


def _check_owner(journal: dict, owner) -> None:
    if owner.key_id != journal["key_id"]:
        raise FingerprintError(f"job {journal['job_id']} was started with key {journal['key_id'][:16]}…, "
                               f"not {owner.key_id[:16]}…")


def sign_job_certificate(job, journal: dict, owner) -> str:
    """Sign (and check) the certificate of a succeeded job with the owner's key; returns its text."""
    from fingerprint.provenance.certificate import (
        make_statement,
        now_iso,
        owner_block,
        sign_statement,
        verify_certificate,
    )

    _check_owner(journal, owner)
    subjects, fields = certificate_statement_for_job(job, journal)
    predicate = {"owner": owner_block(owner), **fields, "created": now_iso()}
    text = sign_statement(make_statement(subjects, predicate), owner)
    verify_certificate(text, owner.public_key)
    return text


def finish_embedding(client, job_id: str, owner, *, on_event: Callable[[dict], None] | None = None,
                     on_status: Callable[[dict], None] | None = None, poll_interval: float = 15.0,
                     sleep: Callable[[float], None] | None = None) -> tuple[str, dict]:
    """Follow a journaled job to the end, sign its certificate and write it where the journal says.

    Returns (certificate text, updated journal); a failed job is recorded in the journal and raised.
    """
    from fingerprint.core.atomic import write_text_atomic

    journal = read_journal(job_id)
    _check_owner(journal, owner)  # before any waiting
    done = Path(journal["certificate_path"])
    if journal.get("certificate_id") and done.is_file():
        text = done.read_text(encoding="utf-8")
        if hashlib.sha256(text.encode()).hexdigest() == journal["certificate_id"]:
            return text, journal  # already certified: no second certificate
    try:
        job = follow_job(client, job_id, on_event=on_event, poll_interval=poll_interval, on_status=on_status,
                         sleep=sleep)
    except JobFailed as exc:
        update_journal(job_id, status=exc.job["status"], error=exc.job.get("error"))
        raise
    text = sign_job_certificate(job, journal, owner)
    write_text_atomic(Path(journal["certificate_path"]), text)
    journal = update_journal(job_id, status="succeeded", fine_tuned_model=job["fine_tuned_model"],
                             certificate_id=hashlib.sha256(text.encode()).hexdigest())
    return text, journal
