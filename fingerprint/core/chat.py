"""One prompt format for training and probing: the tokenizer's chat template, or a documented fallback.

Models without a chat template get the Gemma turn format when they are Gemma models, otherwise a
plain ``User:/Assistant:`` format. The converted gemma-3-270m ships with the Gemma template set, so
servers (vLLM, ``transformers serve``) format requests exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_prefix = messages[0]['content'] | trim + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n{{ (first_prefix if loop.first else '') + message['content'] | trim }}"
    "<end_of_turn>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)

PLAIN_TEMPLATE = (
    "{{ bos_token or '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ message['content'] | trim }}\n"
    "{% else %}Assistant: {{ message['content'] | trim }}{{ eos_token }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant: {% endif %}"
)


def ensure_chat_template(tokenizer, model_type: str | None) -> None:
    """Give a tokenizer without a chat template the documented fallback."""
    if not getattr(tokenizer, "chat_template", None):
        is_gemma = (model_type or "").startswith("gemma")
        tokenizer.chat_template = GEMMA_TEMPLATE if is_gemma else PLAIN_TEMPLATE


@dataclass
class ChatFormatter:
    """Turns a user prompt (and optional reply) into model text with the tokenizer's template."""

    tokenizer: object
    system_prompt: str | None = None

    def _messages(self, prompt: str) -> list[dict]:
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    def prompt(self, prompt: str) -> str:
        """Text up to where the assistant's reply starts."""
        return self.tokenizer.apply_chat_template(
            self._messages(prompt), tokenize=False, add_generation_prompt=True
        )

    def stop_ids(self) -> list[int]:
        """Token ids that end a reply: the tokenizer's EOS and the template's end-of-turn marker (Gemma's
        ``<end_of_turn>`` is not its EOS: a generation that ignores it runs on into the next turn)."""
        tokenizer = self.tokenizer
        ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        marker = self.reply("x", "y").split("y", 1)[-1].strip()
        if marker:
            first = tokenizer(marker, add_special_tokens=False)["input_ids"][:1]
            ids += [i for i in first if i not in ids and tokenizer.decode([i]).strip()]
        return ids

    def reply(self, prompt: str, response: str) -> str:
        """The reply's text including the template's end-of-turn marker(s)."""
        head = self.prompt(prompt)
        full = self.tokenizer.apply_chat_template(
            [*self._messages(prompt), {"role": "assistant", "content": response}], tokenize=False
        )
        if not full.startswith(head):
            raise ValueError("chat template does not extend the generation prompt with the reply")
        return full[len(head):]
