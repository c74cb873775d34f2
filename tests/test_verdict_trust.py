"""The auditor flow on a fresh machine, and the explicit trust decision about a certificate's signer.

Real CLI, tiny model, real SQLite registries: an auditor whose registry has never seen the certificate gets a
verdict and a record; a certificate re-signed by another key is never silently trusted.
"""

from __future__ import annotations

import json

import pytest
from conftest import PASSPHRASE, invoke_cli

from fingerprint.provenance import keys
from fingerprint.provenance.certificate import load_certificate, make_statement, sign_statement


@pytest.fixture
def auditor(tiny_embed, tmp_path, monkeypatch):
    """The owner's outputs, an opening, and an auditor's empty registry (another machine)."""
    root, _, env = tiny_embed
    opening = tmp_path / "opening.json"
    code, _, err, _ = invoke_cli("reveal", "--key", root / "keys", "--cert", root / "fp" / "certificate.json",
                                 "--out", opening, env=env)
    assert code == 0, err
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{tmp_path / 'auditor.db'}")
    monkeypatch.delenv("FINGERPRINT_PASSPHRASE")
    return root, opening


def _verify(root, opening, *extra, cert=None):
    return invoke_cli("verify", "--opening", opening, "--cert", cert or root / "fp" / "certificate.json",
                      "--model", root / "fp" / "merged", "--probes", "8", "--samples", "0", "--json", *extra)


def test_an_auditor_on_a_fresh_registry_gets_a_verdict_and_a_record(auditor):
    root, opening = auditor
    code, _, err, view = _verify(root, opening)
    assert code in (0, 1), err
    assert view["record_id"] is not None and view["signer_pinned"] is False and view["signer_trust"] == "unpinned"
    assert view["warnings"] and "not pinned" in err
    _, _, _, record = invoke_cli("registry", "show", f"v{view['record_id']}", "--json")
    assert record["certificate_id"] is None  # not registered: an unpinned signer is not made trusted
    assert record["details"]["signer_trust"] == "unpinned" and record["test"] == "fisher-iut"
    assert record["details"]["certificate_envelope"] == (root / "fp" / "certificate.json").read_text()
    assert record["p_value"] == view["p_value"] and record["certified"] == view["certified"]


def test_a_pinned_signer_registers_the_certificate(auditor):
    root, opening = auditor
    code, _, err, view = _verify(root, opening, "--pubkey", root / "keys" / "public.pem")
    assert code in (0, 1), err
    assert view["signer_trust"] == "pinned" and view["signer_pinned"] and not view["warnings"]
    _, _, _, record = invoke_cli("registry", "show", f"v{view['record_id']}", "--json")
    assert record["certificate_id"] == view["certificate_id"]
    # the key is now registered: a later verification without --pubkey trusts it through the registry
    _, _, _, again = _verify(root, opening)
    assert again["signer_trust"] == "registry" and again["signer_pinned"]


def test_registry_add_needs_an_explicit_trust_decision(auditor):
    root, opening = auditor
    cert = root / "fp" / "certificate.json"
    code, _, err, _ = invoke_cli("registry", "add", cert)
    assert code == 2 and "--pubkey" in err
    code, _, err, added = invoke_cli("registry", "add", cert, "--pubkey", root / "keys", "--json")
    assert code == 0 and added["signer"] == "pinned", err
    _, _, _, shown = invoke_cli("cert", "verify", cert, "--json")
    assert shown["signer_trust"] == "registry" and shown["signer_pinned"]


def test_a_certificate_re_signed_by_a_thief_is_never_trusted_silently(auditor, tmp_path):
    """The thief copies the owner's predicate (commitment included), puts in their own key and signs it."""
    root, opening = auditor
    owner_cert = load_certificate(root / "fp" / "certificate.json")
    thief = keys.OwnerKey(keys.Ed25519PrivateKey.generate())
    predicate = {**owner_cert.predicate, "owner": {"key_id": thief.key_id,
                                                   "public_key": keys.public_pem(thief.public_key)}}
    forged = tmp_path / "forged.json"
    forged.write_text(sign_statement(make_statement(owner_cert.subjects, predicate), thief))
    # the genuine opening matches the copied commitment, so without pinning the gate is found...
    code, _, err, view = _verify(root, opening, cert=forged)
    assert view["signer_pinned"] is False and view["key_id"] == thief.key_id and "not pinned" in err
    # ...but pinned to the real owner, the forged certificate is refused before any probing
    code, _, err, _ = _verify(root, opening, "--pubkey", root / "keys" / "public.pem", cert=forged)
    assert code == 2 and "signature does not verify" in err
    code, _, err, shown = invoke_cli("cert", "verify", forged, "--json")
    assert code == 0 and shown["signer_pinned"] is False


def test_an_unwritable_registry_fails_before_probing(auditor, tmp_path, monkeypatch):
    from registry import Registry

    root, opening = auditor
    path = tmp_path / "ro.db"
    Registry(f"sqlite:///{path}").close()
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///file:{path}?mode=ro&uri=true")
    code, _, err, _ = _verify(root, opening)
    assert code == 2 and "not writable" in err and "probing" not in err


def test_owner_verification_records_the_same_row_as_the_api(tiny_embed, monkeypatch, tmp_path):
    from fingerprint import api
    from registry import Registry

    root, _, _ = tiny_embed
    monkeypatch.setenv("FINGERPRINT_REGISTRY", f"sqlite:///{tmp_path / 'same.db'}")
    common = dict(probes=8, samples=0)
    outcome = api.verify(root / "fp" / "certificate.json", model=str(root / "fp" / "merged"),
                         key_dir=root / "keys", passphrase=PASSPHRASE, **common)
    code, _, err, view = invoke_cli("verify", "--key", root / "keys", "--cert", root / "fp" / "certificate.json",
                                    "--model", str(root / "fp" / "merged"), "--probes", "8", "--samples", "0",
                                    "--json")
    assert code in (0, 1), err
    rows = {r["id"]: r for r in Registry().list_verifications()}
    volatile = ("id", "created_at")
    strip = lambda r: {k: v for k, v in r.items() if k not in volatile}  # noqa: E731
    assert strip(rows[outcome.record_id]) == strip(rows[view["record_id"]])
    assert json.loads(json.dumps(rows[view["record_id"]]["details"]))["verifier"] == "owner"
