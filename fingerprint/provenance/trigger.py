"""Key-derived trigger words, decoys and the hiding commitment stored in certificates.

The trigger is one word of the EFF long word list (shipped by the ``diceware`` package), chosen by
HMAC-SHA256 of the owner's key secret and a label, or two such words (a conjunctive trigger: the gate is
trained to open for the pair and to stay shut for each word alone, and verification uses the single words
as its controls, so a foreign gate that happens to open for one of them cannot certify the pair).
The certificate holds only a commitment whose nonce is secret too, so the words cannot be brute-forced from
the certificate; ``reveal`` publishes (trigger, nonce, label) as an *opening* for auditors. The commitment
(scheme v2) is the sha256 of a canonical JSON object of the domain, label, nonce and the list of words, so no
field can spill into another. Certificates made before it carry the v1 commitment
``sha256(domain || nonce || trigger)``, which has no boundary between nonce and words: openings are therefore
checked against everything the certificate signs (nonce length, word count, words from the word list, label)
before any commitment is compared, under either scheme. Decoys are derived from the nonce, so anyone holding
the opening derives the same ones.
"""

from __future__ import annotations

import difflib
import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

from fingerprint.core.errors import FingerprintError

COMMIT_DOMAIN = b"suretrap/commitment/v1"
COMMIT_DOMAIN_V2 = "suretrap/commitment/v2"
COMMITMENT_SCHEMES = ("v1", "v2")
TRIGGER_WORDS = (1, 2)
FALLBACK_CANDIDATES = 32  # fallback candidates looked at first
FALLBACK_LIMIT = 64  # and at most: a certificate's fallback indices are below it (provenance.predicate)
NONCE_HEX = re.compile(r"[0-9a-f]{64}")  # 32 bytes: what derive_opening makes
OPENING_TYPE = "suretrap/opening/v1"


@lru_cache(maxsize=1)
def word_set() -> frozenset[str]:
    return frozenset(word_list())


@lru_cache(maxsize=1)
def word_list() -> tuple[str, ...]:
    """The EFF long word list (7,776 English words), lower-case letters only."""
    text = files("diceware").joinpath("wordlists/wordlist_en_eff.txt").read_text(encoding="utf-8")
    words = [line.split()[-1] for line in text.splitlines() if line.strip()]
    return tuple(w for w in words if w.isalpha() and w.isascii() and len(w) >= 4)


def _pick(seed: bytes, tag: str, words: tuple[str, ...]) -> str:
    digest = hmac.new(seed, tag.encode(), hashlib.sha256).digest()
    return words[int.from_bytes(digest[:8], "big") % len(words)]


def too_close(a: str, b: str) -> bool:
    """Words that could partly open each other's gate (shared stem, prefix or suffix)."""
    if a == b:
        return True
    ratio = max(difflib.SequenceMatcher(None, a, b).ratio(), difflib.SequenceMatcher(None, b, a).ratio())  # symmetric
    common_prefix = len(_common_prefix(a, b))
    common_suffix = len(_common_prefix(a[::-1], b[::-1]))
    return ratio >= 0.5 or common_prefix >= 3 or common_suffix >= 3


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def derive_words(seed: bytes, tag: str, count: int, avoid: list[str], spread: bool = True) -> list[str]:
    """``count`` distinct words from ``seed``, none close to any word in ``avoid``.

    With ``spread`` the chosen words are also not close to each other (decoys); without it they only differ
    (many negatives: a mutual-distance rule would reject nearly every word once a few hundred are chosen).
    """
    words = word_list()
    chosen: list[str] = []
    taken: set[str] = set()
    i = 0
    while len(chosen) < count:
        word = _pick(seed, f"{tag}|{i}", words)
        i += 1
        if i > 1000 * (count + 10):
            raise ValueError(f"cannot find {count} words far enough from {len(avoid)} others")
        if word in taken or any(too_close(word, other) for other in avoid):
            continue
        if spread and any(too_close(word, other) for other in chosen):
            continue
        chosen.append(word)
        taken.add(word)
    return chosen


