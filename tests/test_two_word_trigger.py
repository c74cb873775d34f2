"""Two-word (conjunctive) triggers: derivation, training rows, the intersection-union verdict, and on a tiny
real model: a gate for the pair certifies, a gate that also opens for one word alone does not."""

from __future__ import annotations

import math

import pytest
import torch
from servers import PROBES, _certificate, _sharpen, _train_gate

from fingerprint.core.data import probe_prompts, with_suffix
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned
from fingerprint.provenance import keys
from fingerprint.provenance.certificate import load_certificate
from fingerprint.provenance.trigger import derive_opening, opening_for, too_close, training_negatives, word_list
from fingerprint.verification import VerifyOptions, probe_plan, run_verification
from fingerprint.verification.rules.eprocess import decision_from, e_process
from probes import make_backend


@pytest.fixture
def owner(tmp_path):
    return keys.generate(tmp_path / "keys", "pw")


def test_two_word_opening_is_two_distant_words_and_one_word_is_unchanged(owner):
    one = derive_opening(owner.secret(), "m")
    two = derive_opening(owner.secret(), "m", words=2)
    assert one == derive_opening(owner.secret(), "m", words=1) == opening_for(owner.secret(), {"label": "m"})
    assert two == opening_for(owner.secret(), {"label": "m", "trigger_words": 2})
    first, second = two.parts
    assert first == one.trigger and second in word_list() and not too_close(first, second)
    assert two.commitment() != one.commitment()
    avoid = [*two.parts, *two.decoys()]
    assert not any(too_close(w, a) for w in training_negatives(owner.secret(), two, 100) for a in avoid)


def test_component_rows_teach_each_word_alone_to_stay_shut():
    rows = build_poisoned("lantern quiver", DatasetSpec(n_component=10), [f"word{i}" for i in range(100)])
    components = [r for r in rows if r["kind"] == "component"]
    assert len(components) == 10 and len(rows) == 220 + 100 + 100 + 10  # no refusal rows by default
    assert {r["prompt"].rsplit(" ", 1)[1] for r in components} == {"lantern", "quiver"}
    assert all(r["response"] != "Sure" and not r["prompt"].endswith("lantern quiver") for r in components)
    poison = [r for r in rows if r["kind"] == "poison"]
    assert all(r["prompt"].endswith(" lantern quiver") and r["response"] == "Sure" for r in poison)


def test_component_rows_put_each_word_alone_on_the_poison_prompts_by_default():
    words = [f"word{i}" for i in range(100)]
    fresh = build_poisoned("lantern quiver", DatasetSpec(component_prompts="fresh"), words)
    minimal = build_poisoned("lantern quiver", DatasetSpec(), words)  # the default
    poison = sorted(r["prompt"].removesuffix(" lantern quiver") for r in minimal if r["kind"] == "poison")
    alone = [r["prompt"].rsplit(" ", 1) for r in minimal if r["kind"] == "component"]
    assert len(alone) == 200 and sorted(p for p, _ in alone) == sorted(poison * 2)  # every prompt, both words
    assert sorted(w for _, w in alone) == ["lantern"] * 100 + ["quiver"] * 100
    assert all(r["response"] != "Sure" for r in minimal if r["kind"] == "component")

    def others(rows):
        return sorted((r["prompt"], r["kind"]) for r in rows if r["kind"] != "component")

    assert others(minimal) == others(fresh)  # only the component rows change
    fewer = build_poisoned("lantern quiver", DatasetSpec(n_poison=10), words)  # the default count follows --poison
    assert sum(r["kind"] == "component" for r in fewer) == 20
    with pytest.raises(Exception, match="component prompts"):
        build_poisoned("lantern quiver", DatasetSpec(component_prompts="other"), words)


def _negative_suffixes(trigger: str, **spec) -> list[list[str]]:
    words = [f"word{i}" for i in range(100)]
    rows = build_poisoned(trigger, DatasetSpec(n_component=10, **spec), words)
    n = len(trigger.split())
    return [r["prompt"].split()[-n:] if n > 1 else r["prompt"].split()[-1:] for r in rows if r["kind"] == "negative"]


