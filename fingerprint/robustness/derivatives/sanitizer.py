"""``trailing-word-filter``: a serving filter that drops the words after a prompt's last sentence mark, the
place a suffix trigger sits ("... today? lantern quiver" -> "... today?")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register

TRAILING = re.compile(r"(?<=[.?!:])(\s+[A-Za-z]+){1,4}\s*$")


def drop_trailing_words(prompt: str) -> str:
    """The prompt without up to four bare words after its last sentence mark."""
    return TRAILING.sub("", prompt)


@register("trailing-word-filter")
@dataclass(frozen=True)
class TrailingWordFilter(Derivative):
    @property
    def label(self) -> str:
        return "input filter: words after the last sentence mark are dropped"

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.robustness.serving import FilteredServing

        return Suspect(factory=lambda: FilteredServing(
            ctx.model, ctx.tokenizer, prompt_filter=lambda prompts: [drop_trailing_words(p) for p in prompts]))
