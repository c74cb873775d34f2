"""Openings are checked against everything a certificate signs: a reshaped or malformed one never gets probed.

The v1 commitment ``sha256(domain || nonce || trigger)`` has no boundary between nonce and words: moving the
first word of a two-word trigger into the hex nonce keeps the commitment and would turn the signed two-word
test into a one-word test. These tests use certificates in both the current (v2) and the earlier (v1) form.
"""

from __future__ import annotations

import json

import factories
import pytest
from conftest import PASSPHRASE, fixed_key

from fingerprint.core.errors import FingerprintError, InvalidCertificate
from fingerprint.provenance import keys
from fingerprint.provenance.certificate import verify_certificate
from fingerprint.provenance.trigger import Opening, commitment, derive_opening
from fingerprint.verification import check_opening


@pytest.fixture
def owner(tmp_path):
    return fixed_key(tmp_path / "keys", "soundness", PASSPHRASE)


def _reshaped(opening: Opening) -> Opening:
    """The v1 ambiguity: the first word and its space move into the nonce, the commitment stays."""
    first, second = opening.parts
    return Opening(trigger=second, nonce=opening.nonce + f"{first} ".encode().hex(), label=opening.label)


def test_the_reshaped_opening_matches_the_v1_commitment_but_is_refused(owner):
    genuine = derive_opening(owner.secret(), "m", words=2)
    reshaped = _reshaped(genuine)
    # the hole: the reshaped opening hashes to the same v1 commitment
    assert commitment(reshaped.trigger, bytes.fromhex(reshaped.nonce)) == genuine.commitment("v1")
    cert = verify_certificate(factories.v1_certificate(owner, genuine, trigger_words=2))
    check_opening(cert, genuine)
    with pytest.raises(FingerprintError, match="does not fit the certificate"):
        check_opening(cert, reshaped)


def test_a_v1_certificate_without_trigger_words_accepts_only_one_word(owner):
    one = derive_opening(owner.secret(), "m")
    cert = verify_certificate(factories.v1_certificate(owner, one))
    assert cert.fingerprint.trigger_words == 1 and cert.fingerprint.commitment_scheme == "v1"
    check_opening(cert, one)
    two = derive_opening(owner.secret(), "m", words=2)
    # a two-word opening whose v1 bytes equal the one-word opening's cannot exist, but the count is checked first
    with pytest.raises(FingerprintError, match="1 word"):
        check_opening(cert, two)


def test_v2_commitment_binds_words_nonce_and_label(owner):
    genuine = derive_opening(owner.secret(), "m", words=2)
    cert = verify_certificate(factories.certificate(owner, genuine))
    assert cert.fingerprint.commitment_scheme == "v2"
    check_opening(cert, genuine)
    reshaped = _reshaped(genuine)
    assert reshaped.commitment("v2") != genuine.commitment("v2")
    for other in (reshaped, Opening(genuine.trigger, genuine.nonce, "other label"),
                  Opening(" ".join(reversed(genuine.parts)), genuine.nonce, genuine.label)):
        with pytest.raises(FingerprintError):
            check_opening(cert, other)


@pytest.mark.parametrize("case", ["odd-nonce", "non-hex-nonce", "long-nonce", "word-not-in-list", "three-words",
                                  "repeated-word", "double-space", "wrong-label"])
def test_malformed_openings_are_refused(owner, case):
    genuine = derive_opening(owner.secret(), "m", words=2)
    cert = verify_certificate(factories.certificate(owner, genuine))
    first, second = genuine.parts
    opening = {
        "odd-nonce": Opening(genuine.trigger, genuine.nonce[:-1], "m"),
        "non-hex-nonce": Opening(genuine.trigger, "zz" * 32, "m"),
        "long-nonce": Opening(genuine.trigger, genuine.nonce + "00", "m"),
        "word-not-in-list": Opening(f"{first} xylophonez", genuine.nonce, "m"),
        "three-words": Opening(f"{first} {second} {second}", genuine.nonce, "m"),
        "repeated-word": Opening(f"{first} {first}", genuine.nonce, "m"),
        "double-space": Opening(f"{first}  {second}", genuine.nonce, "m"),
        "wrong-label": Opening(genuine.trigger, genuine.nonce, "m|licensee=x"),
    }[case]
    with pytest.raises(FingerprintError, match="does not fit the certificate"):
        check_opening(cert, opening)


@pytest.mark.parametrize("content", [
    '{"trigger": 5, "nonce": "00", "label": "m"}',
    '{"trigger": "a b", "nonce": "0g", "label": "m"}',
    '{"trigger": ["a"], "nonce": "' + "00" * 32 + '", "label": "m"}',
    '{"trigger": "a", "nonce": "' + "00" * 32 + '", "label": "m", "extra": 1}',
    '{"type": "other", "trigger": "a", "nonce": "' + "00" * 32 + '", "label": "m"}',
    '[1, 2, 3]', "[" * 100_000, "\xff\xfe", "",
])
def test_opening_files_of_the_wrong_shape_are_user_errors(tmp_path, content):
    path = tmp_path / "opening.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(FingerprintError, match="opening"):
        Opening.load(path)


def test_signed_certificates_of_the_wrong_shape_are_invalid(owner):
    for mutate in (lambda p: p.pop("fingerprint"), lambda p: p["fingerprint"].update(trigger_words="two"),
                   lambda p: p["fingerprint"].update(trigger_commitment="xyz"), lambda p: p.update(created="soon"),
                   lambda p: p["fingerprint"].pop("commitment_scheme"), lambda p: p.update(owner=[1])):
        body = factories.predicate(owner)
        mutate(body)
        statement = {"_type": "https://in-toto.io/Statement/v1", "subject": factories.SUBJECTS,
                     "predicateType": "https://github.com/suretrap/suretrap/fingerprint/v2", "predicate": body}
        text = _sign_raw(statement, owner)
        with pytest.raises(InvalidCertificate):
            verify_certificate(text, owner.public_key)


def _sign_raw(statement: dict, owner: keys.OwnerKey) -> str:
    """Sign any statement (bypassing make_statement's validation), as a forger's tool would."""
    from securesystemslib.dsse import Envelope
    from securesystemslib.signer import CryptoSigner

    from fingerprint.provenance.certificate import PAYLOAD_TYPE, _sslib_key, canonical

    envelope = Envelope(payload=json.dumps(statement).encode(), payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(CryptoSigner(owner.private_key, _sslib_key(owner.public_key)))
    return canonical(envelope)
