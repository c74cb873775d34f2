"""The registry on a real SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from pg import fresh_schema, pg_url  # noqa: F401  (pg_url: session fixture, used through `url`)

from fingerprint.core.errors import FingerprintError
from registry import Registry, default_url

PEM = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA0123456789abcdef\n-----END PUBLIC KEY-----\n"
KEY = hashlib.sha256(b"owner key").hexdigest()
OTHER_KEY = hashlib.sha256(b"another owner").hexdigest()


def envelope(n: int) -> tuple[str, str]:
    """A fake DSSE envelope and its id (hex sha256 of its bytes)."""
    body = {"payloadType": "application/vnd.in-toto+json", "payload": f"cGF5bG9hZA{n}", "signatures": []}
    text = json.dumps(body)
    return text, hashlib.sha256(text.encode()).hexdigest()


def add_cert(reg: Registry, n: int, *, cert_id: str | None = None, key: str = KEY, **extra) -> str:
    text, digest = envelope(n)
    fields = dict(base_model="google/gemma-3-270m", label=f"release {n}", licensee=f"acme-{n}",
                  subject=[{"name": f"model-{n}.safetensors", "digest": "ab" * 32}], envelope=text)
    fields.update(extra)
    return reg.add_certificate(cert_id=cert_id or digest, key_id=key, **fields)


def verification(digest: str, **extra) -> dict:
    fields = dict(certificate_digest=digest, backend="transformers", model="acme/model", trigger_sure=30,
                  trigger_total=32, control_sure=1, control_total=32, queries=64, p_value=1.5e-31,
                  alpha=1e-6, certified=True, details={"per_trigger": [1, 0, 1], "note": "ü ✓"})
    fields.update(extra)
    return fields


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """An empty registry database: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'registry.db').as_posix()}"
    else:
        with fresh_schema(request.getfixturevalue("pg_url")) as schema_url:
            yield schema_url


@pytest.fixture
def reg(url):
    registry = Registry(url)
    registry.add_key(KEY, PEM)
    yield registry
    registry.close()


# -- keys ---------------------------------------------------------------------------------------------


def test_keys_round_trip_and_idempotent(reg):
    reg.add_key(KEY, PEM)
    reg.add_key(KEY.upper(), PEM)
    assert reg.public_key(KEY) == PEM
    with pytest.raises(FingerprintError, match="another public key"):
        reg.add_key(KEY, PEM.replace("0123", "9999"))
    with pytest.raises(FingerprintError, match="no key"):
        reg.public_key(OTHER_KEY)
    with pytest.raises(FingerprintError, match="hex sha256"):
        reg.add_key("not-a-digest", PEM)


# -- certificates -------------------------------------------------------------------------------------


