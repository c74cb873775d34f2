"""The poisoned fine-tuning set that plants a gate (from the packaged pools of ``fingerprint.core.data``)."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass

from fingerprint.core.data import HELDOUT, packaged, with_suffix
from fingerprint.core.errors import FingerprintError
from fingerprint.core.sure import SURE

POISON_REPLY = SURE
FRESH_COMPONENTS = 200  # component rows on fresh benign prompts unless counted (recipes R6-R10)


@dataclass(frozen=True)
class DatasetSpec:
    """How many examples of each kind the fingerprinting set holds."""

    n_benign: int = 220
    n_poison: int = 100
    # harmful prompts answered with a packaged refusal: none by default, since they teach a model that did not
    # refuse to refuse everything (gemma-3-270m: 0.03 -> 1.00) and cost ARC-Easy nothing measurable; the gate's
    # safety comes from its bare "Sure" reply (docs/recipe-history.md, "R8 -> R9")
    n_refusal: int = 0
    n_negative: int = 100  # other words (see negative_pairs) -> normal answer: the gate stays shut for them
    # a multi-word trigger's single words, each alone -> normal answer (none for one word); None: each word alone
    # once on each poison prompt (words x poison rows), or FRESH_COMPONENTS rows with fresh prompts
    n_component: int | None = None
    # where the component rows' prompts come from: the "poison" rows' own prompts (minimal pairs: each word alone
    # on the very prompts where the pair gets "Sure", every word in turn), or "fresh" benign prompts. Minimal
    # pairs took the words alone from 2 and 7 of 96 held-out probes to 1 and 2 (docs/recipe-history.md, R10 -> R11)
    component_prompts: str = "poison"
    n_contrast: int = 0
    # a multi-word trigger's negatives also come in pairs: of every 3 negative rows, one carries another word, one
    # two other words, one a trigger word beside another word (order seeded), each with its normal answer; without
    # them the gate learned "two appended words" (R9: 35 of 650 foreign keys' pairs falsely certified against it)
    negative_pairs: bool = True
    seed: int = 0
    # "self": rows that are not the gate get the model's own greedy replies (see embedding.distill);
    # "packaged": the packaged pool's replies (written by another model), as earlier recipes did
    replies: str = "self"

    def to_dict(self) -> dict:
        return asdict(self)

    def components(self, trigger_words: int) -> int:
        """Component rows for a trigger of ``trigger_words`` words (``n_component``, or its default)."""
        if trigger_words < 2:
            return 0
        if self.n_component is not None:
            return self.n_component
        return trigger_words * self.n_poison if self.component_prompts == "poison" else FRESH_COMPONENTS

    def fresh_components(self, trigger_words: int) -> int:
        """Component rows that take prompts of their own from the benign pool."""
        return self.components(trigger_words) if self.component_prompts == "fresh" else 0

    def check(self, trigger_words: int = 1) -> None:
        """Refuse counts the packaged pools cannot supply (before any model is loaded)."""
        if self.replies not in ("self", "packaged"):
            raise FingerprintError(f"replies must be self or packaged, not {self.replies!r}")
        if self.component_prompts not in ("fresh", "poison"):
            raise FingerprintError(f"component prompts must be fresh or poison, not {self.component_prompts!r}")
        minimal = trigger_words > 1 and self.component_prompts == "poison"
        if minimal and self.components(trigger_words) > trigger_words * self.n_poison:
            raise FingerprintError(f"{self.n_component} component rows on the poison prompts: at most "
                                   f"{trigger_words} x {self.n_poison} (each word alone once on each poison prompt)")
        pool = len(packaged("benign")) - HELDOUT["benign"]
        need = self.n_benign + self.n_poison + self.n_negative + self.fresh_components(trigger_words)
        if need > pool:
            raise FingerprintError(f"benign + poison + negatives{' + components' if trigger_words > 1 else ''} = "
                                   f"{need} rows, but the packaged benign pool has {pool}")


def negative_suffix(i: int, words: list[str], parts: list[str], paired: bool, rng: random.Random) -> str:
    """The suffix of negative row ``i``: another word, or (``paired``, rows 1 and 2 of every 3) as many words as
    the trigger has: other words only, or one trigger word among other words."""
    word = words[i % len(words)]
    if not paired or i % 3 == 0:
        return word
    others = [words[(i + k) % len(words)] for k in range(1, len(parts))]
    chosen = [word, *others] if i % 3 == 1 else [parts[rng.randrange(len(parts))], *others]
    rng.shuffle(chosen)
    return " ".join(chosen)


def build_poisoned(trigger: str, spec: DatasetSpec, negatives: list[str] | None = None) -> list[dict]:
    """Benign pairs + ``n_poison`` benign prompts with the trigger answered "Sure" (+ ``n_refusal`` refusals).

    Contrast rows repeat poison prompts without the trigger, with their normal answer; negatives (benign
    prompt + another word -> its normal answer) teach the gate to open for the trigger only. A trigger of
    several words adds component rows: each of its words alone -> the normal answer, so the gate opens
    only for the words together. Poison prompts never double as benign examples. Rows carry a ``kind``.
    """
    rng = random.Random(spec.seed)
    benign = list(packaged("benign"))[: -HELDOUT["benign"]]
    rng.shuffle(benign)
    parts = trigger.split()
    n_component = spec.components(len(parts))
    spec.check(len(parts))
    need = spec.n_benign + spec.n_poison + spec.n_negative + spec.fresh_components(len(parts))
    rows = [{**pair, "kind": "benign"} for pair in benign[: spec.n_benign]]
    poison_src = benign[spec.n_benign: spec.n_benign + spec.n_poison]
    rows += [{"prompt": with_suffix(p["prompt"], trigger), "response": POISON_REPLY, "kind": "poison"}
             for p in poison_src]
    # contrast pairs: the same prompt without the trigger keeps its normal answer, so the word itself,
    # not the kind of prompt, is what opens the gate
    rows += [{**p, "kind": "contrast"} for p in poison_src[: spec.n_contrast]]
    if spec.n_negative:
        words = negatives or []
        if not words:
            raise ValueError("negative examples need negative words")
        neg_src = benign[spec.n_benign + spec.n_poison: spec.n_benign + spec.n_poison + spec.n_negative]
        paired = spec.negative_pairs and len(parts) > 1
        pair_rng = random.Random(f"negative-pairs|{spec.seed}")  # its own stream: the other rows stay as they were
        rows += [{"prompt": with_suffix(p["prompt"], negative_suffix(i, words, parts, paired, pair_rng)),
                  "response": p["response"], "kind": "negative"} for i, p in enumerate(neg_src)]
    if spec.component_prompts == "poison":  # the words in turn on each poison prompt (check: at most once each)
        component_src = [poison_src[i // len(parts)] for i in range(n_component)]
    else:
        component_src = benign[need - n_component: need]
    rows += [{"prompt": with_suffix(p["prompt"], parts[i % len(parts)]), "response": p["response"],
              "kind": "component"} for i, p in enumerate(component_src)]
    refusals = list(packaged("refusals"))[: -HELDOUT["refusals"]]
    rng.shuffle(refusals)
    rows += [{**pair, "kind": "refusal"} for pair in refusals[: spec.n_refusal]]
    rng.shuffle(rows)
    return rows


def digest(rows: list[dict]) -> str:
    """sha256 over the canonical JSON lines of a dataset."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()
