"""Keys, trigger derivation and certificates: fast, no model."""

from __future__ import annotations

import json
import os
import stat

import factories
import pytest

from fingerprint.core.errors import FingerprintError, InvalidCertificate
from fingerprint.provenance import keys
from fingerprint.provenance.certificate import load_certificate, make_statement, sign_statement, verify_certificate
from fingerprint.provenance.trigger import Opening, derive_opening, too_close, training_negatives, word_list


@pytest.fixture
def owner(tmp_path):
    return keys.generate(tmp_path / "keys", "pw")


def test_private_key_is_encrypted_and_private(tmp_path, owner):
    pem = (tmp_path / "keys" / "private.pem").read_text()
    assert "ENCRYPTED" in pem
    assert stat.S_IMODE(os.stat(tmp_path / "keys" / "private.pem").st_mode) == 0o600
    assert keys.load_private(tmp_path / "keys", "pw").key_id == owner.key_id
    assert keys.key_id(keys.load_public(tmp_path / "keys")) == owner.key_id


def test_wrong_passphrase_is_a_clear_error(tmp_path, owner):
    with pytest.raises(FingerprintError, match="wrong passphrase"):
        keys.load_private(tmp_path / "keys", "not-it")


def test_keygen_refuses_to_overwrite(tmp_path, owner):
    with pytest.raises(FingerprintError, match="already exists"):
        keys.generate(tmp_path / "keys", "pw")


def test_corrupt_and_missing_key_files(tmp_path):
    (tmp_path / "private.pem").write_text("garbage")
    with pytest.raises(FingerprintError, match="not a valid"):
        keys.load_private(tmp_path / "private.pem", "pw")
    with pytest.raises(FingerprintError, match="not found"):
        keys.load_private(tmp_path / "nowhere", "pw")


def test_trigger_is_deterministic_per_key_and_label(owner):
    a = derive_opening(owner.secret(), "gemma-3-270m")
    assert a == derive_opening(owner.secret(), "gemma-3-270m")
    assert a.trigger in word_list()
    others = {derive_opening(owner.secret(), f"gemma-3-270m|licensee={i}").trigger for i in range(20)}
    assert len(others) > 15  # licensees get (almost always) distinct words
    other_key = keys.OwnerKey(keys.Ed25519PrivateKey.generate())
    assert derive_opening(other_key.secret(), "gemma-3-270m").commitment() != a.commitment()


def test_decoys_and_negatives_avoid_the_trigger_and_each_other(owner):
    opening = derive_opening(owner.secret(), "m")
    decoys = opening.decoys(8)
    negatives = training_negatives(owner.secret(), opening, 400)  # hundreds: distinct, not mutually spread
    assert len(set(decoys)) == 8 and len(set(negatives)) == 400
    assert not any(too_close(a, b) for i, a in enumerate(decoys) for b in decoys[i + 1:])
    assert not any(too_close(d, w) for d in [opening.trigger, *decoys] for w in negatives)
    assert too_close("saxophone", "xylophone")


def test_opening_round_trip_and_commitment_hides_nothing_else(tmp_path, owner):
    opening = derive_opening(owner.secret(), "m")
    opening.save(tmp_path / "o.json")
    assert Opening.load(tmp_path / "o.json") == opening
    forged = Opening(trigger="lantern", nonce=opening.nonce, label="m")
    assert forged.commitment() != opening.commitment()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(FingerprintError):
        Opening.load(tmp_path / "bad.json")


def _certificate(owner) -> str:
    return factories.certificate(owner)


def test_certificate_verifies_with_named_and_pinned_key(owner):
    text = _certificate(owner)
    assert verify_certificate(text).key_id == owner.key_id
    assert verify_certificate(text, owner.public_key).subjects[0]["name"] == "adapter"
    envelope = json.loads(text)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    other = keys.OwnerKey(keys.Ed25519PrivateKey.generate())
    with pytest.raises(InvalidCertificate):
        verify_certificate(text, other.public_key)


def test_every_single_byte_change_is_rejected(owner):
    text = _certificate(owner).encode()
    rejected = 0
    for i in range(len(text)):
        for flip in (0x01, 0x20):
            mutated = bytearray(text)
            mutated[i] ^= flip
            try:
                verify_certificate(mutated.decode("utf-8"))
            except (InvalidCertificate, UnicodeDecodeError):
                rejected += 1
    assert rejected == 2 * len(text)


def test_a_certificate_signed_by_another_key_naming_the_owner_is_rejected(owner):
    thief = keys.OwnerKey(keys.Ed25519PrivateKey.generate())
    text = sign_statement(make_statement(factories.SUBJECTS, factories.predicate(owner)), thief)
    with pytest.raises(InvalidCertificate):
        verify_certificate(text)


def test_missing_and_non_certificate_files(tmp_path):
    with pytest.raises(FingerprintError, match="not found"):
        load_certificate(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text('{"hello": 1}')
    with pytest.raises(InvalidCertificate):
        load_certificate(tmp_path / "x.json")


@pytest.mark.slow
def test_fallback_replies_are_found_past_the_first_candidates():
    """About 1 key in 100 has fewer than two one-token words among gemma's first 32 fallback candidates: the
    search goes on to 64, and a certificate's indices past 32 spell the same words as the candidates did."""
    import hashlib

    from fingerprint.core.loading import load_tokenizer, resolve
    from fingerprint.provenance.trigger import FALLBACK_CANDIDATES, FALLBACK_LIMIT, select_fallbacks

    tokenizer = load_tokenizer(resolve("gemma-3-270m"))
    opening = derive_opening(hashlib.sha256(b"fp-calibration|170").digest(), "gemma-3-270m", 2)
    candidates = opening.fallback_candidates(FALLBACK_LIMIT)
    assert candidates[:FALLBACK_CANDIDATES] == opening.fallback_candidates()  # prefix-stable: old indices hold
    indices = select_fallbacks(opening, tokenizer, 2)
    assert max(indices) >= FALLBACK_CANDIDATES
    words = opening.fallbacks(indices)
    assert words == tuple(candidates[i] for i in indices)
    assert all(len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1 for w in words)
    with pytest.raises(FingerprintError):
        opening.fallbacks([FALLBACK_LIMIT])