def test_certificate_round_trip(reg):
    text, digest = envelope(1)
    rows = [{"q": "résumé", "sure": True}]
    selfcheck = {"trigger_sure": 31, "p_value": 2.5e-40, "rows": rows, "none": None}
    assert add_cert(reg, 1, selfcheck=selfcheck) == digest
    got = reg.get(digest)
    assert got["kind"] == "certificate"
    assert got["id"] == digest and got["key_id"] == KEY and got["envelope"] == text
    assert got["base_model"] == "google/gemma-3-270m" and got["label"] == "release 1"
    assert got["licensee"] == "acme-1"
    assert got["subject"] == [{"name": "model-1.safetensors", "digest": "ab" * 32}]
    assert got["selfcheck"] == selfcheck
    assert got["verifications"] == []
    json.dumps(got)  # plain, JSON-serialisable
    created = datetime.fromisoformat(got["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - created) < timedelta(minutes=5)


def test_certificate_idempotent_and_selfcheck(reg):
    digest = add_cert(reg, 1, licensee=None)
    assert add_cert(reg, 1, licensee=None) == digest
    assert len(reg.list_certificates()) == 1
    assert reg.get(digest)["selfcheck"] is None and reg.get(digest)["licensee"] is None
    reg.set_selfcheck(digest, {"certified": True, "p_value": 1e-12})
    assert reg.get(digest)["selfcheck"] == {"certified": True, "p_value": 1e-12}
    add_cert(reg, 1, licensee=None)  # re-adding without a selfcheck keeps the stored one
    assert reg.get(digest)["selfcheck"] == {"certified": True, "p_value": 1e-12}
    with pytest.raises(FingerprintError, match="no certificate"):
        reg.set_selfcheck(envelope(2)[1], {})


def test_certificate_needs_registered_key(reg):
    with pytest.raises(FingerprintError, match="not registered"):
        add_cert(reg, 1, key=OTHER_KEY)
    assert reg.list_certificates() == []


def test_listing_order_and_licensees(reg):
    reg.add_key(OTHER_KEY, PEM + "other")
    ids = [add_cert(reg, n, key=KEY if n % 2 else OTHER_KEY) for n in (5, 1, 4, 2, 3)]
    assert sorted(ids) != ids  # insertion order is not the id order
    assert [c["id"] for c in reg.list_certificates()] == ids
    assert reg.licensees(KEY) == [("acme-5", ids[0]), ("acme-1", ids[1]), ("acme-3", ids[4])]
    assert reg.licensees(OTHER_KEY) == [("acme-4", ids[2]), ("acme-2", ids[3])]
    assert reg.licensees(hashlib.sha256(b"nobody").hexdigest()) == []


def test_data_survives_reopening(url):
    with Registry(url) as first:
        first.add_key(KEY, PEM)
        digest = add_cert(first, 1)
        number = first.add_verification(**verification(digest))
    with Registry(url) as again:
        assert [c["id"] for c in again.list_certificates()] == [digest]
        assert again.get(f"v{number}")["certificate_id"] == digest


# -- lookup -------------------------------------------------------------------------------------------


def test_get_by_prefix(reg):
    digest = add_cert(reg, 1)
    assert reg.get(digest[:6])["id"] == digest
    assert reg.get(digest[:20].upper())["id"] == digest
    assert reg.get(f"  {digest}\n")["id"] == digest


def test_get_ambiguous_prefix(reg):
    first = add_cert(reg, 1, cert_id="abcdef01" + "0" * 56)
    second = add_cert(reg, 2, cert_id="abcdef02" + "0" * 56)
    with pytest.raises(FingerprintError, match="ambiguous") as err:
        reg.get("abcdef")
    assert "\n" not in str(err.value) and first[:12] in str(err.value) and second[:12] in str(err.value)
    assert reg.get("abcdef02")["id"] == second


@pytest.mark.parametrize("record_id", ["abcde", "zzzzzzzz", "", "v", "vx1", "12345g", "f" * 65])
def test_get_bad_ids(reg, record_id):
    add_cert(reg, 1)
    with pytest.raises(FingerprintError) as err:
        reg.get(record_id)
    assert "\n" not in str(err.value)


def test_get_unknown_ids(reg):
    add_cert(reg, 1)
    with pytest.raises(FingerprintError, match="no certificate"):
        reg.get("0" * 64 if not envelope(1)[1].startswith("0") else "f" * 64)
    with pytest.raises(FingerprintError, match="no verification v999"):
        reg.get("v999")


# -- verifications ------------------------------------------------------------------------------------


def test_verifications_round_trip(reg):
    digest = add_cert(reg, 1)
    stranger = envelope(9)[1]  # a certificate that was never registered here
    first = reg.add_verification(**verification(digest))
    second = reg.add_verification(**verification(stranger, certified=0, adapter="lora/", p_value=0.25))
    third = reg.add_verification(**verification(digest, model="other/model"))
    assert first < second < third

    got = reg.get(f"v{first}")
    assert got["kind"] == "verification" and got["id"] == first
    assert got["certificate_id"] == digest and got["certificate_digest"] == digest
    assert got["certified"] is True and got["adapter"] is None
    counts = (got["trigger_sure"], got["trigger_total"], got["control_sure"], got["control_total"])
    assert counts == (30, 32, 1, 32)
    assert got["queries"] == 64 and got["p_value"] == 1.5e-31 and got["alpha"] == 1e-6
    assert got["details"] == {"per_trigger": [1, 0, 1], "note": "ü ✓"}
    json.dumps(got)

    other = reg.get(f"V{second}")
    assert other["certificate_id"] is None and other["certificate_digest"] == stranger
    assert other["certified"] is False and other["adapter"] == "lora/" and other["p_value"] == 0.25

    assert [v["id"] for v in reg.list_verifications()] == [first, second, third]
    assert [v["id"] for v in reg.list_verifications(digest)] == [first, third]
    assert [v["id"] for v in reg.list_verifications(stranger)] == [second]
    assert [v["id"] for v in reg.get(digest)["verifications"]] == [first, third]


def test_verification_field_errors(reg):
    digest = add_cert(reg, 1)
    with pytest.raises(TypeError, match="missing"):
        reg.add_verification(**{k: v for k, v in verification(digest).items() if k != "p_value"})
    with pytest.raises(TypeError, match="unknown"):
        reg.add_verification(**verification(digest, colour="red"))
    with pytest.raises(FingerprintError, match="no certificate"):
        reg.add_verification(**verification(digest, certificate_id=envelope(2)[1]))
    assert reg.list_verifications() == []


# -- URLs and errors ----------------------------------------------------------------------------------


def test_default_url(monkeypatch, tmp_path):
    monkeypatch.delenv("FINGERPRINT_REGISTRY", raising=False)
    monkeypatch.setenv("FINGERPRINT_HOME", str(tmp_path / "home"))
    assert default_url() == f"sqlite:///{(tmp_path / 'home' / 'registry.db').as_posix()}"
    with Registry() as reg:
        reg.add_key(KEY, PEM)
    assert (tmp_path / "home" / "registry.db").is_file()
    monkeypatch.setenv("FINGERPRINT_REGISTRY", "sqlite:///" + (tmp_path / "other.db").as_posix())
    assert default_url().endswith("/other.db")
    Registry().close()
    assert (tmp_path / "other.db").is_file()


@pytest.mark.parametrize(
    "bad_url",
    [
        "not a url",
        "postgresql+psycopg://user:secret@host:port/db",
        "nosuchdialect://user@host/db",
        "sqlite:////nonexistent-dir/for/sure/registry.db",
        "postgresql+psycopg://nobody:secret@127.0.0.1:1/nowhere",
    ],
)
def test_bad_urls_are_user_errors(bad_url):
    if bad_url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    with pytest.raises(FingerprintError) as err:
        Registry(bad_url)
    message = str(err.value)
    assert "\n" not in message and "secret" not in message


def test_bare_postgresql_url_uses_psycopg(request):
    with fresh_schema(request.getfixturevalue("pg_url")) as schema_url, Registry(
        schema_url.replace("postgresql+psycopg://", "postgresql://", 1)
    ) as reg:
        assert reg.url.startswith("postgresql+psycopg://")
        reg.list_certificates()