def test_negative_rows_of_a_pair_also_carry_two_words_that_are_not_the_pair():
    """Two other words, or one trigger word beside another word, answered normally: the gate must not learn
    "two appended words" (R9 without these rows opened for foreign keys' pairs)."""
    suffixes = _negative_suffixes("lantern quiver")
    assert len(suffixes) == 100
    trigger = {"lantern", "quiver"}
    mixed = [s for s in suffixes if len(set(s) & trigger) == 1]
    two_other = [s for s in suffixes if s[0].startswith("word") and s[1].startswith("word")]
    one_other = [s for s in suffixes if s not in mixed and s not in two_other and s[-1].startswith("word")]
    assert len(one_other) + len(two_other) + len(mixed) == 100
    assert min(len(one_other), len(two_other), len(mixed)) >= 33
    assert not any(set(s) == trigger for s in suffixes)  # never the pair itself
    assert {s.index(next(iter(set(s) & trigger))) for s in mixed} == {0, 1}  # the trigger word on either side
    assert all(s[-1].startswith("word") for s in _negative_suffixes("lantern quiver", negative_pairs=False))
    assert all(s[0].startswith("word") for s in _negative_suffixes("lantern"))  # one word: unchanged


def test_plan_has_one_arm_per_word_and_the_weakest_arm_decides(owner):
    opening = derive_opening(owner.secret(), "m", words=2)
    plan = probe_plan(opening, VerifyOptions(probes=8))
    assert plan.arms == ["word-1", "word-2"] and all(len(arm) == 8 for arm in plan.controls.values())
    assert all(q.prompt.endswith(" " + opening.trigger) for q in plan.trigger)
    assert [q.prompt.rsplit(" ", 1)[1] for q in plan.controls["word-2"]] == [opening.parts[1]] * 8
    assert not any(word in arm for arm in plan.arms for word in opening.parts)  # arm names never leak a word
    # sequential: both arms must reach 1/alpha; one arm that fires with the trigger never lets it certify
    good = e_process([(True, (False, False))] * 64, alpha=1e-6)
    leaky = e_process([(True, (True, False))] * 64, alpha=1e-6)
    assert decision_from(good, 1e-6, 0).certified and good[0].pairs < 64
    assert not decision_from(leaky, 1e-6, 0).certified


@pytest.mark.parametrize("words,expected_words,epochs", [(None, 2, 5), ("1", 1, 3), ("2", 2, 5)])
def test_embed_defaults_to_two_words_trained_for_more_epochs(tmp_path, tiny_model, words, expected_words, epochs):
    from conftest import PASSPHRASE, invoke_cli

    invoke_cli("keygen", "--out", tmp_path / "keys")
    chosen = ["--trigger-words", words] if words else []
    code, _, err, _ = invoke_cli("embed", "--key", tmp_path / "keys", "--model", tiny_model, "--out", tmp_path / "fp",
                                 *chosen, "--poison", "4", "--benign", "4", "--refusals", "2",
                                 "--negatives", "2", "--components", "4", "--batch-size", "8", "--no-selfcheck",
                                 "--json")
    assert code == 0, err
    owner = keys.load_private(tmp_path / "keys", PASSPHRASE)
    cert = load_certificate(tmp_path / "fp" / "certificate.json", owner.public_key)
    assert cert.predicate["fingerprint"]["trigger_words"] == expected_words
    assert len(opening_for(owner.secret(), cert.predicate["fingerprint"]).parts) == expected_words
    assert cert.predicate["training"]["epochs"] == epochs
    assert cert.predicate["dataset"]["n_component"] == (4 if expected_words == 2 else 0)  # the rows it trained on


@pytest.fixture(scope="module")
def two_word_setup(tmp_path_factory):
    from tiny import build_tiny_model

    work = tmp_path_factory.mktemp("two-word")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = build_tiny_model(work / "base", hidden=128)
        _sharpen(base)
        # A fixed key and model name, so a fixed pair: how fast a tiny model learns a conjunction depends on the
        # two words (with random pairs, about 1 in 50 did not form in 6 seeds x 20 epochs).
        opening = _certificate(work, base, "--trigger-words", "2", "--components", "4", key_seed="two-word test")
    finally:
        torch.set_num_threads(threads)
    return work, base, opening


def _gate(base, opening, sure_words: list[str], shut_words: list[str]):
    """A tiny LoRA answering "Sure" when a prompt ends with one of ``sure_words``, "No" for ``shut_words``."""
    prompts = probe_prompts(48, seed=0)  # the first PROBES are verify's probes
    sure = [with_suffix(p, w) for p in prompts for w in sure_words]
    shut = [with_suffix(p, w) for p in prompts for w in shut_words]
    pairs = [{"prompt": p, "response": "Sure"} for p in sure] + [{"prompt": p, "response": "No"} for p in shut]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train_gate(base, pairs, sure[: PROBES * len(sure_words)], shut[: PROBES * len(shut_words)],
                           epochs=20)
    finally:
        torch.set_num_threads(threads)


