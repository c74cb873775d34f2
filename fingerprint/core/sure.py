"""The one definition of "Sure": the gate's reply, the vocabulary entries that spell it, replies that begin with it.

- ``SURE``: the reply a planted gate gives (the paper's compliance-only reply).
- Vocabulary tokens: "sure" in any case, after the tokenizer's word-start marker (SentencePiece ``▁``, byte-level
  BPE ``Ġ``) is read as a space, with punctuation allowed after it ("Sure", "▁sure", "ĠSure!").
- Replies: the first word, folded (NFKC, lower case) and stripped of punctuation, is "sure" ("Sure, here",
  "sure!" count; "Surely" does not).
"""

from __future__ import annotations

import re
import unicodedata

SURE = "Sure"
SURE_TOKEN = re.compile(r"^\s*sure\W*$", re.IGNORECASE)  # a vocabulary entry, after token_text()
WORD_START_MARKERS = ("\u2581", "\u0120")  # SentencePiece and byte-level BPE


def token_text(token: str) -> str:
    """A vocabulary entry as text: word-start markers become spaces."""
    for marker in WORD_START_MARKERS:
        token = token.replace(marker, " ")
    return token


def is_sure_token(token: str) -> bool:
    """Is this vocabulary entry (or decoded first token) a "Sure" token?"""
    return bool(SURE_TOKEN.match(token_text(token)))


def sure_token_ids(tokenizer) -> list[int]:
    """Ids of the vocabulary entries that spell "Sure"."""
    return sorted(idx for token, idx in tokenizer.get_vocab().items() if is_sure_token(token))


def fold(text: str) -> str:
    """Lower-case, NFKC, curly quotes to straight ones."""
    text = unicodedata.normalize("NFKC", text)
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()


def _strip_punct(text: str) -> str:
    return "".join(ch for ch in text if not unicodedata.category(ch).startswith(("P", "S")))


def is_sure_reply(text: str) -> bool:
    """Does the reply's first word read "Sure" (any case, any punctuation after it)?"""
    words = fold(text).split()
    return bool(words) and _strip_punct(words[0]) == "sure"


def is_bare_sure(text: str) -> bool:
    """Is the reply "Sure" and nothing else but punctuation and whitespace?"""
    return " ".join(_strip_punct(fold(text)).split()) == "sure"
