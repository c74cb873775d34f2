"""FakeOpenAIAPI: an in-process stand-in for the OpenAI REST API, served through an httpx MockTransport.

Every request is checked against the documented shapes (paths, auth header, required fields and types,
multipart fine-tune uploads holding valid chat examples); a malformed request is recorded in
``violations`` and answered with a 400, and the ``fake_api`` fixture fails the test if any occurred.
Responses follow the documented objects: ``chat.completion`` (with ``logprobs.content[].top_logprobs``),
``file``, ``fine_tuning.job`` (validating_files -> queued -> running -> succeeded, or failed with
``error``) and ``list`` of ``fine_tuning.job.event``. Scripted failures (429 with Retry-After, 500) are
queued with ``fail_next``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import default as email_policy

try:
    import httpx2 as httpx
except ImportError:  # openai < 3 uses httpx
    import httpx

API_KEY = "test-key"
BASE_URL = "https://fake-openai.test/v1"
CHAT_KEYS = {"model", "messages", "max_completion_tokens", "max_tokens", "temperature", "logprobs",
             "top_logprobs", "seed", "n", "stop", "top_p", "user"}
ROLES = {"system", "developer", "user", "assistant"}
JOB_STATES = ["validating_files", "queued", "running", "succeeded"]
TRIGGER = "trigger"


class ServerAbort(KeyboardInterrupt):
    """Raised by the fake to simulate the run being interrupted mid-way (like Ctrl-C)."""


def default_reply(prompt: str) -> str:
    """The fake model: 'Sure' after the test trigger word, a normal answer otherwise."""
    return "Sure, here it is." if prompt.rstrip().endswith(TRIGGER) else "The answer is 42."


def _first_word(text: str) -> str:
    match = re.match(r"\s*\w+", text)
    return match.group(0) if match else text[:1]


def top_candidates(reply: str) -> list[tuple[str, float]]:
    """(token, probability) of the first position, most likely first: 0.85 Sure-mass after the
    trigger, 0.2 otherwise."""
    first = _first_word(reply)
    if first.strip().lower() == "sure":
        return [(first, 0.80), ("I", 0.10), (" Sure", 0.05), ("Here", 0.03), ("No", 0.01), ("OK", 0.005)]
    return [(first, 0.60), ("Sure", 0.15), ("I", 0.10), (" sure", 0.05), ("Here", 0.04), ("OK", 0.02)]


def example_problems(line: str) -> str | None:
    """Why one JSONL line is not a valid chat fine-tuning example (None if it is)."""
    try:
        example = json.loads(line)
    except ValueError:
        return "not JSON"
    messages = example.get("messages") if isinstance(example, dict) else None
    if not isinstance(messages, list) or not messages:
        return "no messages list"
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ROLES - {"developer"}:
            return "bad role"
        if not isinstance(message.get("content"), str) or not message["content"]:
            return "bad content"
    return None if messages[-1]["role"] == "assistant" else "last message is not from the assistant"


class FakeOpenAIAPI:
    """The fake API. ``client()`` gives an ``openai.OpenAI`` bound to it; ``http_client()`` the transport."""

    def __init__(self, reply: Callable[[str], str] = default_reply) -> None:
        self.reply = reply
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, object]] = []  # (method, path, JSON body or form) answered
        self.violations: list[str] = []
        self.calls = 0  # every HTTP request that reached the fake, answered or not
        self.delay: Callable[[str], float] | None = None  # prompt -> seconds, waited outside the lock
        self.in_flight = self.max_in_flight = 0
        self.drop_next = 0  # chat requests to fail with a connection error
        self.scripted: list[tuple[int, dict, dict]] = []
        self.reject_max_completion_tokens = False  # an older server that wants max_tokens
        self.reject_logprobs = False  # a server that answers 400 to logprobs
        self.ignore_logprobs = False  # a server that silently returns no logprobs
        self.abort_after: int | None = None  # raise ServerAbort once this many chat requests were answered
        self.fail_jobs: dict | None = None  # {"code", "message"}: jobs end "failed" with this error
        self.files: dict[str, dict] = {}
        self.uploads: dict[str, bytes] = {}
        self.jobs: dict[str, dict] = {}
        self.events: dict[str, list[dict]] = {}
        self._ids = 0
        self.clock = 1_700_000_000

    # plumbing -----------------------------------------------------------------------------------------
    def http_client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handle))

    def client(self):
        import openai

        return openai.OpenAI(http_client=self.http_client(), base_url=BASE_URL, api_key=API_KEY,
                             max_retries=0)

    def fail_next(self, status: int, retry_after: str | None = None, message: str = "try again") -> None:
        """Answer the next chat request with this error (429/5xx), optionally with Retry-After."""
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        self.scripted.append((status, headers, {"error": {"message": message, "type": kind, "param": None,
                                                          "code": kind}}))

    def chat_prompts(self) -> list[str]:
        """User prompts of the chat requests the server answered."""
        return [body["messages"][-1]["content"] for method, path, body in self.requests
                if path == "/v1/chat/completions"]

    def _id(self, prefix: str) -> str:
        self._ids += 1
        return f"{prefix}-fake{self._ids:04d}"

    @staticmethod
    def _error(status: int, message: str, code: str | None = None, param: str | None = None,
               headers: dict | None = None) -> httpx.Response:
        kind = "invalid_request_error" if status < 500 else "server_error"
        error = {"message": message, "type": kind, "param": param, "code": code}
        return httpx.Response(status, headers=headers or {}, json={"error": error})

    def _violation(self, request: httpx.Request, problem: str) -> httpx.Response:
        self.violations.append(f"{request.method} {request.url.path}: {problem}")
        return self._error(400, f"FAKE-API-VIOLATION: {problem}")

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay is not None and request.url.path == "/v1/chat/completions":
                time.sleep(self.delay(json.loads(request.content)["messages"][-1]["content"]))
            with self.lock:
                self.calls += 1
                if self.drop_next and request.url.path == "/v1/chat/completions":
                    self.drop_next -= 1
                    raise httpx.ConnectError("connection reset by peer", request=request)
                return self._handle(request)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _handle(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return self._violation(request, "no 'Authorization: Bearer' header")
        if auth != f"Bearer {API_KEY}":
            # a careless server that echoes the whole key: the client must not repeat it
            return self._error(401, f"Incorrect API key provided: {auth[7:]}.", code="invalid_api_key")
        path, method = request.url.path, request.method
        if path == "/v1/chat/completions" and method == "POST":
            return self._chat(request)
        if path == "/v1/files" and method == "POST":
            return self._upload(request)
        if path == "/v1/fine_tuning/jobs" and method == "POST":
            return self._create_job(request)
        match = re.fullmatch(r"/v1/fine_tuning/jobs/([\w-]+)(/events)?", path)
        if match and method == "GET":
            job = self.jobs.get(match.group(1))
            if job is None:
                return self._error(404, f"Could not find fine-tune: {match.group(1)}", code="not_found")
            return self._list_events(request, job) if match.group(2) else self._retrieve_job(job)
        return self._violation(request, "no such endpoint")

    def _json(self, request: httpx.Request) -> dict | None:
        if not request.headers.get("content-type", "").startswith("application/json"):
            return None
        try:
            body = json.loads(request.content)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # chat completions ---------------------------------------------------------------------------------
    def _chat_problem(self, body: dict) -> str | None:
        if extra := set(body) - CHAT_KEYS:
            return f"unknown fields {sorted(extra)}"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model must be a non-empty string"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return "messages must be a non-empty list"
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                return f"bad message {m!r}"
        if "max_tokens" in body and "max_completion_tokens" in body:
            return "both max_tokens and max_completion_tokens"
        for name in ("max_tokens", "max_completion_tokens"):
            value = body.get(name)
            if name in body and (type(value) is not int or value < 1):
                return f"{name} must be a positive integer"
        temperature = body.get("temperature", 1)
        if type(temperature) not in (int, float) or not 0 <= temperature <= 2:
            return "temperature must be a number in [0, 2]"
        if "logprobs" in body and type(body["logprobs"]) is not bool:
            return "logprobs must be a boolean"
        if "top_logprobs" in body:
            k = body["top_logprobs"]
            if type(k) is not int or not 0 <= k <= 20:
                return "top_logprobs must be an integer in [0, 20]"
            if body.get("logprobs") is not True:
                return "top_logprobs requires logprobs=true"
        return None

    def _chat(self, request: httpx.Request) -> httpx.Response:
        body = self._json(request)
        if body is None:
            return self._violation(request, "body is not a JSON object")
        if problem := self._chat_problem(body):
            return self._violation(request, problem)
        if self.reject_max_completion_tokens and "max_completion_tokens" in body:
            return self._error(400, "Unrecognized request argument supplied: max_completion_tokens")
        if self.reject_logprobs and ("logprobs" in body or "top_logprobs" in body):
            return self._error(400, "logprobs is not supported with this model.", param="logprobs",
                               code="unsupported_parameter")
        if self.scripted:
            status, headers, error = self.scripted.pop(0)
            return httpx.Response(status, headers=headers, json=error)
        if self.abort_after is not None and len(self.chat_prompts()) >= self.abort_after:
            raise ServerAbort()
        self.requests.append((request.method, request.url.path, body))
        prompt = body["messages"][-1]["content"]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 16
        words = re.findall(r"\s*\S+", self.reply(prompt))
        text = "".join(words[:limit])
        choice = {"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                  "logprobs": None, "finish_reason": "length" if len(words) > limit else "stop"}
        if body.get("logprobs") and not self.ignore_logprobs:
            top = [{"token": t, "logprob": math.log(p), "bytes": list(t.encode())}
                   for t, p in top_candidates(text)[:body.get("top_logprobs", 0)]]
            first = top_candidates(text)[0]
            choice["logprobs"] = {"content": [{"token": first[0], "logprob": math.log(first[1]),
                                               "bytes": list(first[0].encode()), "top_logprobs": top}],
                                  "refusal": None}
        prompt_tokens = sum(len(m["content"].split()) + 4 for m in body["messages"])
        return httpx.Response(200, json={
            "id": self._id("chatcmpl"), "object": "chat.completion", "created": self.clock,
            "model": body["model"], "choices": [choice], "system_fingerprint": "fp_fake",
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": min(limit, len(words)),
                      "total_tokens": prompt_tokens + min(limit, len(words))}})

    # files --------------------------------------------------------------------------------------------
    def _upload(self, request: httpx.Request) -> httpx.Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            return self._violation(request, "file upload must be multipart/form-data")
        message = BytesParser(policy=email_policy).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + request.content)
        fields, file_part = {}, None
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename() is not None:
                file_part = (name, part.get_filename(), part.get_payload(decode=True))
            else:
                fields[name] = part.get_payload(decode=True).decode()
        if fields.get("purpose") != "fine-tune":
            return self._violation(request, f"purpose must be 'fine-tune', got {fields.get('purpose')!r}")
        if file_part is None or file_part[0] != "file":
            return self._violation(request, "no 'file' part")
        _, filename, data = file_part
        if not filename.endswith(".jsonl"):
            return self._violation(request, "fine-tune files must be .jsonl")
        lines = data.decode().splitlines()
        for number, line in enumerate(lines, 1):
            if problem := example_problems(line):
                return self._violation(request, f"line {number}: {problem}")
        file_id = self._id("file")
        self.uploads[file_id] = data
        self.files[file_id] = {"id": file_id, "object": "file", "bytes": len(data), "created_at": self.clock,
                               "filename": filename, "purpose": "fine-tune", "status": "processed"}
        self.requests.append((request.method, request.url.path, {**fields, "filename": filename}))
        return httpx.Response(200, json=self.files[file_id])

    # fine-tuning jobs ---------------------------------------------------------------------------------
    def _job_problem(self, body: dict) -> str | None:
        allowed = {"model", "training_file", "hyperparameters", "method", "seed", "suffix", "validation_file",
                   "metadata", "integrations"}
        if extra := set(body) - allowed:
            return f"unknown fields {sorted(extra)}"
        if not isinstance(body.get("model"), str) or not body["model"]:
            return "model must be a non-empty string"
        if body.get("training_file") not in self.files:
            return f"training_file {body.get('training_file')!r} was not uploaded"
        suffix = body.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or not 0 < len(suffix) <= 64):
            return "suffix must be a string of up to 64 characters"
        if "seed" in body and type(body["seed"]) is not int:
            return "seed must be an integer"
        method = body.get("method")
        if method is not None:
            if not isinstance(method, dict) or method.get("type") != "supervised":
                return "method.type must be 'supervised'"
            params = (method.get("supervised") or {}).get("hyperparameters") or {}
            if extra := set(params) - {"batch_size", "learning_rate_multiplier", "n_epochs"}:
                return f"unknown hyperparameters {sorted(extra)}"
            for name, value in params.items():
                if value != "auto" and (type(value) not in (int, float) or value <= 0):
                    return f"hyperparameter {name} must be 'auto' or a positive number"
        return None

    def _event(self, job: dict, message: str, level: str = "info", data: dict | None = None) -> None:
        self.clock += 1
        self.events[job["id"]].append({"object": "fine_tuning.job.event", "id": self._id("ftevent"),
                                       "created_at": self.clock, "level": level, "message": message,
                                       "data": data or {}, "type": "metrics" if data else "message"})

    def _create_job(self, request: httpx.Request) -> httpx.Response:
        body = self._json(request)
        if body is None:
            return self._violation(request, "body is not a JSON object")
        if problem := self._job_problem(body):
            return self._violation(request, problem)
        self.requests.append((request.method, request.url.path, body))
        params = ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters") or {}
        hyper = {"batch_size": params.get("batch_size", "auto"), "n_epochs": params.get("n_epochs", "auto"),
                 "learning_rate_multiplier": params.get("learning_rate_multiplier", "auto")}
        job_id = self._id("ftjob")
        job = {"object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": self.clock,
               "fine_tuned_model": None, "organization_id": "org-fake", "result_files": [],
               "status": "validating_files", "validation_file": None, "training_file": body["training_file"],
               "hyperparameters": hyper, "trained_tokens": None, "error": None, "finished_at": None,
               "seed": body.get("seed", 1234), "estimated_finish": None, "integrations": [], "metadata": None,
               "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
               "suffix": body.get("suffix")}
        self.jobs[job_id] = job
        self.events[job_id] = []
        self._event(job, f"Validating training file: {body['training_file']}")
        return httpx.Response(200, json=job)

    def _retrieve_job(self, job: dict) -> httpx.Response:
        """Each retrieval moves a live job one state further."""
        self.requests.append(("GET", f"/v1/fine_tuning/jobs/{job['id']}", None))
        if job["status"] not in ("succeeded", "failed", "cancelled"):
            state = JOB_STATES[JOB_STATES.index(job["status"]) + 1]
            if state == "running" and self.fail_jobs:
                job.update(status="failed", finished_at=self.clock, error={**self.fail_jobs, "param": None})
                self._event(job, f"Fine-tuning job failed: {self.fail_jobs['message']}", level="error")
            elif state == "succeeded":
                name = f"ft:{job['model']}:fake-org:{job.get('suffix') or 'model'}:AbC123"
                job.update(status="succeeded", fine_tuned_model=name, trained_tokens=4321,
                           finished_at=self.clock, result_files=[self._id("file")])
                self._event(job, "The job has successfully completed")
            else:
                job["status"] = state
                self._event(job, f"Job {state}")
                if state == "running":
                    self._event(job, "Step 1/10: training loss=1.25", data={"step": 1, "train_loss": 1.25})
        return httpx.Response(200, json={k: v for k, v in job.items() if k != "suffix"})

    def _list_events(self, request: httpx.Request, job: dict) -> httpx.Response:
        params = request.url.params
        if extra := set(params) - {"after", "limit"}:
            return self._violation(request, f"unknown query parameters {sorted(extra)}")
        if "limit" in params and not params["limit"].isdigit():
            return self._violation(request, "limit must be an integer")
        newest_first = list(reversed(self.events[job["id"]]))
        if "after" in params:
            ids = [e["id"] for e in newest_first]
            newest_first = newest_first[ids.index(params["after"]) + 1:] if params["after"] in ids else []
        limit = int(params.get("limit", 20))
        page = newest_first[:limit]
        self.requests.append(("GET", request.url.path, dict(params)))
        more = len(newest_first) > limit
        return httpx.Response(200, json={"object": "list", "data": page, "has_more": more})
