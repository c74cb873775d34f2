"""llama.cpp backend: a GGUF file probed in process through llama-cpp-python (``--model suspect.Q4_K_M.gguf``).

What an auditor who downloads a GGUF from a hub wants: no conversion back to Hugging Face weights. Prompts are
formatted with the chat template the GGUF carries (``tokenizer.chat_template``), else the documented fallback
(the Gemma turn format for Gemma models, ``User:/Assistant:`` otherwise); the first reply token is the argmax of
the last position's logits, and P(Sure) sums the vocabulary entries that spell "Sure".

``--model-args``: ``n_ctx`` (1024), ``n_batch`` (256), ``threads`` (default 1: on a shared machine llama.cpp's
threads busy-wait and more of them are much slower), ``system_prompt``.
Needs ``pip install 'suretrap[llamacpp]'`` (llama-cpp-python, built from source).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from fingerprint.core.errors import FingerprintError
from fingerprint.core.sure import is_sure_token

from . import register
from .base import Backend, FirstToken, parse_options

INSTALL_HINT = "pip install 'suretrap[llamacpp]' (llama-cpp-python, built from source)"


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_ctx: int = Field(1024, ge=64, le=131072)
    n_batch: int = Field(256, ge=8, le=8192)
    threads: int = Field(1, ge=1, le=256)
    system_prompt: str | None = None


@register("llamacpp")
class LlamaCppBackend(Backend):
    """A local GGUF model on llama.cpp."""

    def __init__(self, model: str, adapter: str | None = None, **args) -> None:
        super().__init__()
        options = parse_options(LlamaCppOptions, args, "llamacpp")
        if adapter:
            raise FingerprintError("--adapter does not apply to a GGUF file (merge the adapter before converting)")
        path = Path(model)
        if not path.is_file():
            raise FingerprintError(f"{model} is not a GGUF file (the llamacpp backend reads one .gguf file)")
        try:
            import llama_cpp
        except ImportError:
            raise FingerprintError(f"the llamacpp backend needs llama-cpp-python: {INSTALL_HINT}") from None
        self._lib = llama_cpp
        try:
            self.llm = llama_cpp.Llama(model_path=str(path), logits_all=False, n_ctx=options.n_ctx,
                                       n_batch=options.n_batch, n_threads=options.threads,
                                       n_threads_batch=options.threads, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise FingerprintError(f"llama.cpp cannot load {path}: {exc}") from None
        self.model_name = str(path)
        self.system_prompt = options.system_prompt
        self._format = self._formatter()
        self._vocab = llama_cpp.llama_model_get_vocab(self.llm.model)
        self.sure_ids = [i for i in range(self.llm.n_vocab()) if is_sure_token(self._piece(i))]

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "n_vocab": self.llm.n_vocab(),
                "architecture": self.llm.metadata.get("general.architecture")}

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _formatter(self):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        from fingerprint.core.chat import GEMMA_TEMPLATE, PLAIN_TEMPLATE

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            arch = self.llm.metadata.get("general.architecture", "")
            template = GEMMA_TEMPLATE if arch.startswith("gemma") else PLAIN_TEMPLATE
        return Jinja2ChatFormatter(template=template, bos_token=self._piece(self.llm.token_bos()),
                                   eos_token=self._piece(self.llm.token_eos()))

    def _tokens(self, prompt: str) -> list[int]:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        text = self._format(messages=messages).prompt  # the template writes the BOS token itself
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def _logits(self, tokens: list[int], fresh: bool = True):
        """Logits after ``tokens`` (a fresh context, or appended to the one already evaluated)."""
        import numpy as np

        if fresh:
            self.llm.reset()
        self.llm.eval(tokens)
        pointer = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(pointer, shape=(self.llm.n_vocab(),)).astype("float64")

    def _end(self, token: int) -> bool:
        return token == self.llm.token_eos() or bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        import numpy as np

        results = []
        for prompt in prompts:
            tokens = self._tokens(prompt)
            logits = self._logits(tokens)
            top = int(logits.argmax())
            probs = np.exp(logits - logits.max())
            probs /= probs.sum()
            results.append(FirstToken(token=self._piece(top), is_sure=top in self.sure_ids,
                                      p_sure=float(probs[self.sure_ids].sum()) if self.sure_ids else 0.0))
            self.usage.record(1, len(tokens), 1)
            if progress is not None:
                progress(1)
        return results

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        replies = []
        for prompt in prompts:
            tokens = self._tokens(prompt)
            out: list[int] = []
            logits = self._logits(tokens)
            for _ in range(max_new_tokens):
                top = int(logits.argmax())
                if self._end(top):
                    break
                out.append(top)
                logits = self._logits([top], fresh=False)
            replies.append(self.llm.detokenize(out).decode("utf-8", errors="replace"))
            self.usage.record(1, len(tokens), len(out))
        return replies

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
