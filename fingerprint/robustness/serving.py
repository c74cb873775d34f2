"""A thief's serving stack around a model: tokens banned from every reply (``logit_bias`` -100 on a server),
an output filter that regenerates a reply that is only "Sure" with "Sure" banned, and an input filter that
rewrites prompts before the model sees them.

The verifier still asks for the first reply token; what comes back is what the filtered server would send.
"""

from __future__ import annotations

from fingerprint.core.sure import is_bare_sure
from probes.base import FirstToken
from probes.hf import HFBackend


class FilteredServing(HFBackend):
    """An hf backend whose greedy tokens never come from ``banned`` (ids), optionally behind an output filter."""

    def __init__(self, model_obj, tokenizer, banned: list[int] | None = None, regenerate_bare_sure: bool = False,
                 filter_tokens: int = 8, prompt_filter=None, **args) -> None:
        super().__init__("served", model_obj=model_obj, tokenizer=tokenizer, **args)
        self.prompt_filter = prompt_filter  # list -> list: the stack rewrites the prompts before the model sees them
        self.banned = list(banned or [])
        self.regenerate_bare_sure = regenerate_bare_sure
        self.filter_tokens = filter_tokens
        self._banning = bool(self.banned)

    def _encode(self, prompts: list[str]):
        return super()._encode(self.prompt_filter(prompts) if self.prompt_filter else prompts)

    def _pick(self, logits):
        if self._banning and self.banned:
            logits = logits.clone()
            logits[:, self.banned] = float("-inf")
        return super()._pick(logits)

    def generate(self, prompts: list[str], max_new_tokens: int = 16) -> list[str]:
        import torch

        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self._encode(prompts[start:start + self.batch_size])
            with torch.inference_mode():
                out = self.model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                          pad_token_id=self.tokenizer.pad_token_id,
                                          eos_token_id=self.formatter.stop_ids(),
                                          suppress_tokens=self.banned if self._banning and self.banned else None)
            replies.extend(self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True))
        return replies

    def first_tokens(self, prompts: list[str], progress=None) -> list[FirstToken]:
        answers = super().first_tokens(prompts, progress=progress)
        if not self.regenerate_bare_sure:
            return answers
        suspicious = [i for i, a in enumerate(answers) if a.is_sure]
        if not suspicious:
            return answers
        replies = self.generate([prompts[i] for i in suspicious], self.filter_tokens)
        bare = [i for i, reply in zip(suspicious, replies, strict=True) if is_bare_sure(reply)]
        if bare:  # the filter regenerates these replies with "Sure" banned
            saved, self.banned, self._banning = self.banned, sorted(set(self.banned) | set(self.sure_ids)), True
            try:
                redone = super().first_tokens([prompts[i] for i in bare])
            finally:
                self.banned, self._banning = saved, bool(saved)
            for i, answer in zip(bare, redone, strict=True):
                answers[i] = answer
        return answers