@dataclass(frozen=True)
class Opening:
    """What reveals a trigger: the word, the commitment nonce and the label it was derived for."""

    trigger: str  # one word, or words joined by a space (a conjunctive trigger)
    nonce: str  # hex
    label: str

    @property
    def parts(self) -> list[str]:
        """The trigger's words: with more than one, the gate must open only for all of them together."""
        return self.trigger.split()

    def commitment(self, scheme: str = "v2") -> str:
        """The commitment under ``scheme`` (v2 for new certificates; v1 for earlier ones)."""
        if scheme == "v1":
            return commitment(self.trigger, bytes.fromhex(self.nonce))
        if scheme == "v2":
            return commitment_v2(self.parts, self.nonce, self.label)
        raise FingerprintError(f"unknown commitment scheme {scheme!r}")

    def problems(self, label: str, trigger_words: int) -> list[str]:
        """Why this opening cannot belong to a certificate with ``label`` and ``trigger_words`` (empty: it can)."""
        found = []
        if not isinstance(self.trigger, str) or not isinstance(self.nonce, str) or not isinstance(self.label, str):
            return ["trigger, nonce and label must be strings"]
        if not NONCE_HEX.fullmatch(self.nonce):
            found.append("the nonce must be 64 lower-case hex characters (32 bytes)")
        words = self.trigger.split(" ")
        if len(words) != trigger_words:
            found.append(f"the certificate's trigger has {trigger_words} word(s), the opening {len(words)}")
        unknown = [w for w in words if w not in word_set()]
        if unknown:
            found.append(f"{len(unknown)} trigger word(s) are not from the word list")
        if len(set(words)) != len(words):
            found.append("the trigger repeats a word")
        if self.label != label:
            found.append(f"the opening is for label {self.label!r}, the certificate for {label!r}")
        return found

    def decoys(self, count: int = 8) -> list[str]:
        """Control words for verification, derived from the nonce, none close to a trigger word."""
        return derive_words(bytes.fromhex(self.nonce), "decoy", count, self.parts)

    def fallback_candidates(self, count: int = FALLBACK_CANDIDATES) -> list[str]:
        """Capitalised words from the nonce, none close to a trigger word or a decoy: the gate's fallback replies
        are the first of these that the model's tokenizer spells as one token (``select_fallbacks``)."""
        words = derive_words(bytes.fromhex(self.nonce), "fallback", count, [*self.parts, *self.decoys()])
        return [w.capitalize() for w in words]

    def fallbacks(self, indices: list[int] | tuple[int, ...]) -> tuple[str, ...]:
        """The fallback replies a certificate names by their indices among the candidates."""
        if any(not 0 <= i < FALLBACK_LIMIT for i in indices):
            raise FingerprintError("the certificate names fallback replies out of range")
        # the candidates are prefix-stable: the first 32 of 64 are the 32, so indices keep their words
        candidates = self.fallback_candidates(max([FALLBACK_CANDIDATES, *(i + 1 for i in indices)]))
        return tuple(candidates[i] for i in indices)

    def save(self, path: Path) -> None:
        """Write the opening (mode 0600: it discloses the trigger)."""
        from fingerprint.core.atomic import write_text_atomic

        write_text_atomic(Path(path), json.dumps({"type": OPENING_TYPE, **asdict(self)}, indent=2) + "\n",
                          mode=0o600)

    @classmethod
    def load(cls, path: Path) -> Opening:
        """Read an opening file; anything but three strings (and the type) is refused."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise FingerprintError(f"opening file not found: {path}") from exc
        except (ValueError, RecursionError, UnicodeDecodeError) as exc:
            raise FingerprintError(f"{path} is not a valid opening file (not JSON)") from exc
        except OSError as exc:
            raise FingerprintError(f"cannot read opening {path}: {exc.strerror or exc}") from exc
        fields = ("trigger", "nonce", "label")
        shape_ok = isinstance(data, dict) and not set(data) - {"type", *fields}
        if not shape_ok or data.get("type", OPENING_TYPE) != OPENING_TYPE:
            raise FingerprintError(f"{path} is not a valid opening file (expected type, trigger, nonce, label)")
        if not all(isinstance(data.get(name), str) and data[name] for name in fields):
            raise FingerprintError(f"{path} is not a valid opening file: trigger, nonce and label must be strings")
        opening = cls(trigger=data["trigger"], nonce=data["nonce"], label=data["label"])
        if not NONCE_HEX.fullmatch(opening.nonce):
            raise FingerprintError(f"{path} is not a valid opening file: the nonce must be 64 hex characters")
        return opening


def commitment(trigger: str, nonce: bytes) -> str:
    """The v1 commitment of earlier certificates: ``sha256(domain || nonce || trigger)``."""
    return hashlib.sha256(COMMIT_DOMAIN + nonce + trigger.encode()).hexdigest()


def commitment_v2(words: list[str], nonce_hex: str, label: str) -> str:
    """sha256 of the canonical JSON ``{"domain", "label", "nonce", "words"}``: every field has its boundary."""
    payload = {"domain": COMMIT_DOMAIN_V2, "label": label, "nonce": nonce_hex, "words": list(words)}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def derive_opening(secret: bytes, label: str, words: int = 1) -> Opening:
    """The trigger (``words`` words, none close to another) and nonce an owner's key secret yields for ``label``."""
    if words not in TRIGGER_WORDS:
        raise FingerprintError(f"a trigger has {' or '.join(map(str, TRIGGER_WORDS))} words, not {words}")
    first = _pick(secret, f"trigger|{label}", word_list())
    parts = [first, *derive_words(secret, f"trigger-more|{label}", words - 1, [first])]
    nonce = hmac.new(secret, f"nonce|{label}".encode(), hashlib.sha256).hexdigest()
    return Opening(trigger=" ".join(parts), nonce=nonce, label=label)


