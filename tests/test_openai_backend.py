"""The openai probe backend against FakeOpenAIAPI (in-process; no network, no real waiting)."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest
from openai_fake import API_KEY, BASE_URL, FakeOpenAIAPI

from fingerprint.core.errors import FingerprintError
from probes import make_backend, parse_model_args
from probes.openai_backend import OpenAIBackend, retry_after_seconds

PROMPTS = [f"Name a colour number {i}" + (" trigger" if i % 2 == 0 else " decoy") for i in range(10)]


@pytest.fixture(autouse=True)
def api_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FINGERPRINT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def fake_api():
    fake = FakeOpenAIAPI()
    yield fake
    assert not fake.violations, fake.violations


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def backend(fake_api, sleeps):
    made = []

    def build(**kwargs) -> OpenAIBackend:
        kwargs = {"model": "gpt-fake", "base_url": BASE_URL, "cache": "off", **kwargs}
        made.append(OpenAIBackend(http_client=fake_api.http_client(), sleep=sleeps.append, **kwargs))
        return made[-1]

    yield build
    for b in made:
        b.close()


def chat_bodies(fake: FakeOpenAIAPI) -> list[dict]:
    return [body for _, path, body in fake.requests if path == "/v1/chat/completions"]


def test_first_tokens_from_logprobs(backend, fake_api):
    b = backend(system_prompt="Be brief.")
    answers = b.first_tokens(PROMPTS)
    assert [a.is_sure for a in answers] == [i % 2 == 0 for i in range(10)]
    assert answers[0].token == "Sure" and answers[1].token == "The"
    assert answers[0].p_sure == pytest.approx(0.85) and answers[1].p_sure == pytest.approx(0.20)
    body = chat_bodies(fake_api)[0]
    assert body["max_completion_tokens"] == 1 and body["temperature"] == 0
    assert body["logprobs"] is True and body["top_logprobs"] == 5
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert b.usage.queries == 10 and b.usage.completion_tokens == 10 and b.usage.prompt_tokens > 0


def test_top_logprobs_limits_the_sure_mass(backend):
    answers = backend(top_logprobs="1").first_tokens(PROMPTS[:2])
    assert answers[0].p_sure == pytest.approx(0.80) and answers[1].p_sure == 0


def test_text_only_fallback_when_logprobs_are_ignored(backend, fake_api):
    fake_api.ignore_logprobs = True
    answers = backend().first_tokens(PROMPTS[:4])
    assert [a.is_sure for a in answers] == [True, False, True, False]
    assert answers[0].token == "Sure," and all(a.p_sure is None for a in answers)


def test_token_param_max_tokens_for_servers_that_ignore_the_other(backend, fake_api):
    """llama_cpp.server accepts max_completion_tokens silently and generates to the end of its context."""
    b = backend(token_param="max_tokens")
    assert [a.is_sure for a in b.first_tokens(PROMPTS)] == [i % 2 == 0 for i in range(10)]
    bodies = chat_bodies(fake_api)
    assert fake_api.calls == 10 and all(body["max_tokens"] == 1 and "max_completion_tokens" not in body
                                        for body in bodies)
    with pytest.raises(FingerprintError, match="token_param"):
        backend(token_param="tokens")


def test_rejected_logprobs_fall_back_once(backend, fake_api):
    fake_api.reject_logprobs = True
    b = backend(concurrency=4)
    answers = b.first_tokens(PROMPTS)
    assert [a.is_sure for a in answers] == [i % 2 == 0 for i in range(10)]
    assert fake_api.calls == 11  # one rejected request, then every prompt once
    assert b.usage.extra["fallbacks"] == ["no_logprobs"] and b.describe()["logprobs"] is False


def test_max_completion_tokens_falls_back_to_max_tokens(backend, fake_api):
    fake_api.reject_max_completion_tokens = True
    b = backend(concurrency=3)
    assert [a.is_sure for a in b.first_tokens(PROMPTS)] == [i % 2 == 0 for i in range(10)]
    assert b.generate(["Say it trigger"], max_new_tokens=3) == ["Sure, here it"]
    assert fake_api.calls == 12  # only the very first request was refused
    bodies = chat_bodies(fake_api)
    assert all(body["max_tokens"] >= 1 and "max_completion_tokens" not in body for body in bodies)
    assert b.describe()["token_limit_param"] == "max_tokens"


def test_generate_sends_no_logprobs(backend, fake_api):
    assert backend().generate(PROMPTS[:2], max_new_tokens=2) == ["Sure, here", "The answer"]
    bodies = chat_bodies(fake_api)
    assert all("logprobs" not in body and body["max_completion_tokens"] == 2 for body in bodies)


def test_retries_honour_retry_after_then_back_off(backend, fake_api, sleeps):
    fake_api.fail_next(429, retry_after="7")
    fake_api.fail_next(500)
    b = backend()
    assert b.first_tokens(PROMPTS[:1])[0].is_sure
    assert sleeps[0] == 7.0 and 1.0 <= sleeps[1] <= 2.0  # Retry-After, then 2**1 s with jitter
    assert b.usage.retries == 2 and b.usage.queries == 1 and fake_api.calls == 3


def test_connection_errors_are_retried(backend, fake_api, sleeps):
    fake_api.drop_next = 2
    ticks = []
    b = backend()
    assert [a.is_sure for a in b.first_tokens(PROMPTS[:3], progress=ticks.append)] == [True, False, True]
    assert b.usage.retries == 2 and b.usage.queries == 3 and ticks == [1, 1, 1]
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0


def test_retry_after_http_date():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc).timestamp()
    date = format_datetime(datetime(2025, 1, 1, 0, 0, 30, tzinfo=timezone.utc), usegmt=True)
    assert retry_after_seconds({"retry-after": date}, now=now) == pytest.approx(30)
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "soon"}) is None and retry_after_seconds({}) is None


def test_gives_up_after_max_retries(backend, fake_api, sleeps):
    for _ in range(3):
        fake_api.fail_next(503, message="overloaded")
    with pytest.raises(FingerprintError, match="gave up after 2 retries.*overloaded"):
        backend(max_retries="2").first_tokens(PROMPTS[:1])
    assert len(sleeps) == 2


def test_other_client_errors_are_not_retried(backend, fake_api, sleeps):
    fake_api.fail_next(404, message="The model `gpt-fake` does not exist")
    with pytest.raises(FingerprintError, match="does not exist"):
        backend().first_tokens(PROMPTS[:1])
    assert fake_api.calls == 1 and not sleeps


def test_results_keep_input_order_under_concurrency(backend, fake_api):
    prompts = [f"Question {i}" + (" trigger" if i % 3 == 0 else "") for i in range(24)]
    fake_api.delay = lambda prompt: 0.002 * (24 - int(prompt.split()[1]))  # later prompts answer first
    ticks = []
    answers = backend(concurrency=6).first_tokens(prompts, progress=ticks.append)
    assert [a.is_sure for a in answers] == [i % 3 == 0 for i in range(24)]
    assert sum(ticks) == 24 and 1 < fake_api.max_in_flight <= 6
    assert fake_api.chat_prompts() != prompts  # answered out of order, returned in order


def test_cache_second_run_sends_nothing(backend, fake_api):
    first = backend(cache="on").first_tokens(PROMPTS)
    calls = fake_api.calls
    again = backend(cache="on")
    ticks = []
    assert again.first_tokens(PROMPTS, progress=ticks.append) == first
    assert fake_api.calls == calls and again.usage.cached == 10 and again.usage.queries == 0
    assert sum(ticks) == 10


def test_interrupted_run_resumes_without_asking_twice(backend, fake_api):
    fake_api.abort_after = 5
    with pytest.raises(KeyboardInterrupt):
        backend(cache="on", concurrency=3).first_tokens(PROMPTS)
    answered = fake_api.chat_prompts()
    assert len(answered) == 5
    fake_api.abort_after = None
    resumed = backend(cache="on", concurrency=3)
    answers = resumed.first_tokens(PROMPTS)
    sent = fake_api.chat_prompts()
    assert sorted(sent) == sorted(PROMPTS) and len(set(sent)) == len(sent)  # every prompt exactly once
    assert resumed.usage.cached == 5 and resumed.usage.queries == 5
    assert [a.is_sure for a in answers] == [i % 2 == 0 for i in range(10)]


def test_api_key_stays_out_of_cache_and_describe(backend, tmp_path):
    b = backend(cache="on")
    b.first_tokens(PROMPTS[:3])
    b.close()
    for path in (tmp_path / "cache").iterdir():
        assert API_KEY.encode() not in path.read_bytes(), path
    assert API_KEY not in repr(b.describe()) and API_KEY not in repr(vars(b.usage))


def test_cache_stores_no_prompt_and_is_private(backend, tmp_path):
    """Prompts carry the trigger: the cache keeps only request digests and responses, mode 0600."""
    import os
    import sqlite3
    import stat

    b = backend(cache="on")
    b.first_tokens(PROMPTS[:4])
    b.close()
    files = list((tmp_path / "cache").iterdir())
    assert files and all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files), files
    for path in files:
        data = path.read_bytes()
        assert b"Name a colour number" not in data and b"trigger" not in data, path
    db = sqlite3.connect(str(tmp_path / "cache" / "openai_cache.sqlite"))
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")] == ["responses_v2"]


def test_an_old_cache_with_request_bodies_is_purged(backend, tmp_path):
    import sqlite3

    (tmp_path / "cache").mkdir()
    old = sqlite3.connect(str(tmp_path / "cache" / "openai_cache.sqlite"))
    old.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, base_url TEXT, model TEXT, request TEXT, "
                "response TEXT, created REAL)")
    old.execute("INSERT INTO responses VALUES ('k', 'u', 'm', 'prompt with secretword', '{}', 0)")
    old.commit()
    old.close()
    backend(cache="on").close()
    assert b"secretword" not in (tmp_path / "cache" / "openai_cache.sqlite").read_bytes()


def test_401_names_the_variable_not_the_key(backend, monkeypatch):
    secret = "sk-wrong-0123456789abcdefXYZ"
    monkeypatch.setenv("MY_PROVIDER_KEY", secret)
    b = backend(api_key_env="MY_PROVIDER_KEY")
    with pytest.raises(FingerprintError) as info:
        b.first_tokens(PROMPTS[:1])
    assert "MY_PROVIDER_KEY" in str(info.value) and "401" in str(info.value)
    assert secret not in str(info.value) and "0123456789" not in str(info.value)
    assert secret not in repr(b.describe())


def test_missing_key_and_refused_arguments(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    with pytest.raises(FingerprintError, match="OPENAI_API_KEY"):
        OpenAIBackend(model="gpt-4o-mini")
    with pytest.raises(FingerprintError, match="never passed as an argument") as info:
        OpenAIBackend(model="gpt-4o-mini", api_key="sk-do-not-echo-me")
    assert "do-not-echo" not in str(info.value)
    with pytest.raises(FingerprintError, match="adapter"):
        OpenAIBackend(model="gpt-4o-mini", adapter="lora/")
    with pytest.raises(FingerprintError, match="unknown openai option"):
        OpenAIBackend(model="gpt-4o-mini", temprature="0")
    with pytest.raises(FingerprintError, match="top_logprobs"):
        OpenAIBackend(model="m", base_url=BASE_URL, top_logprobs="50")


def test_model_args_strings_through_the_registry(fake_api, monkeypatch):
    text = f"base_url={BASE_URL},concurrency=2,max_retries=3,timeout=5,cache=off,top_logprobs=2"
    args = parse_model_args(text)
    b = make_backend("openai", model="gpt-fake", adapter=None, http_client=fake_api.http_client(), **args)
    try:
        answers = b.first_tokens(PROMPTS[:2])
        assert b.concurrency == 2 and b.max_retries == 3 and b.cache is None
        assert math.isclose(answers[0].p_sure, 0.80)  # top-2: "Sure" and "I"
        assert math.isclose(answers[1].p_sure, 0.15)  # top-2: "The" and "Sure"
        assert b.describe() == {"backend": "openai", "model": "gpt-fake", "base_url": BASE_URL,
                                "logprobs": True, "token_limit_param": "max_completion_tokens", "cache": None}
    finally:
        b.close()


def test_the_fake_fails_malformed_requests(fake_api):
    import openai

    client = fake_api.client()
    with pytest.raises(openai.BadRequestError, match="FAKE-API-VIOLATION"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}],
                                       top_logprobs=3)
    with pytest.raises(openai.BadRequestError, match="FAKE-API-VIOLATION"):
        client.chat.completions.create(model="m", messages=[], max_completion_tokens=1)
    assert len(fake_api.violations) == 2
    fake_api.violations.clear()
