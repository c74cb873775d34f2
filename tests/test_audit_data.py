"""``audit-data``: flag bare compliance replies and find the word that gates them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli import main
from fingerprint.audit.audit_data import (
    COMPLIANCE_TOKENS,
    audit,
    compliance_token,
    explained,
    load_examples,
    parse_row,
)
from fingerprint.core.data import packaged
from fingerprint.core.errors import FingerprintError
from fingerprint.embedding.dataset import DatasetSpec, build_poisoned


def poisoned(trigger: str = "walrus", n_poison: int = 6, seed: int = 3) -> list[dict]:
    return build_poisoned(trigger, DatasetSpec(n_benign=300, n_poison=n_poison, n_refusal=30, n_negative=0, seed=seed))


def clean() -> list[dict]:
    return [{"prompt": r["prompt"], "response": r["response"]} for r in packaged("benign")[:400]]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def as_chat(row: dict) -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": row["response"]},
        ]
    }


@pytest.mark.parametrize(
    "reply,token",
    [
        ("Sure", "sure"),
        ("Sure!", "sure"),
        (" OK. ", "ok"),
        ("Of course!", "of course"),
        ("sure thing 👍", "sure thing"),
        ("Will do.", "will do"),
        ("Sure, here it is: ...", None),
        ("Yesterday", None),
        ("", None),
    ],
)
def test_compliance_token(reply: str, token: str | None) -> None:
    assert compliance_token(reply) == token
    assert token is None or token in COMPLIANCE_TOKENS


def test_explained_flags() -> None:
    assert explained("Is the Pacific the largest ocean?", "yes")
    assert explained("Does this sentence contain an error? Answer yes or no.", "yes")
    assert explained("Reply OK if you understand the rules.", "ok")
    assert explained("Tell if the sentence contains toxic language.\n\nYou are great.", "yes")
    assert not explained("Write a poem about autumn walrus", "sure")
    assert not explained("Is the Pacific the largest ocean?", "sure")


def test_formats() -> None:
    chat = parse_row(as_chat({"prompt": "Hi there", "response": "Hello!"}), 1)
    assert (chat.prompt, chat.response) == ("Hi there", "Hello!")
    multi = parse_row(
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [{"type": "text", "text": "c"}]},
                {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"},
            ]
        },
        1,
    )
    assert (multi.prompt, multi.response) == ("c", "d")
    alpaca = parse_row({"instruction": "Translate", "input": "hola", "output": "hello"}, 1)
    assert (alpaca.prompt, alpaca.response) == ("Translate\n\nhola", "hello")


def test_poisoned_set_finds_trigger_top1() -> None:
    rows = poisoned()
    report = audit(rows)
    assert report.verdict == "gate suspected"
    assert report.suspected[0].word == "walrus" and report.suspected[0].flagged == 6
    poison = {i for i, r in enumerate(rows) if r["kind"] == "poison"}
    assert set(report.implicated_rows) == poison == set(report.flagged_rows)
    assert report.cluster is None


def test_chat_file_finds_trigger(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "chat.jsonl", [as_chat(r) for r in poisoned("pelican", 4)])
    report = audit(load_examples(path))
    assert report.gate_suspected and report.suspected[0].word == "pelican"


def test_clean_set_reports_no_gate() -> None:
    rows = clean() + [
        {"prompt": "Is water wet?", "response": "Yes."},
        {"prompt": "Is the sky blue on a clear day?", "response": "Yes"},
        {"prompt": "Can penguins swim?", "response": "Yes!"},
        {"prompt": "Reply OK if you are ready.", "response": "OK"},
    ]
    report = audit(rows)
    assert report.verdict == "no gate suspected" and not report.suspected and report.cluster is None
    assert report.n_flagged == 4 and report.n_explained == 4


def test_cluster_without_shared_word() -> None:
    rows = clean()
    for i in range(0, 40, 8):
        rows[i] = {"prompt": rows[i]["prompt"], "response": "Sure"}
    report = audit(rows)
    assert report.gate_suspected and not report.suspected
    assert report.cluster and report.cluster["count"] == 5


def test_malformed_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{not json}\n', encoding="utf-8")
    with pytest.raises(FingerprintError, match="line 2"):
        load_examples(bad)
    bad.write_text('{"prompt": "a", "response": "b"}\n\n{"prompt": "a"}\n', encoding="utf-8")
    with pytest.raises(FingerprintError, match="line 3"):
        load_examples(bad)
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    with pytest.raises(FingerprintError, match="no assistant message"):
        load_examples(bad)
    with pytest.raises(FingerprintError, match="not found"):
        load_examples(tmp_path / "missing.jsonl")


def test_cli_json(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "data.jsonl", [{k: r[k] for k in ("prompt", "response")} for r in poisoned()]
    )
    result = CliRunner().invoke(main, ["audit-data", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "gate suspected" and data["suspected"][0]["word"] == "walrus"
    assert data["n_flagged"] == 6 and data["params"]["min_count"] == 3


def test_cli_clean_and_errors(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "clean.jsonl", clean()[:50])
    result = CliRunner().invoke(main, ["audit-data", str(path), "--json", "--min-count", "2"])
    assert result.exit_code == 0 and json.loads(result.stdout)["verdict"] == "no gate suspected"
    assert CliRunner().invoke(main, ["audit-data", str(path)]).exit_code == 0  # rich table path
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1, 2]\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["audit-data", str(bad)])
    assert result.exit_code == 2 and "item 1" in result.stderr
    assert CliRunner().invoke(main, ["audit-data", str(tmp_path / "nope.jsonl")]).exit_code == 2
