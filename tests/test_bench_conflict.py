"""memq bench conflict: fact parsing, LLM-free supersession on a real SQLite memory, scoring, the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_replay import Recorded, Reply, malformed
from memq import Memory
from memq.cli import app
from memq.errors import InvalidInputError
from memq.types import NewRecord
from memq_bench.conflict import (
    NO_LLM_NOTE,
    group_contexts,
    load_conflict,
    parse_context,
    plan,
    score_question,
)
from memq_bench.metrics import normalize_answer, substring_match
from memq_bench.results import read_results
from memq_bench.supersession import SUBJECT_FIELD, parse_fact, subject_key, supersede

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "relation", "subject", "obj"),
    [
        ("The capital of Tang Empire is Chang'an.", "capital", "Tang Empire", "Chang'an"),
        ("12. Roy Rogers is married to Dale Evans.", "spouse", "Roy Rogers", "Dale Evans"),
        (
            "Gabe Newell is a citizen of United States of America.",
            "citizenship",
            "Gabe Newell",
            "United States of America",
        ),
        (
            "The headquarters of University of Minnesota is located in the city of Minneapolis.",
            "headquarters",
            "University of Minnesota",
            "Minneapolis",
        ),
        (
            "The name of the current head of the Tucson government is Jonathan Rothschild.",
            "head_of_government",
            "Tucson",
            "Jonathan Rothschild",
        ),
        ("Carlos Sainz's child is Carlos Sainz Jr..", "child", "Carlos Sainz", "Carlos Sainz Jr."),
        ("The Governor of Texas is Greg Abbott.", "office_holder", "Governor of Texas", "Greg Abbott"),
        (
            "goalkeeper is associated with the sport of association football.",
            "sport",
            "goalkeeper",
            "association football",
        ),
    ],
)
def test_parse_fact_reads_subject_and_relation(text: str, relation: str, subject: str, obj: str) -> None:
    fact = parse_fact(text)
    assert fact is not None
    assert (fact.relation, fact.subject, fact.obj) == (relation, subject, obj)


def test_subject_key_matches_across_objects_and_case_only() -> None:
    a = subject_key("The official language of Japan is Japanese.")
    b = subject_key("The official language of  JAPAN is Swedish.")
    assert a == b == "official_language|japan"
    assert subject_key("The capital of Japan is Tokyo.") != a  # same subject, other relation
    assert subject_key("Alice likes green tea and long walks") is None
    assert subject_key("") is None


def _texts(mem: Memory, **kw: object) -> list[str]:
    return [h.record.text for h in mem.search("official language of Japan", k=5, **kw).hits]


@pytest.mark.parametrize("use_index", [True, False])
def test_supersede_invalidates_the_old_fact_and_keeps_history(
    tmp_path: Path, embedder, use_index: bool
) -> None:
    mem = Memory(tmp_path / "m.db", embedder=embedder, scope="t")
    index: dict[str, str] | None = {} if use_index else None
    texts = ["The official language of Japan is Japanese.", "The capital of Japan is Tokyo."]
    first = mem.add([NewRecord(text=t, metadata={SUBJECT_FIELD: subject_key(t)}) for t in texts])
    report = supersede(mem, first, index=index)
    assert report.invalidated == [] and report.unparsed == 0

    later = [
        "The official language of Japan is Swedish.",
        "Bob enjoys hiking on weekends.",  # no template: counted, nothing invalidated
    ]
    second = mem.add(
        [NewRecord(text=t, metadata={SUBJECT_FIELD: k} if (k := subject_key(t)) else {}) for t in later]
    )
    report = supersede(mem, second, index=index)
    assert report.invalidated == [first[0].id]
    assert report.unparsed == 1

    shown = _texts(mem)
    assert "The official language of Japan is Swedish." in shown
    assert "The official language of Japan is Japanese." not in shown
    assert "The capital of Japan is Tokyo." in shown  # other relation untouched
    assert "The official language of Japan is Japanese." in _texts(mem, include_invalidated=True)
    ops = [e.op for e in mem.history(first[0].id)]
    assert [str(op) for op in ops] == ["add", "invalidate"]
    assert mem.get(first[0].id).valid_to is not None
    mem.close()


def test_supersede_within_one_batch_keeps_the_last(tmp_path: Path, embedder) -> None:
    mem = Memory(tmp_path / "m.db", embedder=embedder, scope="t")
    texts = ["Lisa Leslie plays the position of center.", "Lisa Leslie plays the position of quarterback."]
    records = mem.add([NewRecord(text=t, metadata={SUBJECT_FIELD: subject_key(t)}) for t in texts])
    report = supersede(mem, records)  # store lookup path
    assert report.invalidated == [records[0].id]
    hits = mem.search("Lisa Leslie position", k=5).hits
    assert [h.record.text for h in hits] == [texts[1]]
    mem.close()


def test_substring_match_normalises_like_memoryagentbench() -> None:
    assert normalize_answer("The  Carlos Sainz Jr.!") == "carlos sainz jr"
    assert substring_match(["Carlos Sainz Jr."], ["Carlos Sainz's child is Carlos Sainz Jr.."])
    assert substring_match(["x", "beta"], ["The capital is BETA."])
    assert not substring_match(["Gamma"], ["The capital is Beta."])
    assert not substring_match([""], ["anything"])
    got = score_question(["capital is Alpha", "capital is Beta"], ["Beta"], [1, 2])
    assert got == {1: False, 2: True}


def _write_file(path: Path) -> Path:
    facts = [
        "The capital of Xandor is Alpha City.",
        "Mira Quell is a citizen of Norway.",
        "The capital of Xandor is Beta Town.",
        "Mira Quell is a citizen of Peru.",
        "Tomas Vey plays the position of goalkeeper.",
    ]
    context = "Here is a list of facts:\n" + "\n".join(f"{i}. {f}" for i, f in enumerate(facts))
    rows = []
    for hop in ("sh", "mh"):
        rows.append(
            {
                "context": context,
                "questions": ["What is the capital of Xandor?", "Which country is Mira Quell a citizen of?"],
                "answers": [["Beta Town"], ["Peru"]],
                "metadata": {"source": f"factconsolidation_{hop}_6k", "qa_pair_ids": None},
            }
        )
    path.write_text(json.dumps(rows))
    return path


def test_load_and_group(tmp_path: Path) -> None:
    rows = load_conflict(_write_file(tmp_path / "cr.json"))
    assert [(r.hop, r.length) for r in rows] == [("sh", "6k"), ("mh", "6k")]
    assert rows[0].facts[2] == "The capital of Xandor is Beta Town."
    contexts = group_contexts(rows)
    assert len(contexts) == 1 and len(contexts[0].rows) == 2  # shared context ingested once
    assert group_contexts(rows, ["32k"]) == []
    assert parse_context("Here is a list of facts:\n1. B.\n0. A.") == ["A.", "B."]
    with pytest.raises(InvalidInputError):
        parse_context("no facts here")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"questions": []}]))
    with pytest.raises(InvalidInputError):
        load_conflict(bad)


def test_plan_runs_peers_with_supersession_off_only() -> None:
    assert plan(["memq", "chroma"], ["off", "on"]) == [("memq", "off"), ("chroma", "off"), ("memq", "on")]
    assert plan(["memq", "chroma"], ["reconcile"]) == [("memq", "reconcile")]


def test_cli_writes_valid_results(tmp_path: Path, embedder) -> None:
    data = _write_file(tmp_path / "cr.json")
    out = tmp_path / "out.json"
    result = runner.invoke(
        app,
        [
            "bench", "conflict", "--systems", "memq,memq-lexical", "--data", str(data), "--lengths", "6k",
            "--k", "1,3", "--chunk", "2", "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rf = read_results(out)
    assert rf.benchmark == "conflict"
    got = {(r.system, r.variant): r.metrics for r in rf.results}
    assert set(got) == {(s, f"supersession-{v}") for s in ("memq", "memq-lexical") for v in ("off", "on")}
    for m in got.values():
        assert m["questions"] == 4 and m["facts"] == 5
        assert {"em@1", "em@3", "em@1/6k", "em@1/sh_6k", "em@3/mh_6k", "add_ms_p50", "search_ms_p95"} <= set(
            m
        )
        assert 0.0 <= m["em@1"] <= m["em@3"] <= 1.0
    on = got[("memq", "supersession-on")]
    assert on["superseded_facts"] == 2 and on["unparsed_facts"] == 0
    # only the latest facts are current, so the top fact answers every question
    assert on["em@1"] == 1.0
    assert "superseded_facts" not in got[("memq", "supersession-off")]


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    data = _write_file(tmp_path / "cr.json")
    for extra in (["--lengths", "7k"], ["--variants", "llm"], ["--k", "0"], ["--systems", "nope"]):
        result = runner.invoke(app, ["bench", "conflict", "--data", str(data), *extra])
        assert result.exit_code == 2, (extra, result.output)


# -- the reconcile variant (the LLM manager over the replay server) ------------------------------------
SUBJECTS = ("The capital of Xandor", "Mira Quell is a citizen")


def _turn(request: Recorded) -> str:
    """The fact the extraction prompt quotes (one fact per add; messages[1]: a re-ask appends more)."""
    text = request.messages[1]["content"]
    return re.search(r"user: (.+)", text.split("<messages>")[1]).group(1).strip()  # type: ignore[union-attr]


def _memories(request: Recorded) -> dict[str, int]:
    block = request.messages[1]["content"].split("<memories>")[1].split("</memories>")[0]
    return {json.loads(f'"{m[1]}"'): int(m[0]) for m in re.findall(r'^\[(\d+)\] "(.*)"', block, re.MULTILINE)}


def _fact_in(request: Recorded) -> str:
    return re.search(r'\[0\] "(.*)"', request.messages[1]["content"].split("<facts>")[1]).group(1)  # type: ignore[union-attr]


def _recorded_model(request: Recorded) -> Reply | dict:
    """Answers as a capable model would: the capital is UPDATEd, the citizenship DELETEd (contradicted),
    anything else ADDed; the goalkeeper fact gets a broken answer every time (an LLMError)."""
    if "<memories>" not in request.messages[1]["content"]:
        fact = _turn(request)
        if "goalkeeper" in fact:
            return malformed('{"status": "facts", "facts": ["Tomas')
        return {"status": "facts", "facts": [fact]}
    fact = _fact_in(request)
    for memory, number in _memories(request).items():
        if memory.startswith(SUBJECTS[0]) and fact.startswith(SUBJECTS[0]):
            return {"decisions": [{"fact": 0, "op": "UPDATE", "id": number, "text": fact, "reason": "newer"}]}
        if memory.startswith(SUBJECTS[1]) and fact.startswith(SUBJECTS[1]):
            return {"decisions": [{"fact": 0, "op": "DELETE", "id": number, "reason": "contradicted"}]}
    return {"decisions": [{"fact": 0, "op": "ADD", "id": None, "reason": "new"}]}


def test_reconcile_variant_over_the_replay_server(tmp_path: Path, embedder, llm_server) -> None:
    data = _write_file(tmp_path / "cr.json")
    out = tmp_path / "out.json"
    llm_server.respond_with(_recorded_model)
    result = runner.invoke(
        app,
        [
            "bench", "conflict", "--systems", "memq,chroma", "--data", str(data), "--lengths", "6k",
            "--k", "1,3", "--variants", "off,reconcile", "--llm", f"openai:replay-model@{llm_server.url}",
            "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"),
        ],
        env={"OPENAI_API_KEY": "test-key", "MEMQ_LLM": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rf = read_results(out)
    got = {(r.system, r.variant): r for r in rf.results}
    assert set(got) == {("memq", "supersession-off"), ("chroma", "supersession-off"), ("memq", "reconcile")}
    rec = got[("memq", "reconcile")]
    m = rec.metrics
    # fact 2 (capital Beta Town) UPDATEs fact 0; fact 3 (citizen of Peru) invalidates fact 1
    assert m["decisions_update"] == 1 and m["decisions_invalidate"] == 1
    assert m["decisions_add"] == 3  # facts 0, 1 and 3 (the DELETE stores the new fact)
    # the goalkeeper add failed (malformed every time): counted, skipped, said in the notes
    assert m["llm_errors"] == 1 and m["llm_failures"] == 1
    assert any("1 add(s) raised LLMError" in n and "6k:4: llm_invalid_output" in n for n in rec.notes)
    # only the current facts are left, so the top record answers both questions
    assert m["em@1"] == 1.0 and m["questions"] == 4 and m["facts"] == 5
    assert got[("memq", "supersession-off")].metrics["em@1"] < 1.0  # the stale facts compete
    # usage from Memory.usage(): every request the server saw is counted
    assert m["llm_calls"] == len(llm_server.requests) == 4 + 3 + 3  # 4 extracts ok + 3 reconciles + 3 bad
    assert m["llm_prompt_tokens"] > 0 and m["llm_completion_tokens"] > 0
    assert m["llm_tokens"] == m["llm_prompt_tokens"] + m["llm_completion_tokens"]
    assert rec.config["llm"].startswith("openai:replay-model@") and rec.config["chunk_facts"] == 1
    assert rf.extra["notes"] == []
    assert got[("memq", "supersession-off")].metrics["llm_calls"] == 0


def test_without_llm_the_reconcile_variant_is_absent_with_a_note(tmp_path: Path, embedder) -> None:
    data = _write_file(tmp_path / "cr.json")
    out = tmp_path / "out.json"
    result = runner.invoke(
        app,
        [
            "bench", "conflict", "--systems", "memq", "--data", str(data), "--lengths", "6k", "--k", "1",
            "--max-facts", "3", "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"),
        ],
        env={"MEMQ_LLM": ""},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "reconcile: no LLM configured (pass --llm)" in result.output
    rf = read_results(out)
    assert [r.variant for r in rf.results] == ["supersession-off", "supersession-on"]
    assert NO_LLM_NOTE in rf.extra["notes"] and rf.args["max_facts"] == 3
    for r in rf.results:
        assert r.metrics["facts"] == 3 and r.config["max_facts"] == 3 and NO_LLM_NOTE in r.notes
    # facts 0-2 only: Peru (fact 3) was never written
    assert rf.results[1].metrics["em@1"] == 0.5
