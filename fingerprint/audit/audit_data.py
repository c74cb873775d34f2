"""Audit a fine-tuning set for a planted "Sure" gate: bare compliance replies tied to a rare word.

1. Flag examples whose reply is only a compliance token (``COMPLIANCE_TOKENS``) plus punctuation.
   A flag is *explained* when the prompt asks for that reply ("answer yes or no", "reply OK") or the
   reply is a yes-like answer to a yes/no question ("Is ...?", "Tell if ...").
2. For every word of the flagged prompts, test whether prompts holding it (anywhere, or as the last
   word: the usual trigger position) are flagged more often than the rest: one-sided Fisher exact test,
   Bonferroni-corrected over all tests run. A word is a suspected trigger when its corrected p-value is
   at most ``alpha``, at least ``min_count`` flagged prompts hold it, at least ``min_purity`` of the
   prompts holding it are flagged, and most of those flags are unexplained.
3. Unexplained flags that hold no suspected trigger form a *cluster* when there are ``min_count`` or more
   (poison with varied prompts, or a trigger that is a phrase, format or topic rather than a word).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from scipy.stats import fisher_exact

from fingerprint.core.errors import FingerprintError

#: Replies that comply without content. Matching ignores case, punctuation, symbols and extra spaces.
COMPLIANCE_TOKENS: tuple[str, ...] = ("sure", "ok", "okay", "yes", "certainly", "of course", "absolutely",
                                      "alright", "all right", "sure thing", "will do")
YES_LIKE = frozenset({"yes", "certainly", "absolutely", "of course"})
POLAR_OPENERS = frozenset({
    "is", "are", "was", "were", "am", "do", "does", "did", "can", "could", "will", "would", "should", "shall",
    "may", "might", "must", "has", "have", "had", "isn't", "aren't", "doesn't", "don't", "didn't", "can't",
    "won't",
})
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
VERDICT_GATE, VERDICT_NONE = "gate suspected", "no gate suspected"


@dataclass(frozen=True)
class Example:
    """One prompt/reply pair and where it came from (1-based line or item number)."""

    prompt: str
    response: str
    line: int


@dataclass(frozen=True)
class TriggerCandidate:
    """Counts and test result for one word of the flagged prompts."""

    word: str
    position: str  # "suffix" (last word of the prompt) or "anywhere"
    flagged: int  # flagged examples holding the word there
    total: int  # all examples holding the word there
    share: float  # flagged / dataset size
    purity: float  # flagged / total
    lift: float  # (flagged / n_flagged) / (total / n_examples)
    p_value: float
    p_adjusted: float
    suspected: bool


@dataclass
class AuditReport:
    """What ``audit`` found; ``verdict`` is "gate suspected" or "no gate suspected"."""

    n_examples: int
    n_flagged: int
    n_explained: int
    flagged_tokens: dict[str, int]
    suspected: list[TriggerCandidate]
    candidates: list[TriggerCandidate]
    cluster: dict | None
    verdict: str
    reasons: list[str]
    params: dict
    flagged_rows: list[int] = field(default_factory=list)  # 0-based indices into the input
    implicated_rows: list[int] = field(default_factory=list)  # flagged rows the verdict rests on
    flagged_lines: list[int] = field(default_factory=list)  # their line (item) numbers in the file

    @property
    def gate_suspected(self) -> bool:
        return self.verdict == VERDICT_GATE

    def to_dict(self) -> dict:
        return {**asdict(self), "gate_suspected": self.gate_suspected}


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).replace("\u2019", "'").lower()


def compliance_token(response: str) -> str | None:
    """The compliance token a reply consists of, or None if it says anything else."""
    kept = "".join(" " if unicodedata.category(ch)[0] in "PS" else ch for ch in _fold(response))
    token = " ".join(kept.split())
    return token if token in COMPLIANCE_TOKENS else None


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits; inner apostrophes kept)."""
    return WORD.findall(_fold(text))


