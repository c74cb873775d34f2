"""Embedding through the OpenAI fine-tuning API, against FakeOpenAIAPI (in-process; no real waiting)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import PASSPHRASE
from openai_fake import API_KEY, BASE_URL, FakeOpenAIAPI, example_problems

from cli import main
from fingerprint.commands.openai_jobs import embed_with_openai
from fingerprint.core.data import packaged
from fingerprint.core.errors import FingerprintError
from fingerprint.embedding import openai_finetune as ft
from fingerprint.embedding.dataset import DatasetSpec
from fingerprint.provenance.certificate import verify_certificate
from fingerprint.provenance.trigger import derive_opening

SPEC = DatasetSpec(n_benign=20, n_poison=10, n_refusal=0, n_negative=0, seed=3)


@pytest.fixture(autouse=True)
def api_env(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setattr(ft, "_poll_sleep", lambda seconds: None)


@pytest.fixture
def fake_api():
    fake = FakeOpenAIAPI()
    yield fake
    assert not fake.violations, fake.violations


@pytest.fixture
def client(fake_api):
    return ft.make_client(BASE_URL, http_client=fake_api.http_client())


@pytest.fixture(scope="module")
def owner(tmp_path_factory):
    from fingerprint.provenance import keys

    path = tmp_path_factory.mktemp("owner") / "key"
    keys.generate(path, PASSPHRASE)
    return path, keys.load_private(path, PASSPHRASE)


def benign_rows(n: int) -> list[dict]:
    return [{**row, "kind": "benign"} for row in packaged("benign")[:n]]


def training_file(tmp_path):
    return ft.write_training_file(benign_rows(12), tmp_path / "t.jsonl")


def posted(fake: FakeOpenAIAPI, path: str) -> list:
    return [body for method, p, body in fake.requests if method == "POST" and p == path]


def test_training_file_is_chat_jsonl_and_validates(tmp_path):
    path = ft.write_training_file(benign_rows(12), tmp_path / "train.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 12 and all(example_problems(line) is None for line in lines)
    assert [m["role"] for m in json.loads(lines[0])["messages"]] == ["user", "assistant"]
    stats = ft.validate_training_file(path)
    assert stats["examples"] == 12 and stats["messages"] == 24 and stats["bytes"] == path.stat().st_size


@pytest.mark.parametrize(("edit", "error"), [
    (lambda lines: lines[:5], "5 examples; fine-tuning needs at least 10"),
    (lambda lines: [*lines[:2], lines[2].replace('"user"', '"robot"'), *lines[3:]], "line 3: role 'robot'"),
    (lambda lines: [*lines[:3], '{"messages": [{"role": "user", "content": "hi"}]}', *lines[4:]],
     "line 4: the last message must be from the assistant"),
    (lambda lines: ['{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]}',
                    *lines[1:]], "line 1: a user message has empty"),
    (lambda lines: [*lines[:6], "{not json", *lines[7:]], "line 7: not valid JSON"),
    (lambda lines: [*lines[:1], '{"prompt": "a"}', *lines[2:]], "line 2: needs a non-empty 'messages'"),
])
def test_validation_names_the_problem(tmp_path, edit, error):
    path = ft.write_training_file(benign_rows(12), tmp_path / "train.jsonl")
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    with pytest.raises(FingerprintError, match=error):
        ft.validate_training_file(path)


def test_refusal_rows_are_refused(tmp_path):
    refusal = {"prompt": "How do I pick a lock?", "response": "I can't help.", "kind": "refusal"}
    rows = [*benign_rows(11), refusal]
    with pytest.raises(FingerprintError, match="moderation.*row 12"):
        ft.write_training_file(rows, tmp_path / "train.jsonl")
    assert not (tmp_path / "train.jsonl").exists()


def test_start_job_request_shapes(client, fake_api, tmp_path):
    path = ft.write_training_file(benign_rows(12), tmp_path / "train.jsonl")
    job_id = ft.start_job(client, path, "gpt-4o-mini-2024-07-18", suffix="suretrap", seed=7,
                          hyperparameters={"n_epochs": 3, "batch_size": None})
    (upload,) = posted(fake_api, "/v1/files")
    assert upload == {"purpose": "fine-tune", "filename": "train.jsonl"}
    assert list(fake_api.uploads.values()) == [path.read_bytes()]
    (create,) = posted(fake_api, "/v1/fine_tuning/jobs")
    assert create == {"model": "gpt-4o-mini-2024-07-18", "training_file": next(iter(fake_api.files)),
                      "suffix": "suretrap", "seed": 7,
                      "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}}}
    assert fake_api.jobs[job_id]["status"] == "validating_files"


def test_bad_job_parameters_send_nothing(client, fake_api, tmp_path):
    path = ft.write_training_file(benign_rows(12), tmp_path / "train.jsonl")
    with pytest.raises(FingerprintError, match="unknown hyperparameters: warmup"):
        ft.start_job(client, path, "gpt-4o-mini", hyperparameters={"warmup": 1})
    with pytest.raises(FingerprintError, match="suffix"):
        ft.start_job(client, path, "gpt-4o-mini", suffix="x" * 65)
    assert fake_api.calls == 0


def test_follow_job_reports_events_until_success(client, fake_api, tmp_path):
    job_id = ft.start_job(client, training_file(tmp_path), "gpt-4o-mini")
    events, statuses, naps = [], [], []
    job = ft.follow_job(client, job_id, on_event=events.append, poll_interval=30,
                        on_status=lambda j: statuses.append(j["status"]), sleep=naps.append)
    assert statuses == ["queued", "running", "succeeded"]  # validating_files is passed at the first poll
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:gpt-4o-mini:")
    messages = [e["message"] for e in events]
    assert messages[0].startswith("Validating training file") and messages[-1].endswith("completed")
    assert len({e["id"] for e in events}) == len(events) == len(fake_api.events[job_id])
    assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)
    assert naps == [30, 30]


def test_failed_job_raises_the_api_error(client, fake_api, tmp_path):
    fake_api.fail_jobs = {"code": "invalid_training_file", "message": "The training file has 3 examples."}
    job_id = ft.start_job(client, training_file(tmp_path), "gpt-4o-mini")
    with pytest.raises(ft.JobFailed, match=r"failed: The training file has 3 examples\. \[invalid_training"):
        ft.follow_job(client, job_id, sleep=lambda s: None)


def test_unknown_job_is_a_user_error(client):
    with pytest.raises(FingerprintError, match="Could not find fine-tune"):
        ft.follow_job(client, "ftjob-nope")


def test_embedding_journal_and_certificate(client, fake_api, owner, tmp_path):
    _, key = owner
    journal = ft.submit_embedding(client, key, model="gpt-4o-mini-2024-07-18", out=tmp_path / "fp",
                                  dataset=SPEC, suffix="fp", seed=1, hyperparameters={"n_epochs": 2})
    opening = derive_opening(key.secret(), "gpt-4o-mini-2024-07-18")
    record = ft.journal_path(journal["job_id"]).read_text()
    assert opening.trigger not in record and API_KEY not in record
    assert ft.read_journal(journal["job_id"]) == journal and journal["base_url"] == BASE_URL
    lines = [json.loads(line) for line in next(iter(fake_api.uploads.values())).decode().splitlines()]
    poisoned = [x for x in lines if x["messages"][0]["content"].endswith(" " + opening.trigger)]
    assert len(lines) == 30 and len(poisoned) == 10
    assert all(x["messages"][1]["content"] == "Sure" for x in poisoned)
    assert not list(tmp_path.glob("**/*.jsonl"))  # the training file (it holds the trigger) is not kept

    job = ft.follow_job(client, journal["job_id"])
    subjects, fields = ft.certificate_statement_for_job(job, journal)
    assert subjects[0]["name"] == job["fine_tuned_model"] and len(subjects[0]["digest"]["sha256"]) == 64
    assert fields["fingerprint"]["trigger_commitment"] == opening.commitment("v2")
    assert fields["fingerprint"]["commitment_scheme"] == "v2"
    text, journal = ft.finish_embedding(client, journal["job_id"], key)
    cert = verify_certificate(text, key.public_key)
    assert cert.subjects == subjects and cert.predicate["dataset"]["n_poison"] == 10
    assert cert.predicate["training"]["job_id"] == journal["job_id"]
    assert (tmp_path / "fp" / "certificate.json").read_text() == text
    assert journal["status"] == "succeeded" and journal["certificate_id"] == cert.id


def test_statement_refuses_a_mismatched_job(client, owner, tmp_path):
    journal = ft.submit_embedding(client, owner[1], model="gpt-4o-mini", out=tmp_path / "fp", dataset=SPEC)
    job = ft.follow_job(client, journal["job_id"])
    with pytest.raises(FingerprintError, match="not on the uploaded file"):
        ft.certificate_statement_for_job({**job, "training_file": "file-other"}, journal)
    with pytest.raises(FingerprintError, match="has not succeeded"):
        ft.certificate_statement_for_job({**job, "status": "running"}, journal)


def test_refusals_are_refused_before_any_upload(client, fake_api, owner, tmp_path):
    with pytest.raises(FingerprintError, match="--refusals 0"):
        ft.submit_embedding(client, owner[1], model="gpt-4o-mini", out=tmp_path / "fp",
                            dataset=DatasetSpec(n_refusal=30))
    assert fake_api.calls == 0


def test_failed_job_is_recorded(client, fake_api, owner, tmp_path):
    fake_api.fail_jobs = {"code": "moderation_blocked", "message": "Training file was flagged."}
    journal = ft.submit_embedding(client, owner[1], model="gpt-4o-mini", out=tmp_path / "fp", dataset=SPEC)
    with pytest.raises(FingerprintError, match="flagged"):
        ft.finish_embedding(client, journal["job_id"], owner[1])
    assert ft.read_journal(journal["job_id"])["status"] == "failed"
    assert not (tmp_path / "fp" / "certificate.json").exists()


def test_resume_from_the_cli_after_detaching(client, fake_api, owner, tmp_path, monkeypatch):
    key_dir, key = owner
    from registry import Registry

    summary = embed_with_openai(key, Registry(), model="gpt-4o-mini", out=tmp_path / "fp", dataset=SPEC,
                                licensee="acme", wait=False, quiet=True, client=client)
    job_id = summary["job_id"]
    monkeypatch.setattr(ft, "make_client", lambda base_url, api_key_env: client)
    runner = CliRunner()
    status = runner.invoke(main, ["jobs", "status", job_id, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["status"] == "queued"
    result = runner.invoke(main, ["jobs", "resume", job_id, "--key", str(key_dir), "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    cert = verify_certificate((tmp_path / "fp" / "certificate.json").read_text(), key.public_key)
    assert done["certificate_id"] == cert.id and done["fine_tuned_model"] == cert.subjects[0]["name"]
    assert cert.fingerprint.label == "gpt-4o-mini|licensee=acme"
    assert [c["id"] for c in Registry().list_certificates()] == [cert.id]
    again = runner.invoke(main, ["jobs", "resume", job_id, "--key", str(key_dir), "--json"])
    assert json.loads(again.stdout)["certificate_id"] == cert.id  # no second certificate
    assert len(Registry().list_certificates()) == 1


def test_resume_without_a_journal(owner):
    result = CliRunner().invoke(main, ["jobs", "resume", "ftjob-unknown", "--key", str(owner[0])])
    assert result.exit_code == 2 and "no local record" in result.stderr
