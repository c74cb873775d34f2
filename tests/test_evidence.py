"""Signed verification records, their independent re-check, and the HTML report (in headless Chromium).

Real CLI, the tiny fingerprinted model of tests/servers.py, a real registry; tampering is done on the record's
bytes or by re-signing a changed statement, as a forger would.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import PASSPHRASE, invoke_cli
from servers import tiny_fingerprint, unavailable

from fingerprint.provenance import keys


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_fingerprint(tmp_path_factory)


@pytest.fixture(scope="module")
def records(tiny, tmp_path_factory):
    """An auditor's key; signed records of a certified (fixed and sequential) and a not-certified verification."""
    work = tmp_path_factory.mktemp("evidence")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FINGERPRINT_PASSPHRASE", PASSPHRASE)
        mp.setenv("FINGERPRINT_HOME", str(work / "home"))
        registry = f"sqlite:///{work / 'auditor.db'}"
        keys.generate(work / "auditor", PASSPHRASE)
        out = {}
        for name, model, extra in (("certified", tiny.merged, []), ("sequential", tiny.merged, ["--sequential"]),
                                   ("not-certified", tiny.base, [])):
            code, _, err, view = invoke_cli(
                "verify", "--opening", tiny.opening, "--cert", tiny.cert, "--model", model, "--probes", tiny.probes,
                "--samples", "0", "--registry", registry, "--sign-with", work / "auditor", "--evidence",
                work / f"{name}.intoto.json", "--json", *extra)
            assert code in (0, 1), err
            out[name] = view
    return work, registry, out


def _check(record, *extra):
    return invoke_cli("evidence", "verify", record, "--json", *extra)


def test_a_record_is_written_linked_and_re_checked(records, tiny):
    work, registry, views = records
    assert views["certified"]["certified"] and not views["not-certified"]["certified"]
    assert views["sequential"]["test"] == "e-process"  # 16 probes: fewer than the 22 discordant pairs it needs
    for name in views:
        record = work / f"{name}.intoto.json"
        code, _, err, result = _check(record)
        assert code == 0 and result["ok"] and result["signature_valid"], (name, err, result)
        assert result["recomputed"]["p_value"] == pytest.approx(views[name]["p_value"], rel=1e-12)
        assert result["recomputed"]["certified"] == views[name]["certified"]
        code, _, err, full = _check(record, "--opening", tiny.opening, "--cert", tiny.cert, "--pubkey",
                                    work / "auditor")
        assert code == 0 and full["prompts_checked"] and full["opening_checked"] and full["signer_pinned"], err
    _, _, _, row = invoke_cli("registry", "show", f"v{views['certified']['record_id']}", "--registry", registry,
                              "--json")
    assert Path(row["record_path"]) == (work / "certified.intoto.json").resolve()
    import hashlib

    assert row["record_digest"] == hashlib.sha256((work / "certified.intoto.json").read_bytes()).hexdigest()
    code, _, err, by_id = invoke_cli("evidence", "verify", f"v{views['certified']['record_id']}", "--registry",
                                     registry, "--json")
    assert code == 0 and by_id["ok"], err


def test_the_record_reveals_no_trigger(records, tiny):
    work, _, _ = records
    opening = json.loads(Path(tiny.opening).read_text())
    text = (work / "certified.intoto.json").read_text()
    payload = base64.b64decode(json.loads(text)["payload"]).decode()
    for secret in (*opening["trigger"].split(), opening["nonce"]):
        assert secret not in payload
    statement = json.loads(payload)
    assert statement["predicateType"].endswith("/verification-record/v1")
    assert statement["subject"][0]["name"] == "model" and len(statement["predicate"]["queries"]) == 2 * tiny.probes


def _statement(path: Path) -> dict:
    return json.loads(base64.b64decode(json.loads(path.read_text())["payload"]))


def _resign(statement: dict, signer: keys.OwnerKey, out: Path) -> Path:
    from fingerprint.evidence.record import sign_record

    out.write_text(sign_record(statement, signer))
    return out


@pytest.mark.parametrize("tamper", ["answer", "count", "p-value", "subject", "bytes"])
def test_tampering_is_detected(records, tiny, tmp_path, tamper):
    work, _, _ = records
    record = work / "certified.intoto.json"
    auditor = keys.load_private(work / "auditor", PASSPHRASE)
    if tamper == "bytes":  # an edit without re-signing
        envelope = json.loads(record.read_text())
        statement = _statement(record)
        statement["predicate"]["decision"]["certified"] = not statement["predicate"]["decision"]["certified"]
        envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        forged = tmp_path / "forged.json"
        forged.write_text(json.dumps(envelope, indent=2, sort_keys=True) + "\n")
        code, _, err, result = _check(forged)
        assert code == 1 and not result["signature_valid"], err
        return
    statement = _statement(record)
    predicate = statement["predicate"]
    if tamper == "answer":  # one triggered answer turned from a gate reply into an ordinary one, re-signed
        query = next(q for q in predicate["queries"] if q["arm"] == "trigger" and q["is_gate"])
        query.update(token="The", is_sure=False, is_gate=False)
    elif tamper == "count":
        predicate["decision"]["control_sure"] += 3
    elif tamper == "p-value":
        predicate["decision"]["p_value"] /= 1000
    elif tamper == "subject":  # a different suspect, signed by someone else
        statement["subject"][0]["digest"]["sha256"] = "00" * 32
        auditor = keys.OwnerKey(keys.Ed25519PrivateKey.generate())
        predicate["verifier"] = {"key_id": auditor.key_id, "public_key": keys.public_pem(auditor.public_key)}
    forged = _resign(statement, auditor, tmp_path / "forged.json")
    code, _, err, result = _check(forged, "--pubkey", work / "auditor")
    assert code == 1 and not result["ok"], (tamper, err, result)
    if tamper == "subject":
        assert not result["signature_valid"]  # not the pinned verifier's signature
    else:
        assert result["signature_valid"] and result["problems"]


def test_html_reports_in_headless_chromium(records, tiny, tmp_path):
    work, _, views = records
    for name in ("certified", "not-certified", "sequential"):
        out = tmp_path / f"{name}.html"
        code, _, err, done = invoke_cli("evidence", "report", work / f"{name}.intoto.json", "--out", out,
                                        "--cert", tiny.cert, "--json")
        assert code == 0 and done["record_ok"], err
        html = out.read_text()
        assert ("NOT CERTIFIED" in html) == (not views[name]["certified"])
        assert f"{views[name]['alpha']:g}" in html and "data:image/png;base64," in html
        assert "http://" not in html and "https://" not in html  # no external assets
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("headless Chromium is missing: apt-get install chromium")
    for name in ("certified", "not-certified"):
        html = tmp_path / f"{name}.html"
        shot = tmp_path / f"{name}.png"
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1000,1400"]
        subprocess.run([chromium, *flags, f"--screenshot={shot}", html.as_uri()], capture_output=True, timeout=120,
                       check=True)
        assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 20_000
        dom = subprocess.run([chromium, *flags, "--dump-dom", html.as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
        verdict = "NOT CERTIFIED" if name == "not-certified" else "CERTIFIED"
        assert 'id="verdict"' in dom and verdict in dom and f"{views[name]['trigger_sure']}/" in dom