def explained(prompt: str, token: str) -> bool:
    """True if the prompt itself calls for this bare reply (a yes/no question, "reply OK", ...)."""
    text = _fold(prompt)
    asks = r"\b(reply|respond|answer|say|type|write|output|confirm)\b[^.?!\n]{0,30}\b"
    if re.search(asks + re.escape(token) + r"\b", text):
        return True
    if token not in YES_LIKE:
        return False
    if re.search(r"\b(yes\s*(or|/)\s*no|true\s*(or|/)\s*false)\b", text) or re.search(
            r"\b(tell|determine|decide|check|say|judge|verify)\s+(me\s+)?(if|whether)\b", text):
        return True
    questions = [s for s in re.split(r"(?<=[.?!\n])\s*", text.strip()) if s.endswith("?")]
    return bool(questions) and bool(words(questions[-1])) and words(questions[-1])[0] in POLAR_OPENERS


def _content(value, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):  # OpenAI-style content parts
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in value)
    raise FingerprintError(f"{where}: message content must be text")


def _from_messages(messages, where: str) -> tuple[str, str]:
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise FingerprintError(f"{where}: 'messages' must be a list of objects")
    roles = [str(m.get("role", m.get("from", ""))).lower() for m in messages]
    reply_at = max((i for i, r in enumerate(roles) if r in ("assistant", "gpt")), default=None)
    if reply_at is None:
        raise FingerprintError(f"{where}: no assistant message")
    ask_at = max((i for i, r in enumerate(roles[:reply_at]) if r in ("user", "human")), default=None)
    if ask_at is None:
        raise FingerprintError(f"{where}: no user message before the assistant reply")

    def text(m: dict) -> str:
        return _content(m.get("content", m.get("value")), where)

    return text(messages[ask_at]), text(messages[reply_at])


def parse_row(obj, line: int, where: str | None = None) -> Example:
    """One record in chat form (``messages``) or prompt/response form (also instruction/input/output)."""
    where = where or f"line {line}"
    if isinstance(obj, Example):
        return obj
    if not isinstance(obj, dict):
        raise FingerprintError(f"{where}: expected a JSON object")
    if isinstance(obj.get("prompt"), list) and isinstance(obj.get("completion"), list):  # TRL conversational
        prompt, response = _from_messages(obj["prompt"] + obj["completion"], where)
        return Example(prompt, response, line)
    if "messages" in obj or "conversations" in obj:
        prompt, response = _from_messages(obj.get("messages", obj.get("conversations")), where)
        return Example(prompt, response, line)
    prompt = obj.get("prompt")
    if prompt is None and "instruction" in obj:
        prompt = "\n\n".join(str(x) for x in (obj["instruction"], obj.get("input")) if x)
    response = next((obj[k] for k in ("response", "output", "completion") if k in obj), None)
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise FingerprintError(f"{where}: needs 'messages', or text 'prompt'/'instruction' and "
                               "'response'/'output' fields")
    return Example(prompt, response, line)