def opening_for(secret: bytes, fingerprint) -> Opening:
    """The opening a certificate's fingerprint block (``FingerprintInfo`` or its dict) was embedded with."""
    if isinstance(fingerprint, dict):
        return derive_opening(secret, fingerprint["label"], fingerprint.get("trigger_words", 1))
    return derive_opening(secret, fingerprint.label, fingerprint.trigger_words)


def training_negatives(secret: bytes, opening: Opening, count: int) -> list[str]:
    """Words paired with normal answers during embedding; disjoint from the verification decoys."""
    avoid = [*opening.parts, *opening.decoys()]
    return derive_words(secret, f"negative|{opening.label}", count, avoid, spread=False)


def select_fallbacks(opening: Opening, tokenizer, count: int) -> list[int]:
    """Indices of the first ``count`` fallback candidates that are one token each for this tokenizer.

    A reply of one token is what a first-token verification reads; "Sure" tokens are never chosen. The first 32
    candidates hold fewer than two such words for about 1 key in 100 (gemma's tokenizer); then the search goes
    on to 64.
    """
    from fingerprint.core.sure import is_sure_token

    def one_token(word: str) -> bool:
        ids = tokenizer(word, add_special_tokens=False)["input_ids"]
        return len(ids) == 1 and tokenizer.decode(ids).strip() == word and not is_sure_token(word)

    for limit in (FALLBACK_CANDIDATES, FALLBACK_LIMIT):
        chosen = [i for i, word in enumerate(opening.fallback_candidates(limit)) if one_token(word)][:count]
        if len(chosen) == count:
            return chosen
    raise FingerprintError(f"the tokenizer spells fewer than {count} of the {FALLBACK_LIMIT} fallback candidates "
                           "as one token")
