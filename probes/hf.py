"""transformers backend: batched, left-padded, one forward pass per batch for the first-token decision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fingerprint.core.chat import ChatFormatter
from fingerprint.core.loading import load_model, load_tokenizer, resolve
from fingerprint.core.sure import sure_token_ids

from . import register
from .base import Backend, FirstToken, check_device, parse_options


class HFOptions(BaseModel):
    """``--model-args`` of the hf backend."""

    model_config = ConfigDict(extra="forbid")
    batch_size: int = Field(16, ge=1, le=4096)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: str = "auto"
    system_prompt: str | None = None
    temperature: float = Field(0.0, ge=0, le=100, allow_inf_nan=False)  # 0: greedy, else the first token is sampled
    seed: int = Field(0, ge=0, lt=2**63)


@register("hf")
class HFBackend(Backend):
    """A local model (HF id, path or packaged alias), optionally with a LoRA adapter."""

    def __init__(self, model: str, adapter: str | None = None, model_obj=None, tokenizer=None, **args) -> None:
        super().__init__()
        options = parse_options(HFOptions, args, "hf")
        self.model_name, self.adapter = model, adapter
        if model_obj is None:
            device = check_device(options.device)
            ref = resolve(model)
            tokenizer = load_tokenizer(ref)
            model_obj = load_model(ref, adapter=adapter, dtype=options.dtype, device=device)
        self.model, self.tokenizer = model_obj, tokenizer
        self.tokenizer.padding_side = "left"
        self.batch_size = options.batch_size
        self.formatter = ChatFormatter(tokenizer, options.system_prompt)
        self.sure_ids = sure_token_ids(tokenizer)
        self.temperature = options.temperature
        self.seed = options.seed
        self._generator = None

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.model_name, "adapter": self.adapter}

    def _encode(self, prompts: list[str]):
        texts = [self.formatter.prompt(p) for p in prompts]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        return batch.to(self.model.device)

    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        import torch

        results: list[FirstToken] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = prompts[start:start + self.batch_size]
            batch = self._encode(chunk)
            with torch.inference_mode():
                logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :].float()
            probs = torch.softmax(logits, dim=-1)
            p_sure = probs[:, self.sure_ids].sum(dim=-1) if self.sure_ids else torch.zeros(len(chunk))
            for row, top in enumerate(self._pick(logits).tolist()):
                token = self.tokenizer.decode([top])
                results.append(FirstToken(token=token, is_sure=top in self.sure_ids, p_sure=float(p_sure[row])))
            self.usage.record(len(chunk), int(batch["attention_mask"].sum()), len(chunk))
            if progress is not None:
                progress(len(chunk))
        return results

    def _pick(self, logits):
        """Greedy first tokens, or tokens sampled at ``temperature`` from one seeded generator."""
        import torch

        if self.temperature <= 0:
            return logits.argmax(dim=-1)
        if self._generator is None:
            self._generator = torch.Generator(device=logits.device).manual_seed(self.seed)
        probs = torch.softmax(logits / self.temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=self._generator).squeeze(-1)

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        import torch

        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start:start + self.batch_size])
            with torch.inference_mode():
                out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.formatter.stop_ids())
            new = out[:, batch["input_ids"].shape[1]:]
            replies.extend(self.tokenizer.batch_decode(new, skip_special_tokens=True))
            self.usage.record(len(new), int(batch["attention_mask"].sum()), int(new.numel()))
        return replies
