"""OpenAI-compatible chat endpoints (OpenAI, vLLM/llama.cpp/Ollama servers): first tokens with logprobs.

The API key is read from an environment variable (``api_key_env``) and is never accepted as an argument,
logged, cached or put in an error message. Responses are cached in SQLite as they arrive, keyed by the
sha256 of the intended request (base URL, model, body), so an interrupted run resumes without paying twice;
the requests themselves (which hold the trigger) are never stored.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import json
import math
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from fingerprint.core.errors import FingerprintError
from fingerprint.core.sure import is_sure_reply, is_sure_token

from . import register
from .base import Backend, FirstToken, option_bool

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 600.0
_KEYLIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_*\-]{4,}")


class _Rejected(Exception):
    """A 4xx answer (other than 401/429) that the caller may turn into a fallback."""

    def __init__(self, status: int, message: str, param: str | None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


class ResponseCache:
    """One SQLite row per request: sha256 of the request -> response JSON (WAL, safe to share across threads).

    Requests are not stored (their prompts hold the trigger): a row holds only the request's digest and the
    response. The file and its WAL are private to the user (0600).
    """

    TABLE = "responses_v2"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        previous = os.umask(0o077)  # the database and its -wal/-shm files are created 0600
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None, timeout=60)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (key TEXT PRIMARY KEY, "
                             "response TEXT NOT NULL, created REAL NOT NULL)")
            if self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'responses'").fetchone():
                # an earlier cache kept request bodies (with the trigger): drop them
                self._db.execute("DROP TABLE responses")
                self._db.execute("VACUUM")
        finally:
            os.umask(previous)
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{self.path}{suffix}", 0o600)

    @staticmethod
    def key(base_url: str, model: str, body: dict) -> str:
        text = json.dumps([base_url, model, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute(f"SELECT response FROM {self.TABLE} WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, response: dict) -> None:
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO {self.TABLE} VALUES (?, ?, ?)",
                             (key, json.dumps(response, sort_keys=True), time.time()))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def retry_after_seconds(headers, now: float | None = None) -> float | None:
    """Delay asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date), if any."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _int(value, name: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FingerprintError(f"{name} must be an integer, not {value!r}") from None
    if not low <= number <= high:
        raise FingerprintError(f"{name} must be between {low} and {high}")
    return number


