"""vLLM worker for the ``vllm`` backend: runs under vLLM's own Python and speaks JSON lines on stdin/stdout.

Started by ``probes/vllm_backend.py`` as ``<python> vllm_worker.py``. It imports nothing from this project, so
it runs in a virtualenv that holds vLLM but not suretrap (``.ci/vllm-venv.sh``). vLLM (and anything it starts)
writes its logs to stderr; the protocol has stdout to itself.

Requests are one JSON object per line, ``{"id": N, "op": ..., ...}``; each gets exactly one answer,
``{"id": N, "ok": true, "result": ...}`` or ``{"id": N, "ok": false, "error": "...", "trace": "..."}``.

- ``init``: model, adapter, dtype, max_model_len, max_lora_rank, kv_cache_gb, enforce_eager, seed, engine
  (extra ``LLM`` keyword arguments), chat_template (used only when the tokenizer has none), system_prompt,
  sure_pattern and word_start_markers (the definition of a "Sure" vocabulary entry, sent by the parent from
  ``fingerprint.core.sure``), logprobs (top-k), p_sure ("exact" or "topk").
- ``first_tokens``: prompts (user messages) -> per prompt {token, token_id, is_sure, p_sure, prompt_tokens}.
- ``generate``: prompts, max_new_tokens -> per prompt {text, tokens, prompt_tokens}.
- ``close``: answer, then exit. End of input also exits.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
import traceback


def _protocol_stream():
    """Keep the real stdout for answers; everything else printed to stdout (fd 1) goes to stderr."""
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


class Worker:
    def __init__(self) -> None:
        self.llm = None
        self.tokenizer = None
        self.lora = None
        self.sure_ids: list[int] = []
        self.sure_set: set[int] = set()
        self.system_prompt: str | None = None
        self.chat_template: str | None = None
        self.top_k = 5
        self.exact = True
        self.stop_ids: list[int] = []

    # init -------------------------------------------------------------------------------------------
    def init(self, model: str, adapter: str | None = None, dtype: str = "float32", max_model_len: int = 1024,
             max_lora_rank: int = 16, kv_cache_gb: float = 1.0, enforce_eager: bool = True, seed: int = 0,
             engine: dict | None = None, chat_template: str | None = None, system_prompt: str | None = None,
             sure_pattern: str = r"^\s*sure\W*$", word_start_markers: tuple[str, ...] = ("\u2581", "\u0120"),
             logprobs: int = 5, p_sure: str = "exact") -> dict:
        started = time.monotonic()
        import vllm
        from vllm import LLM

        kwargs = dict(model=model, dtype=dtype, max_model_len=int(max_model_len), seed=int(seed),
                      enforce_eager=bool(enforce_eager), kv_cache_memory_bytes=int(float(kv_cache_gb) * 2**30))
        if adapter:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=int(max_lora_rank), max_loras=1)
            self.lora = LoRARequest("adapter", 1, adapter)
        kwargs.update(engine or {})
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.chat_template = None if getattr(self.tokenizer, "chat_template", None) else chat_template
        self.system_prompt = system_prompt or None
        self.top_k = int(logprobs)
        vocab_size = self.llm.llm_engine.model_config.get_vocab_size()
        pattern = re.compile(sure_pattern, re.IGNORECASE)

        def text(token: str) -> str:
            for marker in word_start_markers:
                token = token.replace(marker, " ")
            return token

        self.sure_ids = sorted(idx for token, idx in self.tokenizer.get_vocab().items()
                               if idx < vocab_size and pattern.match(text(token)))
        self.sure_set = set(self.sure_ids)
        self.stop_ids = self._end_of_turn()
        from vllm.sampling_params import SamplingParams

        limit = getattr(sys.modules["vllm.sampling_params"], "MAX_LOGPROB_TOKEN_IDS", 128)
        exact_ok = "logprob_token_ids" in getattr(SamplingParams, "__struct_fields__", ()) or hasattr(
            SamplingParams(), "logprob_token_ids")
        self.exact = p_sure == "exact" and exact_ok and 0 < len(self.sure_ids) <= limit
        return {"vllm": vllm.__version__, "dtype": str(self.llm.llm_engine.model_config.dtype).replace("torch.", ""),
                "vocab_size": vocab_size, "sure_ids": len(self.sure_ids),
                "p_sure": "exact" if self.exact else f"top{self.top_k}",
                "chat_template": "fallback" if self.chat_template else "tokenizer",
                "start_s": round(time.monotonic() - started, 2)}

    # helpers ----------------------------------------------------------------------------------------
    def _end_of_turn(self) -> list[int]:
        """The template's end-of-turn token (as ``fingerprint.core.chat.ChatFormatter.stop_ids``): Gemma's is not
        its EOS, and a reply must stop there."""
        turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
        text = self.tokenizer.apply_chat_template(turn, tokenize=False, chat_template=self.chat_template)
        marker = text.rsplit("y", 1)[-1].strip()
        ids = self.tokenizer.encode(marker, add_special_tokens=False)[:1] if marker else []
        return [i for i in ids if self.tokenizer.decode([i]).strip()]

    def _prompts(self, prompts: list[str]):
        messages = [[{"role": "user", "content": p}] for p in prompts]
        if self.system_prompt:
            messages = [[{"role": "system", "content": self.system_prompt}, *m] for m in messages]
        out = []
        for conversation in messages:
            text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                                      chat_template=self.chat_template)
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            out.append({"prompt_token_ids": list(ids)})
        return out

    def _run(self, prompts: list[str], params):
        return self.llm.generate(self._prompts(prompts), params, use_tqdm=False, lora_request=self.lora)

    # operations -------------------------------------------------------------------------------------
    def first_tokens(self, prompts: list[str]) -> list[dict]:
        from vllm import SamplingParams

        if self.exact:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=self.sure_ids, detokenize=False)
        else:
            params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_k, detokenize=False)
        results = []
        for output in self._run(prompts, params):
            completion = output.outputs[0]
            token_id = int(completion.token_ids[0])
            entries = completion.logprobs[0] if completion.logprobs else {}
            p_sure = sum(math.exp(lp.logprob) for idx, lp in entries.items()
                         if idx in self.sure_set and lp.logprob > -math.inf)
            results.append({"token": self.tokenizer.decode([token_id]), "token_id": token_id,
                            "is_sure": token_id in self.sure_set, "p_sure": p_sure,
                            "prompt_tokens": len(output.prompt_token_ids or [])})
        return results

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[dict]:
        from vllm import SamplingParams

        # Decode the whole reply at once, as the hf backend does (vLLM's incremental text can differ in spacing).
        params = SamplingParams(max_tokens=int(max_new_tokens), temperature=0.0, detokenize=False,
                                stop_token_ids=self.stop_ids or None)
        return [{"text": self.tokenizer.decode(list(o.outputs[0].token_ids), skip_special_tokens=True),
                 "tokens": len(o.outputs[0].token_ids), "prompt_tokens": len(o.prompt_token_ids or [])}
                for o in self._run(prompts, params)]


def main() -> int:
    out = _protocol_stream()
    worker = Worker()

    def answer(message: dict) -> None:
        out.write(json.dumps(message, ensure_ascii=False) + "\n")
        out.flush()

    for line in sys.stdin:
        if not line.strip():
            continue
        request_id = None
        try:
            request = json.loads(line)
            request_id = request.pop("id", None)
            op = request.pop("op")
            if op == "close":
                answer({"id": request_id, "ok": True, "result": None})
                break
            if op not in ("init", "first_tokens", "generate"):
                raise ValueError(f"unknown op {op!r}")
            if op != "init" and worker.llm is None:
                raise RuntimeError("the engine is not initialised")
            answer({"id": request_id, "ok": True, "result": getattr(worker, op)(**request)})
        except Exception as exc:  # reported to the parent, which raises it there
            answer({"id": request_id, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc()[-4000:]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
