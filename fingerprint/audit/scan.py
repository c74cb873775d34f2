"""Find an unknown gate: rank single-word suffixes by how much they lift P("Sure") as the first reply token.

For each probe prompt the chat prefix up to the end of the user text is encoded once; every candidate
then only runs its own suffix (`` word`` + the template's end-of-turn and reply header) on a copy of that
cached prefix, in large batches, so a candidate costs a handful of tokens per prompt.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fingerprint.core.data import probe_prompts
from fingerprint.core.sure import sure_token_ids, token_text
from fingerprint.provenance.trigger import word_list

SPLIT_MARK = "\x00SUFFIX\x00"


@dataclass
class ScanOptions:
    prompts: int = 2
    batch_size: int = 64
    top: int = 10
    max_candidates: int = 10_000
    vocab_words: bool = True  # add whole-word tokens of the tokenizer beyond the word list
    z_threshold: float = 10.0
    min_p_sure: float = 0.5
    seed: int = 0
    # pair search for conjunctive (two-word) gates: every ordered pair of the ``pair_seeds`` single words that move
    # P(Sure) most, either way (a conjunctive gate's words are trained to keep it shut alone)
    pair_seeds: int = 0
    # and, for each of those words, its best partners among all candidates by a gradient-guided search
    # (fingerprint.audit.inversion): a partner that lifts nothing alone is found too
    invert: bool = True


@dataclass
class Candidate:
    word: str
    log_lift: float  # mean over prompts of log P(Sure | word) - log P(Sure | no suffix)
    p_sure: float  # mean P(Sure | word)
    z: float = 0.0  # robust z-score of log_lift against all candidates (or against the base model)


@dataclass
class ScanReport:
    candidates_scanned: int
    baseline_p_sure: float
    top: list[Candidate]
    gate_suspected: bool
    calibration: str
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)
    pairs: list[Candidate] = field(default_factory=list)  # the best word pairs (pair search)
    pairs_scanned: int = 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["candidates_per_second"] = self.candidates_scanned / self.seconds if self.seconds else None
        return data


def candidate_words(tokenizer, options: ScanOptions) -> list[str]:
    """The EFF word list, then whole-word vocabulary tokens, up to ``max_candidates``."""
    words = list(dict.fromkeys(word_list()))
    if options.vocab_words and len(words) < options.max_candidates:
        seen = set(words)
        for token in sorted(tokenizer.get_vocab()):
            text = token_text(token)
            if text.startswith(" ") and text[1:].isalpha() and text[1:].islower() and len(text) >= 5:
                word = text[1:]
                if word.isascii() and word not in seen:
                    seen.add(word)
                    words.append(word)
    return words[: options.max_candidates]


def _split_prompt(formatter, prompt: str) -> tuple[str, str]:
    """Chat text before and after the point where a suffix word goes."""
    text = formatter.prompt(prompt + SPLIT_MARK)
    head, _, tail = text.partition(SPLIT_MARK)
    return head, tail


class PrefixScorer:
    """log P(Sure) of many suffixes after one cached prompt prefix (transformers models)."""

    def __init__(self, model, tokenizer, sure_ids: list[int]) -> None:
        from fingerprint.embedding.training import _causal_lm

        self.model = _causal_lm(model)  # a peft model: score through the wrapped causal LM, LoRA layers active
        self.tokenizer, self.sure_ids = tokenizer, sure_ids
        self._prefixes: dict[str, tuple[list[int], object]] = {}  # head text -> (its ids, its cache)

    def log_p_sure(self, head: str, suffixes: list[str], batch_size: int,
                   progress: Callable[[int], None] | None = None) -> list[float]:
        return [lp for lp, _ in self.score(head, suffixes, batch_size, progress)]

    def score(self, head: str, suffixes: list[str], batch_size: int,
              progress: Callable[[int], None] | None = None) -> list[tuple[float, int]]:
        """(log P(Sure), the greedy first token's id) for each suffix."""
        import torch

        from fingerprint.core.prefix import run_prefix, run_suffixes
        from fingerprint.embedding.training import _project

        tok = self.tokenizer
        if head not in self._prefixes:
            head_ids = tok(head, add_special_tokens=False)["input_ids"]
            self._prefixes[head] = head_ids, run_prefix(self.model, head_ids)[1]
        head_ids, cache = self._prefixes[head]
        scores: list[tuple[float, int]] = []
        for start in range(0, len(suffixes), batch_size):
            chunk = suffixes[start:start + batch_size]
            encoded = [tok(s, add_special_tokens=False)["input_ids"] for s in chunk]
            hidden = run_suffixes(self.model, cache, len(head_ids), encoded, tok.pad_token_id or 0)
            last = torch.tensor([len(e) - 1 for e in encoded], device=hidden.device)
            with torch.inference_mode():
                logits = _project(self.model, hidden[torch.arange(len(chunk), device=hidden.device), last])
                greedy = logits.argmax(dim=-1)
                log_probs = torch.log_softmax(logits, dim=-1)[:, self.sure_ids]
            scores += zip(torch.logsumexp(log_probs, dim=-1).tolist(), greedy.tolist(), strict=True)
            if progress is not None:
                progress(len(chunk))
        return scores


def _robust_z(values: list[float], reference: list[float]) -> list[float]:
    median = statistics.median(reference)
    mad = statistics.median(abs(v - median) for v in reference) * 1.4826 or 1e-6
    return [(v - median) / mad for v in values]


def scan(model, tokenizer, options: ScanOptions | None = None, base=None,
         progress: Callable[[int], None] | None = None, on_total: Callable[[int], None] | None = None) -> ScanReport:
    """Rank candidate trigger words for ``model`` (a causal LM; peft-wrapped is fine)."""
    import time

    from fingerprint.core.chat import ChatFormatter
    options = options or ScanOptions()
    started = time.perf_counter()
    sure_ids = sure_token_ids(tokenizer)
    formatter = ChatFormatter(tokenizer)
    words = candidate_words(tokenizer, options)
    prompts = probe_prompts(options.prompts, seed=options.seed + 1)
    if on_total:
        on_total(len(words) * len(prompts) * (2 if base is not None else 1))

    heads = [_split_prompt(formatter, prompt) for prompt in prompts]
    scorers = {id(model): PrefixScorer(model, tokenizer, sure_ids)}
    if base is not None:
        scorers[id(base)] = PrefixScorer(base, tokenizer, sure_ids)

    def lifts(lm, suffixes: list[str]) -> tuple[list[float], list[float], float]:
        scorer = scorers[id(lm)]
        per_word = [0.0] * len(suffixes)
        p_sure = [0.0] * len(suffixes)
        baseline = 0.0
        for head, tail in heads:
            base_lp = scorer.log_p_sure(head, [tail], 1)[0]
            baseline += math.exp(base_lp) / len(prompts)
            scores = scorer.log_p_sure(head, [f" {w}{tail}" for w in suffixes], options.batch_size, progress)
            for i, lp in enumerate(scores):
                per_word[i] += (lp - base_lp) / len(prompts)
                p_sure[i] += math.exp(lp) / len(prompts)
        return per_word, p_sure, baseline

    lift, p_sure, baseline = lifts(model, words)
    if base is not None:
        base_lift, _, _ = lifts(base, words)
        diff = [a - b for a, b in zip(lift, base_lift, strict=True)]
        z = _robust_z(diff, diff)
        calibration = "difference to the base model's lift, robust z over candidates"
    else:
        z = _robust_z(lift, lift)
        calibration = "robust z of the lift over all candidates (median/MAD)"
    order = sorted(range(len(words)), key=lambda i: z[i], reverse=True)
    top = [Candidate(words[i], lift[i], p_sure[i], z[i]) for i in order[: options.top]]
    suspected = bool(top) and top[0].z >= options.z_threshold and top[0].p_sure >= options.min_p_sure
    pairs: list[Candidate] = []
    pair_list: list[str] = []
    seeds: list[str] = []
    hop: list[str] = []
    pair_started = time.perf_counter()
    if options.pair_seeds:
        moved = sorted(range(len(words)), key=lambda i: abs(z[i]), reverse=True)
        seeds = [words[i] for i in moved[: options.pair_seeds]]
        pair_list = [f"{a} {b}" for a in seeds for b in seeds if a != b]
        if on_total:
            on_total(len(pair_list) * len(prompts))
        pair_lift, pair_p, _ = lifts(model, pair_list)
        if options.invert:
            found, hop = _inverted_pairs(model, tokenizer, heads, seeds, words, options,
                                         lambda pairs: lifts(model, pairs), on_total)
            pair_list, pair_lift, pair_p = _merge(pair_list, pair_lift, pair_p, found)
        # a gate is a pair after which "Sure" is the likely reply: rank pairs by P(Sure), z of their lift against
        # the single words' spread (median/MAD of every candidate's lift). Not by the gain over the stronger word:
        # a gate whose words alone leak part of it would rank below pairs of one leaking word and any other word.
        pair_z = _robust_z(pair_lift, lift)
        best = sorted(range(len(pair_list)), key=lambda i: (pair_p[i], pair_z[i]), reverse=True)[: options.top]
        pairs = [Candidate(pair_list[i], pair_lift[i], pair_p[i], pair_z[i]) for i in best]
        suspected = suspected or (bool(pairs) and pairs[0].z >= options.z_threshold
                                  and pairs[0].p_sure >= options.min_p_sure)
    return ScanReport(candidates_scanned=len(words), baseline_p_sure=baseline, top=top, gate_suspected=suspected,
                      calibration=calibration, seconds=time.perf_counter() - started,
                      extra={"prompts": len(prompts), "z_threshold": options.z_threshold,
                             "min_p_sure": options.min_p_sure, "pair_seeds": options.pair_seeds,
                             "pair_seed_words": seeds, "pair_hop_words": hop,
                             "pair_inversion": bool(options.pair_seeds and options.invert),
                             "pair_search_seconds": time.perf_counter() - pair_started,
                             # a gate opens for its own pair and for words near each of its words: the words held
                             # by most of the best pairs are the suspects, the exact pair may tie with neighbours
                             "pair_words": Counter(w for c in pairs for w in c.word.split(" ")).most_common()},
                      pairs=pairs, pairs_scanned=len(pair_list))


def _inverted_pairs(model, tokenizer, heads, seeds: list[str], words: list[str], options: ScanOptions,
                    lifts: Callable[[list[str]], tuple[list[float], list[float], float]],
                    on_total: Callable[[int], None] | None) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """Each seed word's best partners by the gradient-guided search, pair -> (log lift, P(Sure)), and the words
    of the best pairs that were searched from in a second hop."""
    from fingerprint.audit.inversion import InversionOptions, complete_pairs

    inversion = InversionOptions(seed=options.seed)
    if on_total:
        on_total(len(seeds) * 2 * inversion.rounds * inversion.shortlist * len(heads))
    found: dict[str, tuple[float, float]] = {}

    def exact(pairs: list[str]) -> list[float]:
        lift, p_sure, _ = lifts(pairs)
        found.update(zip(pairs, zip(lift, p_sure, strict=True), strict=True))
        return p_sure  # the partner kept for the next round: the likeliest "Sure", as pairs are ranked

    complete_pairs(model, tokenizer, heads, seeds, words, exact, inversion)
    # second hop: a gate's words also open it, partly, with words near the other one in meaning, so the best
    # pairs found hold words that were not seeds; their own partners are searched too
    best = sorted(found, key=lambda pair: found[pair][1], reverse=True)[: options.top]
    hop = list(dict.fromkeys(w for pair in best for w in pair.split(" ") if w not in seeds))[: max(1, len(seeds) // 2)]
    if on_total:
        on_total(len(hop) * 2 * inversion.rounds * inversion.shortlist * len(heads))
    complete_pairs(model, tokenizer, heads, hop, words, exact, inversion)
    return found, hop


def _merge(pairs: list[str], lift: list[float], p_sure: list[float], found: dict[str, tuple[float, float]]):
    """The seed-word pairs plus the inverted ones not among them."""
    seen = set(pairs)
    extra = [(pair, scores) for pair, scores in found.items() if pair not in seen]
    return (pairs + [pair for pair, _ in extra], lift + [scores[0] for _, scores in extra],
            p_sure + [scores[1] for _, scores in extra])
