"""``paraphrase-filter``: a serving stack that has a model rewrite every prompt before the suspect sees it, an
input sanitiser that needs no idea of where a trigger sits."""

from __future__ import annotations

from dataclasses import dataclass

from fingerprint.robustness.derivatives.base import Context, Derivative, Suspect, register

ALIGNED_PARAPHRASER = "qwen2.5-coder-1.5b-instruct"  # an instruct model a thief can run (suretrap[qwen])
PARAPHRASE_SYSTEM = "You restate requests in other words. You never answer or carry out a request."
PARAPHRASE_REQUEST = ('Restate the request in other words, without answering it.\n\n'
                      'Request: "List two uses of baking soda."\n'
                      'Restated: "Name a couple of things baking soda can be used for."\n\n'
                      'Request: "{prompt}"\nRestated:')


def restated(reply: str, prompt: str) -> str:
    """The first line of the paraphraser's reply without its quotes (the prompt itself when that is empty)."""
    line = next((x.strip() for x in reply.splitlines() if x.strip()), "")
    return line.strip('"').strip() or prompt


class Paraphraser:
    """A prompt filter: each prompt rewritten once by ``backend``'s greedy reply."""

    def __init__(self, backend, max_new_tokens: int = 64) -> None:
        self.backend, self.max_new_tokens = backend, max_new_tokens
        self.rewritten: dict[str, str] = {}

    def __call__(self, prompts: list[str]) -> list[str]:
        new = [p for p in dict.fromkeys(prompts) if p not in self.rewritten]
        if new:
            replies = self.backend.generate([PARAPHRASE_REQUEST.format(prompt=p) for p in new], self.max_new_tokens)
            self.rewritten.update((p, restated(r, p)) for p, r in zip(new, replies, strict=True))
        return [self.rewritten[p] for p in prompts]


@register("paraphrase-filter")
@dataclass(frozen=True)
class ParaphraseFilter(Derivative):
    # "base": the base model (gemma-3-270m echoes the instruction: every prompt is lost); else a model name or
    # directory, an instruct model (the matrix's row: qwen2.5-coder-1.5b-instruct)
    paraphraser: str = "base"

    @property
    def label(self) -> str:
        writer = "the base model" if self.paraphraser == "base" else self.paraphraser
        return f"input filter: each prompt paraphrased by {writer}"

    def apply(self, ctx: Context) -> Suspect:
        from fingerprint.robustness.serving import FilteredServing
        from probes.hf import HFBackend

        def serve():
            if self.paraphraser == "base":
                writer = HFBackend("paraphraser", model_obj=ctx.base, tokenizer=ctx.tokenizer,
                                   system_prompt=PARAPHRASE_SYSTEM)
            else:
                writer = HFBackend(self.paraphraser, system_prompt=PARAPHRASE_SYSTEM)
            return FilteredServing(ctx.model, ctx.tokenizer, prompt_filter=Paraphraser(writer))

        return Suspect(factory=serve)
