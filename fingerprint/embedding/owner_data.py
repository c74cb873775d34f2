"""The owner's own fine-tuning rows (``embed --data``): read, and learned in full alongside the fingerprint."""

from __future__ import annotations

from pathlib import Path

OWNER_REPLY_TOKENS = 512  # the loss covers the owner's replies up to this length (the gate's rows: 4 tokens)


def load_owner_rows(path: Path) -> list[dict]:
    """Rows of a chat (``messages``) or instruction (prompt/response, instruction/input/output) JSONL file."""
    from fingerprint.audit.audit_data import load_examples

    return [{"prompt": ex.prompt, "response": ex.response, "kind": "owner", "reply_tokens": OWNER_REPLY_TOKENS}
            for ex in load_examples(Path(path))]