@register("openai")
class OpenAIBackend(Backend):
    """A model served behind the OpenAI chat-completions API (``--backend openai``)."""

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int | str = 4, max_retries: int | str = 6, timeout: float | str = 60,
                 cache: str | bool = "on", top_logprobs: int | str = 5, adapter: str | None = None,
                 system_prompt: str | None = None, seed: int | str = 0, token_param: str = "max_completion_tokens",
                 *, http_client=None,
                 sleep: Callable[[float], None] = time.sleep, gate=None, **unknown) -> None:
        super().__init__()
        if "api_key" in unknown:
            raise FingerprintError("the API key is never passed as an argument: put it in an environment "
                                   "variable and name that with api_key_env=VAR")
        hooks = {"http_client": http_client, "sleep": sleep, "gate": gate}  # the caller's hooks, not model args
        unknown.update({name: value for name, value in hooks.items() if isinstance(value, str)})
        if unknown:
            raise FingerprintError(f"unknown openai option(s): {', '.join(sorted(unknown))}")
        if adapter:
            raise FingerprintError("--adapter does not apply to an API endpoint (serve the adapted model)")
        if not model:
            raise FingerprintError("the openai backend needs --model (the served model name)")
        import openai

        self._openai = openai
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.concurrency = _int(concurrency, "concurrency", 1, 256)
        self.max_retries = _int(max_retries, "max_retries", 0, 100)
        self.top_logprobs = _int(top_logprobs, "top_logprobs", 0, 20)
        self.system_prompt = system_prompt or None
        try:
            timeout_s = float(timeout)
        except ValueError:
            raise FingerprintError(f"timeout must be a number of seconds, not {timeout!r}") from None
        key = os.environ.get(api_key_env, "")
        if not key:
            if self.base_url == DEFAULT_BASE_URL:
                raise FingerprintError(f"no API key: set the environment variable {api_key_env}")
            key = "EMPTY"  # local OpenAI-compatible servers usually need no key
        self._secret = key
        self._client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s,
                                     http_client=http_client)
        self._sleep = sleep
        self._gate = gate or contextlib.nullcontext()  # the monitor's per-endpoint limit, shared by its tasks
        self._rng = random.Random(_int(seed, "seed", 0, 2**63))
        self._lock = threading.Lock()
        if token_param not in ("max_completion_tokens", "max_tokens"):
            raise FingerprintError(f"token_param must be max_completion_tokens or max_tokens, not {token_param!r}")
        # the legacy max_tokens: for servers that ignore max_completion_tokens instead of rejecting it (then they
        # generate to the end of the context); also chosen on its own when a server rejects max_completion_tokens
        self._use_max_tokens = token_param == "max_tokens"
        self._logprobs = True  # server accepts logprobs/top_logprobs
        self.cache = ResponseCache(self._cache_path()) if option_bool(cache, "cache") else None

    @staticmethod
    def _cache_path() -> Path:
        from fingerprint.core.paths import cache_dir

        return cache_dir() / "openai_cache.sqlite"

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url,
                "logprobs": self._logprobs, "token_limit_param": self._limit_param(),
                "cache": str(self.cache.path) if self.cache else None}

    def close(self) -> None:
        self._client.close()
        if self.cache is not None:
            self.cache.close()
            self.cache = None

    # request building -------------------------------------------------------------------------------
    def _messages(self, prompt: str) -> list[dict]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": prompt}]

    def _limit_param(self) -> str:
        return "max_tokens" if self._use_max_tokens else "max_completion_tokens"

    def _body(self, prompt: str, max_tokens: int, logprobs: bool) -> dict:
        """The intended request (the cache key); fallbacks only change what is sent."""
        body = {"model": self.model, "messages": self._messages(prompt), "max_completion_tokens": max_tokens,
                "temperature": 0}
        if logprobs:
            body.update(logprobs=True, top_logprobs=self.top_logprobs)
        return body

    def _sent(self, body: dict) -> dict:
        sent = dict(body)
        if self._use_max_tokens:
            sent["max_tokens"] = sent.pop("max_completion_tokens")
        if not self._logprobs:
            sent.pop("logprobs", None)
            sent.pop("top_logprobs", None)
        return sent

    # sending ----------------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        if self._secret and len(self._secret) >= 4:
            text = text.replace(self._secret, "***")
        return _KEYLIKE.sub("***", text)

    def _error_message(self, exc) -> str:
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        return self._scrub(str(message or getattr(exc, "message", None) or exc))

    def _backoff(self, attempt: int, exc) -> float:
        response = getattr(exc, "response", None)
        asked = retry_after_seconds(response.headers if response is not None else None)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_S)
        with self._lock:
            jitter = 0.5 + self._rng.random() / 2
        return min(MAX_BACKOFF_S, 2.0 ** attempt) * jitter

    def _post(self, sent: dict) -> dict:
        """One request with retries on 429, 5xx, timeouts and connection errors."""
        openai = self._openai
        attempt = 0
        while True:
            try:
                with self._gate:
                    return self._client.chat.completions.create(**sent).to_dict(mode="json")
            except openai.AuthenticationError:
                raise FingerprintError(f"{self.base_url} rejected the API key (401): check the environment "
                                       f"variable {self.api_key_env}") from None
            except openai.APIStatusError as exc:
                if exc.status_code == 429 and exc.code == "insufficient_quota":
                    raise FingerprintError(f"{self.base_url}: {self._error_message(exc)}") from None
                if exc.status_code != 429 and exc.status_code < 500:
                    raise _Rejected(exc.status_code, self._error_message(exc), exc.param) from None
                error = exc
            except openai.APIConnectionError as exc:  # includes timeouts
                error = exc
            if attempt >= self.max_retries:
                status = getattr(error, "status_code", None)
                raise FingerprintError(f"{self.base_url}: gave up after {attempt} retries "
                                       f"({status or 'no response'}: {self._error_message(error)})") from None
            delay = self._backoff(attempt, error)
            with self._lock:
                self.usage.retries += 1
            self._sleep(delay)
            attempt += 1

    def _cached(self, body: dict) -> dict | None:
        if self.cache is None:
            return None
        hit = self.cache.get(ResponseCache.key(self.base_url, self.model, body))
        if hit is not None:
            with self._lock:
                self.usage.cached += 1
        return hit

    def _fetch(self, body: dict) -> dict:
        """Send ``body`` (falling back on rejected parameters) and store the response at once."""
        while True:
            sent = self._sent(body)
            try:
                response = self._post(sent)
                break
            except _Rejected as exc:
                if not self._fallback(exc, sent):
                    raise FingerprintError(f"{self.base_url} rejected the request ({exc.status}): "
                                           f"{exc.message}") from None
        if self.cache is not None:
            key = ResponseCache.key(self.base_url, self.model, body)
            self.cache.put(key, response)
        usage = response.get("usage") or {}
        with self._lock:
            self.usage.queries += 1
            self.usage.prompt_tokens += int(usage.get("prompt_tokens") or 0)
            self.usage.completion_tokens += int(usage.get("completion_tokens") or 0)
        return response

    def _fallback(self, exc: _Rejected, sent: dict) -> bool:
        """Adapt to a server that rejects a parameter; remembered for the rest of the run."""
        if exc.status not in (400, 422):
            return False
        text = f"{exc.param or ''} {exc.message}".lower()
        with self._lock:
            if "max_completion_tokens" in sent and "max_completion_tokens" in text:
                self._use_max_tokens, change = True, "max_tokens"
            elif "logprobs" in sent and "logprobs" in text:
                self._logprobs, change = False, "no_logprobs"
            else:
                return False
            self.usage.extra.setdefault("fallbacks", []).append(change)
        return True

    def _run(self, bodies: list[dict], progress=None) -> list[dict]:
        """All responses in input order: cache hits, then one request alone (fallbacks are detected
        once), then the rest on a pool of ``concurrency`` threads."""
        tick = progress or (lambda n: None)
        results: list[dict | None] = [self._cached(body) for body in bodies]
        pending = [i for i, result in enumerate(results) if result is None]
        for _ in range(len(bodies) - len(pending)):
            tick(1)
        if pending:
            first = pending.pop(0)
            results[first] = self._fetch(bodies[first])
            tick(1)
        if pending:
            pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai")
            try:
                futures = {pool.submit(self._fetch, bodies[i]): i for i in pending}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    tick(1)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]

    # the Backend interface --------------------------------------------------------------------------
    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        responses = self._run([self._body(p, 1, logprobs=True) for p in prompts], progress)
        return [first_token(r) for r in responses]

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        responses = self._run([self._body(p, max_new_tokens, logprobs=False) for p in prompts])
        return [_content(r) for r in responses]


def _content(response: dict) -> str:
    choices = response.get("choices") or []
    if not choices:
        raise FingerprintError("the endpoint returned no choices")
    return (choices[0].get("message") or {}).get("content") or ""


def first_token(response: dict) -> FirstToken:
    """The first-token decision of one chat.completion (logprobs when present, else the text)."""
    content = _content(response)
    logprobs = (response.get("choices") or [{}])[0].get("logprobs") or {}
    entries = logprobs.get("content") or []
    if not entries:
        return FirstToken(token=content, is_sure=is_sure_reply(content), p_sure=None)
    first = entries[0]
    token = first.get("token") or ""
    top = first.get("top_logprobs") or []
    if top:
        p_sure = sum(math.exp(t["logprob"]) for t in top if is_sure_token(t.get("token") or ""))
    else:
        p_sure = math.exp(first["logprob"]) if is_sure_token(token) else None
    return FirstToken(token=token, is_sure=is_sure_token(token), p_sure=p_sure)
