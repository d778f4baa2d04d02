"""``memq add --manager`` (typer's runner): decisions, op log, usage, and errors exit 2 writing nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_replay import answer, malformed
from memq.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, embedder) -> list[str]:
    return ["--db", str(tmp_path / "cli.db"), "--tenant", "acme"]


def _ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_add_with_dedupe_and_params(db: list[str]) -> None:
    first = json.loads(_ok([*db, "--json", "add", "Bob is allergic to peanuts"]))[0]["id"]
    out = json.loads(_ok([*db, "--json", "add", "bob is allergic to PEANUTS.", "--manager", "dedupe"]))
    assert out["manager"] == "dedupe" and out["decisions"][0]["op"] == "MERGE"
    assert out["decisions"][0]["record_id"] == first
    table = _ok([*db, "add", "Bob has a peanut allergy", "--manager", "dedupe", "-p", "threshold=0.6"])
    assert "MERGE" in table and "manager dedupe: 1 decision(s)" in table
    events = json.loads(_ok([*db, "--json", "history", first]))
    assert [e["actor"] for e in events] == [None, "manager:dedupe", "manager:dedupe"]
    assert "exact duplicate" in events[1]["reason"] and "near-duplicate" in events[2]["reason"]
    bad = runner.invoke(app, [*db, "add", "x", "--manager", "dedupe", "-p", "threshold=2"])
    assert bad.exit_code == 2 and "threshold" in bad.output
    orphan = runner.invoke(app, [*db, "add", "x", "-p", "threshold=0.5"])
    assert orphan.exit_code == 2 and "--manager" in orphan.output


def test_add_with_reconcile_over_http_prints_usage(db: list[str], llm_server) -> None:
    spec = f"openai:{llm_server.model}@{llm_server.url}"
    llm_server.script(answer({"status": "facts", "facts": ["Alice lives in Munich"]}))
    out = _ok([*db, "add", "Alice: I live in Munich now", "--manager", "reconcile", "--llm", spec, "--usage"])
    assert "ADD" in out and "LLM: 1 call(s)" in out and "extract: 1 call(s)" in out
    llm_server.script(malformed("{"), malformed("{"), malformed("{"))
    failed = runner.invoke(app, [*db, "add", "Alice moved", "--manager", "reconcile", "--llm", spec])
    assert failed.exit_code == 2 and "llm_invalid_output" in failed.output
    listed = json.loads(_ok([*db, "--json", "list"]))
    assert [r["text"] for r in listed["records"]] == ["Alice lives in Munich"]
    missing = runner.invoke(app, [*db, "add", "x", "--manager", "reconcile"], env={"MEMQ_LLM": ""})
    assert missing.exit_code == 2 and "needs an LLM" in missing.output
