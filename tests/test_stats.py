"""The fixed-size exact test and the sequential e-process."""

from __future__ import annotations

import random

import pytest

from fingerprint.verification.rules.eprocess import decision_from, e_process, pairs_needed
from fingerprint.verification.rules.fisher import decide_counts, fisher_p


def test_exact_test_decides_at_alpha():
    full = decide_counts(32, 32, {"decoys": 0}, 1e-6)
    assert full.certified and full.p_value == pytest.approx(5.4567e-19, rel=1e-3)
    assert decide_counts(27, 32, {"decoys": 5}, 1e-6).certified
    assert not decide_counts(24, 32, {"decoys": 8}, 1e-6).certified
    assert not decide_counts(4, 32, {"decoys": 4}, 1e-6).certified and fisher_p(4, 32, 4, 32) > 0.5


def test_the_weakest_arm_decides():
    decision = decide_counts(30, 32, {"word-1": 1, "word-2": 12}, 1e-6)
    assert decision.deciding_arm == "word-2" and decision.p_value == pytest.approx(fisher_p(30, 32, 12, 32))
    assert decision.trigger_sure == 30 and decision.control_sure == 12 and len(decision.arms) == 2


def test_e_process_stops_early_on_a_full_gate():
    states = e_process(((True, False) for _ in range(64)), alpha=1e-6)
    decision = decision_from(states, 1e-6, queries=2 * states[0].pairs)
    assert decision.certified and states[0].pairs == pairs_needed(1e-6) == 22
    assert decision.queries == 44 < 64


def test_e_process_never_certifies_symmetric_noise():
    rng = random.Random(0)
    false_certifications = 0
    for _ in range(2000):
        pairs = [(rng.random() < 0.3, rng.random() < 0.3) for _ in range(64)]
        false_certifications += decision_from(e_process(pairs, alpha=1e-3), 1e-3, 0).certified
    assert false_certifications <= 4  # Ville: expected at most 2 of 2000 at alpha 1e-3


def test_e_process_is_stopped_by_decoy_sures():
    pairs = [(True, False)] * 10 + [(False, True)] * 10 + [(True, False)] * 10
    assert not decision_from(e_process(pairs, alpha=1e-6), 1e-6, 0).certified


def _answers(plan, gate_probes: set[int], arm_gate: dict[str, set[int]]) -> list:
    """Answers to every query of ``plan``: "Sure" on the trigger at ``gate_probes``, on an arm at its set."""
    from types import SimpleNamespace

    out = []
    for q in plan.queries():
        opened = q.probe in (gate_probes if q.arm == "trigger" else arm_gate.get(q.arm, set()))
        out.append(SimpleNamespace(arm=q.arm, probe=q.probe, token="Sure" if opened else "The", is_sure=opened))
    return out


def test_replay_reaches_the_decisions_of_live_runs_from_the_same_answers():
    import hashlib

    from fingerprint.provenance.trigger import derive_opening
    from fingerprint.verification import VerifyOptions, make_test, probe_plan, replay

    opening = derive_opening(hashlib.sha256(b"replay-test").digest(), "tiny", 2)
    plan = probe_plan(opening, VerifyOptions(probes=154))
    # a thinned gate: the pair opens on every third probe, one word alone once
    answers = _answers(plan, {i for i in range(154) if i % 3 == 0}, {"word-1": {5}})
    by_query = {(a.arm, a.probe): a for a in answers}
    asked: list[int] = []

    def ask(queries):
        asked.append(len(queries))
        return [by_query[(q.arm, q.probe)] for q in queries]

    for name in ("fisher-iut", "e-process"):
        asked.clear()
        live = make_test(name).run(plan, ask, 1e-6)
        again = replay(name, plan, answers, 1e-6)
        assert again == live and again.queries == sum(asked)
    fisher, sequential = replay("fisher-iut", plan, answers, 1e-6), replay("e-process", plan, answers, 1e-6)
    assert fisher.certified and fisher.queries == 3 * 154
    assert sequential.certified and sequential.queries < fisher.queries  # it stops once the wealth suffices
    # the same gate read on 32 probes certifies with neither: 11 of 32 is not enough evidence at 1e-6
    short = probe_plan(opening, VerifyOptions(probes=32))
    few = _answers(short, {i for i in range(32) if i % 3 == 0}, {"word-1": {5}})
    assert not replay("fisher-iut", short, few, 1e-6).certified
    assert not replay("e-process", short, few, 1e-6).certified
    # a test that needs an answer that is not there gives no decision
    assert replay("fisher-iut", plan, answers[: len(answers) // 2], 1e-6) is None


def test_a_thinned_gate_gets_advice_to_read_more_probes():
    from fingerprint.services.verification import thinned_gate_advice

    thinned = decide_counts(10, 32, {"word-1": 0, "word-2": 0}, 1e-6)  # what a 600-pair erasure left on R10
    assert not thinned.certified and 1e-4 < thinned.p_value < 1e-3
    advice = thinned_gate_advice(thinned, 32)
    assert "10 of 32" in advice and "--probes 154" in advice
    assert thinned_gate_advice(thinned, 154) is None  # every probe already read
    assert thinned_gate_advice(decide_counts(32, 32, {"word-1": 0, "word-2": 1}, 1e-6), 32) is None  # certified
    assert thinned_gate_advice(decide_counts(2, 32, {"word-1": 0, "word-2": 0}, 1e-6), 32) is None  # p 0.25
    assert "5 of 32" in thinned_gate_advice(decide_counts(5, 32, {"word-1": 0, "word-2": 0}, 1e-6), 32)  # R11, p 0.026