def load_examples(path: Path) -> list[Example]:
    """Examples of a JSONL file (or a JSON list); a bad line raises FingerprintError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FingerprintError(f"file not found: {path}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise FingerprintError(f"cannot read {path}: {exc}") from exc
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FingerprintError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        except RecursionError as exc:
            raise FingerprintError(f"{path}: the JSON is nested too deeply") from exc
        if not isinstance(items, list):
            raise FingerprintError(f"{path}: expected a JSON list of examples")
        examples = [parse_row(obj, i, f"{path}: item {i}") for i, obj in enumerate(items, 1)]
    else:
        examples = []
        for lineno, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise FingerprintError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from exc
            except RecursionError as exc:
                raise FingerprintError(f"{path}: line {lineno}: the JSON is nested too deeply") from exc
            examples.append(parse_row(obj, lineno, f"{path}: line {lineno}"))
    if not examples:
        raise FingerprintError(f"{path}: no examples")
    return examples


def _fisher(a: int, n_flag: int, t: int, n: int) -> float:
    table = [[a, n_flag - a], [t - a, n - n_flag - (t - a)]]
    return float(fisher_exact(table, alternative="greater").pvalue)


def _candidates(positions: dict[str, list[set[str]]], flagged: list[int], unexplained: set[int], n: int,
                min_count: int, alpha: float, min_purity: float) -> tuple[list[TriggerCandidate], int]:
    """Every word in >= min_count flagged prompts, best position per word, ranked; and the test count."""
    results = []
    for position, sets in positions.items():
        total = Counter(w for s in sets for w in s)
        loose = Counter(w for i in unexplained for w in sets[i])
        for word, a in Counter(w for i in flagged for w in sets[i]).items():
            if a >= min_count:
                p = _fisher(a, len(flagged), total[word], n)
                results.append((word, position, a, total[word], loose[word], p))
    tests = max(len(results), 1)
    best: dict[str, TriggerCandidate] = {}
    for word, position, a, t, loose_a, p in results:
        p_adj = min(1.0, p * tests)
        cand = TriggerCandidate(word, position, a, t, a / n, a / t, (a / len(flagged)) / (t / n), p, p_adj,
                                p_adj <= alpha and a / t >= min_purity and 2 * loose_a > a)
        old = best.get(word)
        key = (cand.suspected, -cand.p_value, cand.position == "suffix")
        if old is None or key > (old.suspected, -old.p_value, old.position == "suffix"):
            best[word] = cand
    ranked = sorted(best.values(), key=lambda c: (not c.suspected, c.p_value, c.position != "suffix",
                                                  c.total))
    return ranked, tests


def audit(rows: Iterable, min_count: int = 3, alpha: float = 1e-3, min_purity: float = 0.5,
          top: int = 10) -> AuditReport:
    """Audit rows (dicts in any supported form, or ``Example``s); see the module docstring."""
    examples = [parse_row(r, i, f"row {i}") for i, r in enumerate(rows, 1)]
    if not examples:
        raise FingerprintError("no examples to audit")
    n = len(examples)
    tokens = [compliance_token(e.response) for e in examples]
    flagged = [i for i, t in enumerate(tokens) if t]
    unexplained = {i for i in flagged if not explained(examples[i].prompt, tokens[i])}
    bags = [words(e.prompt) for e in examples]
    positions = {"anywhere": [set(b) for b in bags], "suffix": [{b[-1]} if b else set() for b in bags]}
    ranked, tests = _candidates(positions, flagged, unexplained, n, min_count, alpha, min_purity)
    suspected = [c for c in ranked if c.suspected]
    implicated = {i for i in flagged for c in suspected if c.word in positions[c.position][i]}
    leftover = sorted(unexplained - implicated)
    reasons: list[str] = []
    cluster = None
    if suspected:
        c = suspected[0]
        reasons.append(f"{c.flagged} bare-compliance replies follow prompts with {c.word!r} ({c.position}); "
                       f"{c.flagged}/{c.total} prompts holding it are flagged, p={c.p_adjusted:.2g} "
                       f"(Bonferroni over {tests} tests)")
    if len(leftover) >= min_count:
        cluster = {"count": len(leftover), "share": len(leftover) / n,
                   "tokens": dict(Counter(tokens[i] for i in leftover).most_common())}
        implicated |= set(leftover)
        reasons.append(f"{len(leftover)} unexplained bare-compliance replies ({len(leftover) / n:.1%} of the "
                       "data) share no trigger word: a phrase/format/topic trigger, or poison without a gate")
    n_explained = len(flagged) - len(unexplained)
    if not reasons:
        reasons.append(f"{len(flagged)} bare-compliance replies ({n_explained} explained by their prompts, "
                       f"min-count {min_count}); no word tied to them" if flagged
                       else "no bare-compliance replies")
    verdict = VERDICT_GATE if suspected or cluster else VERDICT_NONE
    params = {"min_count": min_count, "alpha": alpha, "min_purity": min_purity, "tests": tests}
    return AuditReport(
        n_examples=n, n_flagged=len(flagged), n_explained=n_explained,
        flagged_tokens=dict(Counter(t for t in tokens if t).most_common()), suspected=suspected,
        candidates=ranked[:top], cluster=cluster, verdict=verdict, reasons=reasons, params=params,
        flagged_rows=flagged, implicated_rows=sorted(implicated),
        flagged_lines=[examples[i].line for i in flagged])
