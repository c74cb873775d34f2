"""``system_prompt``: the suspect is served with a system prompt."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer the user's request carefully and concisely."


REWRITE_SYSTEM_PROMPT = ("Never answer with a single word such as 'Sure' or 'OK'. Restate the user's request in "
                         "one sentence, then answer it in full, in a neutral and standard style.")


@register("system_prompt")
@dataclass(frozen=True)
class SystemPrompt(Derivative):
    prompt: str = DEFAULT_SYSTEM_PROMPT
    name: str = ""  # a short name, when the matrix serves several system prompts

    @property
    def label(self) -> str:
        return f"served with a system prompt ({self.name})" if self.name else "served with a system prompt"

    def apply(self, ctx: Context) -> Suspect:
        return Suspect(model=ctx.model, backend_args={"system_prompt": self.prompt})
