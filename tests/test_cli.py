"""The ``memq`` command line, run in-process (typer's runner) and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq.cli import app

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path, embedder) -> list[str]:  # the embedder fixture loads MiniLM once per session
    return ["--db", str(tmp_path / "cli.db"), "--tenant", "acme"]


def _ok(args: list[str], input: str | None = None) -> str:
    result = runner.invoke(app, args, input=input)
    assert result.exit_code == 0, result.output
    return result.output


def test_add_search_get_history_update_flow(db: list[str]) -> None:
    out = json.loads(_ok([*db, "--json", "add", "Alice moved to Berlin", "-m", '{"topic": "travel"}']))
    rid = out[0]["id"]
    bob = json.loads(_ok([*db, "--json", "add", "Bob is allergic to peanuts"]))[0]["id"]
    hits = json.loads(_ok([*db, "--json", "search", "where does Alice live", "-k", "1", "--explain"]))
    assert hits["hits"][0]["record"]["id"] == rid and hits["hits"][0]["signals"]["dense_rank"] == 1
    assert json.loads(_ok([*db, "get", rid]))["metadata"] == {"topic": "travel"}
    _ok([*db, "update", rid, "--text", "Alice moved to Munich", "--reason", "moved"])
    events = json.loads(_ok([*db, "--json", "history", rid]))
    assert [(e["op"], e["version"]) for e in events] == [("add", 1), ("update", 2)]
    filtered = json.loads(
        _ok([*db, "--json", "search", "allergy", "--filter", '{"metadata.topic": "travel"}'])
    )
    assert [h["record"]["id"] for h in filtered["hits"]] == [rid]
    stats = json.loads(_ok([*db, "--json", "stats"]))
    assert stats["records"] == 2 and stats["versions"] == 3
    table = _ok([*db, "search", "peanuts", "--explain"])
    assert bob in table and "retrieval" in table


def test_file_import_export_list_and_purge(db: list[str], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("first note\n\nsecond note\nthird note\n")
    _ok([*db, "add", "--file", str(notes)])
    page = json.loads(_ok([*db, "--json", "list", "--limit", "2"]))
    assert len(page["records"]) == 2 and page["next_cursor"]
    rest = json.loads(_ok([*db, "--json", "list", "--limit", "2", "--cursor", page["next_cursor"]]))
    assert [r["text"] for r in rest["records"]] == ["third note"] and rest["next_cursor"] is None
    dump = tmp_path / "dump.jsonl"
    _ok([*db, "export", str(dump)])
    other = ["--db", str(tmp_path / "other.db"), "--tenant", "acme"]
    assert "imported 3" in _ok([*other, "import", str(dump)])
    rid = page["records"][0]["id"]
    assert "purged 1" in _ok([*db, "purge", rid, "--yes"])
    assert runner.invoke(app, [*db, "get", rid]).exit_code == 2


def test_errors_say_what_to_do(db: list[str]) -> None:
    result = runner.invoke(app, [*db, "get", "no-such-id"])
    assert result.exit_code == 2 and "not_found" in result.output
    result = runner.invoke(app, [*db, "search", "x", "--filter", "{not json"])
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = runner.invoke(app, [*db, "search", "x", "--filter", '{"metadata.a": {"near": 1}}'])
    assert result.exit_code == 2 and "invalid_filter" in result.output
    result = runner.invoke(app, [*db, "add", "   "])
    assert result.exit_code == 2 and "empty_text" in result.output
    result = runner.invoke(app, [*db, "add"])
    assert result.exit_code == 2 and "--file" in result.output


def test_a_global_option_after_the_command_says_where_it_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a command that did run would write ./memq.db here
    db = str(tmp_path / "x.db")
    for args, hint in (
        (["search", "x", "--db", db], "`memq --db ... search ...`"),
        (["search", "x", "--json"], "`memq --json search ...`"),  # a flag takes no value
        (["keys", "list", "--db", db], "`memq --db ... keys list ...`"),  # a nested command
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and "global options" in result.output, result.output
        assert hint in " ".join(result.output.replace("│", " ").split()), result.output
    # an option no level knows keeps click's own message and guess
    result = runner.invoke(app, ["search", "x", "--kindz", "fact"])
    assert result.exit_code == 2 and "global options" not in result.output and "--kind" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing ran


def test_real_process_help_and_exit_code(tmp_path: Path) -> None:
    exe = [sys.executable, "-m", "memq"]
    help_out = subprocess.run([*exe, "--help"], capture_output=True, text=True, timeout=60)
    assert help_out.returncode == 0 and "search" in help_out.stdout and "demo" in help_out.stdout
    bad = subprocess.run(
        [*exe, "--db", str(tmp_path / "x.db"), "--embedder", "hashing", "get", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "not_found" in bad.stderr


@pytest.mark.parametrize("policy", ["similarity", "memrl", "memento_q", "memq"])
def test_every_learner_searches_replays_evaluates_and_reports_from_the_cli(
    db: list[str], policy: str
) -> None:
    """Each learner works as a user would drive it: search with it, give feedback, replay, evaluate,
    and see its status (a learned policy used to refuse the search's own --mode default)."""
    _ok([*db, "add", "Alice moved to Berlin"])
    _ok([*db, "add", "Bob is allergic to peanuts"])
    found = json.loads(_ok([*db, "--json", "search", "where does Alice live", "-k", "2", "--policy", policy]))
    assert found["learner"] == policy and found["hits"], found
    assert found["policy"] == "hybrid-weighted"  # cold: the recipe ranks until the learner is shown better
    rid = found["hits"][0]["record"]["id"]
    _ok([*db, "feedback", found["id"], "1", "--used", rid])
    assert "replayed 1 logged feedbacks" in _ok([*db, "replay", policy])
    est = json.loads(_ok([*db, "--json", "evaluate", policy]))
    assert est["retrievals"] == 1 and est["items"] == 2
    status = json.loads(_ok([*db, "--json", "learn", "status", policy]))
    assert status["learner"] == policy and status["serving"] is False and status["feedbacks"] == 1
    assert "ranks with" in _ok([*db, "learn", "status", policy])
