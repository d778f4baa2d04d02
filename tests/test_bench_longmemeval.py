"""memq bench longmemeval: metric functions by hand, `_abs` skipping, loading, the CLI on a tiny file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq.cli import app
from memq.errors import InvalidInputError
from memq_bench.longmemeval import load_longmemeval, parse_date, question_metrics, session_of
from memq_bench.metrics import first_seen, ndcg_binary, recall_all, recall_any, recall_fraction
from memq_bench.results import read_results

runner = CliRunner()


def test_recall_by_hand() -> None:
    ranked = ["a", "b", "c", "d"]
    assert recall_any(ranked, {"c", "z"}, 2) == 0.0
    assert recall_any(ranked, {"c", "z"}, 3) == 1.0
    assert recall_all(ranked, {"a", "c"}, 2) == 0.0
    assert recall_all(ranked, {"a", "c"}, 3) == 1.0
    assert recall_fraction(ranked, {"a", "c", "z"}, 3) == pytest.approx(2 / 3)
    assert recall_any(ranked, set(), 3) == 0.0
    with pytest.raises(ValueError):
        recall_all(ranked, set(), 3)


def test_ndcg_by_hand() -> None:
    # gold at ranks 2 and 3: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    expected = (1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3))
    assert ndcg_binary(["a", "b", "c"], {"b", "c"}, 3) == pytest.approx(expected)
    assert ndcg_binary(["b", "c", "a"], {"b", "c"}, 3) == pytest.approx(1.0)
    # k cuts both the ranking and the ideal: one gold in the first slot of k=1 is perfect
    assert ndcg_binary(["b", "a"], {"b", "c"}, 1) == pytest.approx(1.0)
    assert ndcg_binary(["a", "b"], {"b"}, 1) == 0.0
    assert ndcg_binary(["a"], set(), 5) == 0.0


def test_turns_collapse_to_sessions_by_best_turn() -> None:
    ranked = ["s_2_3", "s_1_1", "s_2_1", "answer_x_1_4"]
    assert session_of("answer_x_1_4") == "answer_x_1"
    assert first_seen(ranked, session_of) == ["s_2", "s_1", "answer_x_1"]


def _question(qid: str, gold_sessions: list[str]) -> dict:
    sessions = {
        "s_a": [
            {
                "role": "user",
                "content": "I adopted a beagle named Pixel last spring.",
                "has_answer": "s_a" in gold_sessions,
            },
            {"role": "assistant", "content": "Congratulations on adopting Pixel!"},
        ],
        "s_b": [
            {"role": "user", "content": "Can you suggest a pasta recipe with mushrooms?"},
            {"role": "assistant", "content": "Try a creamy mushroom tagliatelle."},
            {"role": "user", "content": "   "},  # empty: skipped
        ],
        "s_c": [
            {"role": "user", "content": "My commute to the office takes 40 minutes by train."},
            {
                "role": "assistant",
                "content": "That is a long ride; podcasts help.",
                "has_answer": "s_c" in gold_sessions,
            },
        ],
    }
    return {
        "question_id": qid,
        "question_type": "single-session-user",
        "question": "What is the name of my dog?",
        "question_date": "2023/05/30 (Tue) 10:00",
        "answer": "Pixel",
        "answer_session_ids": gold_sessions,
        "haystack_session_ids": list(sessions),
        "haystack_dates": ["2023/05/28 (Sun) 19:47", "2023/05/29 (Mon) 08:00", "2023/05/29 (Mon) 09:30"],
        "haystack_sessions": list(sessions.values()),
    }


def _write(path: Path, questions: list[dict]) -> Path:
    path.write_text(json.dumps(questions))
    return path


def test_load_keys_roles_and_missing_has_answer(tmp_path: Path) -> None:
    (q,) = load_longmemeval(_write(tmp_path / "s.json", [_question("q1", ["s_a"])]))
    assert [s.session_id for s in q.sessions] == ["s_a", "s_b", "s_c"]
    assert [t.key for t in q.turns("user")] == ["s_a_1", "s_b_1", "s_c_1"]  # 1-based, empty turn dropped
    assert [t.key for t in q.turns("all")] == ["s_a_1", "s_a_2", "s_b_1", "s_b_2", "s_c_1", "s_c_2"]
    assert [t.has_answer for t in q.turns("all")] == [True, False, False, False, False, False]
    assert q.sessions[0].when is not None and q.sessions[0].when.hour == 19
    assert parse_date("not a date") is None
    with pytest.raises(InvalidInputError):
        load_longmemeval(_write(tmp_path / "bad.json", [{"question_id": "x"}]))


def test_question_metrics_and_abs_skipping(tmp_path: Path) -> None:
    q, q_abs = load_longmemeval(
        _write(tmp_path / "s.json", [_question("q1", ["s_a", "s_c"]), _question("q2_abs", ["s_a"])])
    )
    ranked = ["s_b_1", "s_a_1", "s_c_1"]
    m = question_metrics(q, ranked, [1, 2, 3], "user")
    assert m["session_recall_all@2"] == 0.0 and m["session_recall_all@3"] == 1.0
    assert m["session_recall_any@2"] == 1.0
    assert m["session_ndcg_any@3"] == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    # user-side gold is s_a_1 only (s_c's evidence is an assistant turn, not indexed with roles=user)
    assert m["turn_recall_any@1"] == 0.0 and m["turn_recall_any@2"] == 1.0
    m_all = question_metrics(q, ["s_c_2", "s_b_1"], [1], "all")
    assert m_all["turn_recall_any@1"] == 1.0 and m_all["turn_recall_all@1"] == 0.0
    assert question_metrics(q_abs, ranked, [1, 2], "user") == {}


def test_cli_writes_valid_results(tmp_path: Path, embedder) -> None:
    s_file = _write(
        tmp_path / "s.json",
        [_question("q1", ["s_a"]), _question("q2", ["s_c"]), _question("q3_abs", ["s_a"])],
    )
    oracle = _write(tmp_path / "o.json", [_question("o1", ["s_a"])])
    out = tmp_path / "out.json"
    result = runner.invoke(
        app,
        [
            "bench", "longmemeval", "--systems", "memq,memq-lexical", "--data", str(s_file), "--oracle", str(oracle),
            "--k", "1,2", "--search-k", "5", "--out", str(out), "--cache", str(tmp_path / "cache.sqlite"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rf = read_results(out)
    assert rf.benchmark == "longmemeval" and [r.system for r in rf.results] == ["memq", "memq-lexical"]
    assert rf.extra["embedding"]["texts"] == 3  # user turns of the shared haystack, each embedded once
    for r in rf.results:
        m = r.metrics
        assert m["session_questions"] == 2  # q3_abs skipped
        assert m["turn_questions"] == 1  # q2's only evidence is an assistant turn
        for key in (
            "session_recall_all@1",
            "session_ndcg_any@2",
            "turn_recall_any@2",
            "add_ms_p50",
            "search_ms_p95",
        ):
            assert m[key] >= 0.0
        assert m["session_recall_all@2"] <= 1.0
        assert m["ingest_turns"] == 3 and m["ingest_turns_per_s"] > 0
        assert m["records"] == 9  # 3 user turns in each of 3 spaces
    # the dog question is lexically easy: BM25 puts the beagle turn first
    lexical = rf.results[1].metrics
    assert lexical["turn_recall_any@1"] == 1.0


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    s_file = _write(tmp_path / "s.json", [_question("q1", ["s_a"])])
    for extra in (["--roles", "bots"], ["--k", "x"], ["--systems", "nope"], ["--search-k", "1", "--k", "5"]):
        result = runner.invoke(
            app,
            [
                "bench",
                "longmemeval",
                "--data",
                str(s_file),
                "--oracle-limit",
                "0",
                "--systems",
                "memq",
                *extra,
            ],
        )
        assert result.exit_code == 2, (extra, result.output)