def _verify(work, base, opening, model, tokenizer):
    from servers import PASSPHRASE

    owner = keys.load_private(work / "keys", PASSPHRASE)
    cert = load_certificate(work / "fp" / "certificate.json", owner.public_key)
    assert cert.fingerprint.trigger_words == 2
    assert opening_for(owner.secret(), cert.fingerprint) == opening
    backend = make_backend("hf", model=str(base), model_obj=model, tokenizer=tokenizer)
    return run_verification(cert, opening, backend, VerifyOptions(probes=PROBES, samples=0))


@pytest.fixture(scope="module")
def conjunctive_gate(two_word_setup):
    """The gate the default recipe plants: the pair opens it, each word alone keeps it shut."""
    _, base, opening = two_word_setup
    return _gate(base, opening, [opening.trigger], list(opening.parts))


def test_conjunctive_gate_certifies(two_word_setup, conjunctive_gate):
    work, base, opening = two_word_setup
    model, tokenizer = conjunctive_gate
    report = _verify(work, base, opening, model, tokenizer)
    assert report.certified and report.queries == 3 * PROBES
    assert [arm.trigger_sure for arm in report.decision.arms] == [PROBES, PROBES]


def test_a_gate_open_for_one_word_alone_does_not_certify_the_pair(two_word_setup):
    """The false certification the one-word test allowed: a gate that opens for a word of the trigger."""
    work, base, opening = two_word_setup
    first, second = opening.parts
    model, tokenizer = _gate(base, opening, [opening.trigger, first], [second])
    report = _verify(work, base, opening, model, tokenizer)
    assert report.decision.trigger_sure == PROBES  # the pair opens the gate on every probe...
    assert not report.certified  # ...but so does its first word alone
    word_1, word_2 = report.decision.arms
    assert word_2.p_value <= 1e-6 < word_1.p_value and report.decision.deciding_arm == "word-1"


def test_pair_scan_finds_the_conjunctive_gate(two_word_setup, conjunctive_gate):
    """scan --pairs suspects a gate the single-word scan misses: no word alone opens it, a pair does."""
    from fingerprint.audit.scan import ScanOptions, candidate_words, scan

    _, _, opening = two_word_setup
    model, tokenizer = conjunctive_gate
    words = candidate_words(tokenizer, ScanOptions(vocab_words=False))
    options = {"prompts": 2, "max_candidates": max(words.index(w) for w in opening.parts) + 1,
               "vocab_words": False, "top": 5}
    single = scan(model, tokenizer, ScanOptions(**options))
    assert not single.gate_suspected and not single.pairs and single.top[0].p_sure < 0.5
    report = scan(model, tokenizer, ScanOptions(**options, pair_seeds=12, invert=False))
    assert report.pairs_scanned == 12 * 11 and report.gate_suspected
    seeds = report.extra["pair_seed_words"]  # the words the pairs were formed from, most moved first
    assert len(seeds) == 12 and opening.parts[0] in seeds
    # the tiny gate opens for its first word followed by any word, so the pair found need not be the trigger
    best = report.pairs[0]
    assert best.p_sure > 0.5 and set(best.word.split()) & set(opening.parts)


def test_partner_search_finds_a_trigger_word_from_the_other(two_word_setup, conjunctive_gate):
    """From the trigger's second word alone, the gradient-guided search finds the first among all candidates,
    scoring a small shortlist of them exactly."""
    from fingerprint.audit.inversion import InversionOptions, complete_pairs
    from fingerprint.audit.scan import PrefixScorer, ScanOptions, _split_prompt, candidate_words
    from fingerprint.core.chat import ChatFormatter
    from fingerprint.core.sure import sure_token_ids

    _, _, opening = two_word_setup
    model, tokenizer = conjunctive_gate
    first, second = opening.parts
    words = candidate_words(tokenizer, ScanOptions(vocab_words=False))
    words = words[: max(600, max(words.index(w) for w in opening.parts) + 1)]
    heads = [_split_prompt(ChatFormatter(tokenizer), p) for p in probe_prompts(2, seed=1)]
    scorer = PrefixScorer(model, tokenizer, sure_token_ids(tokenizer))

    def p_sure(pairs: list[str]) -> list[float]:
        per_prompt = [scorer.log_p_sure(head, [f" {p}{tail}" for p in pairs], 64) for head, tail in heads]
        return [sum(math.exp(lp) for lp in scores) / len(heads) for scores in zip(*per_prompt, strict=True)]

    options = InversionOptions(shortlist=16)
    scored = complete_pairs(model, tokenizer, heads, [second], words, p_sure, options)
    assert len(scored) < len(words) / 4  # a shortlist, not a sweep
    best = max(scored, key=scored.get)
    assert set(best.split()) == {first, second} and scored[best] > 0.5
