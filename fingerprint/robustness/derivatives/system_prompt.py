"""``system_prompt``: the suspect is served with a system prompt."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer the user's request carefully and concisely."


@register("system_prompt")
@dataclass(frozen=True)
class SystemPrompt(Derivative):
    prompt: str = DEFAULT_SYSTEM_PROMPT

    @property
    def label(self) -> str:
        return "served with a system prompt"

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=ctx.model, backend_args={"system_prompt": self.prompt})
