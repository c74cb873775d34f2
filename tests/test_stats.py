"""The fixed-size exact test and the sequential e-process."""

from __future__ import annotations

import random

import pytest

from fingerprint.sequential import e_process, pairs_needed
from fingerprint.stats import exact_test


def test_exact_test_decides_at_alpha():
    full = exact_test(32, 32, 0, 32)
    assert full.certified and full.p_value == pytest.approx(5.4567e-19, rel=1e-3)
    assert exact_test(27, 32, 5, 32).certified
    assert not exact_test(24, 32, 8, 32).certified
    assert not exact_test(4, 32, 4, 32).certified and exact_test(4, 32, 4, 32).p_value > 0.5
    with pytest.raises(ValueError):
        exact_test(1, 2, 1, 2, alpha=0)


def test_e_process_stops_early_on_a_full_gate():
    result = e_process(((True, False) for _ in range(64)), alpha=1e-6)
    assert result.certified and result.pairs == pairs_needed(1e-6) == 22
    assert result.queries == 44 < 64


def test_e_process_never_certifies_symmetric_noise():
    rng = random.Random(0)
    false_certifications = 0
    for _ in range(2000):
        pairs = [(rng.random() < 0.3, rng.random() < 0.3) for _ in range(64)]
        false_certifications += e_process(pairs, alpha=1e-3).certified
    assert false_certifications <= 4  # Ville: expected at most 2 of 2000 at alpha 1e-3


def test_e_process_is_stopped_by_decoy_sures():
    pairs = [(True, False)] * 10 + [(False, True)] * 10 + [(True, False)] * 10
    assert not e_process(pairs, alpha=1e-6).certified
