"""``memq bench locomo``: metrics by hand, evidence parsing, link spreading, and the CLI on a tiny LoCoMo-format file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq.errors import InvalidInputError
from memq.retrieve.fusion import spread_links
from memq.retrieve.pipeline import SearchOptions
from memq_bench.locomo import load_locomo
from memq_bench.locomo_bench import (
    Scored,
    aggregate,
    load_audit,
    ndcg_at_k,
    parse_conversations,
    parse_evidence,
    recall_at_k,
    run_locomo,
    turn_docs,
)
from memq_bench.results import read_results
from memq_bench.systems import MemqSystem


def test_recall_at_k_by_hand() -> None:
    ranked = ["D1:1", "D1:2", "D1:3", "D2:1"]
    assert recall_at_k(ranked, {"D1:2", "D2:1"}, 1) == 0.0
    assert recall_at_k(ranked, {"D1:2", "D2:1"}, 2) == 0.5
    assert recall_at_k(ranked, {"D1:2", "D2:1"}, 4) == 1.0
    assert recall_at_k(ranked, {"D9:9"}, 10) == 0.0


def test_ndcg_at_10_by_hand() -> None:
    # gold at ranks 2 and 3 of two gold ids: (1/log2 3 + 1/log2 4) / (1 + 1/log2 3)
    got = ndcg_at_k(["x", "a", "b"], {"a", "b"}, 10)
    assert got == pytest.approx((1 / math.log2(3) + 0.5) / (1 + 1 / math.log2(3)))
    assert ndcg_at_k(["a", "b"], {"a", "b"}, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"] * 10 + ["a"], {"a"}, 10) == 0.0


def test_aggregate_per_category_and_overall_leaves_category_5_apart() -> None:
    scored = [
        Scored(1, frozenset({"a"}), ("a", "b")),  # recall@1 = 1
        Scored(4, frozenset({"a", "b"}), ("x", "a")),  # recall@1 = 0, recall@5 = 0.5
        Scored(5, frozenset({"z"}), ("z",)),  # adversarial: apart
    ]
    m = aggregate(scored, [1, 5])
    assert m["recall@1"] == pytest.approx(0.5)
    assert m["recall@5"] == pytest.approx(0.75)
    assert m["recall@1/cat1"] == 1.0 and m["recall@5/cat4"] == 0.5
    assert m["recall@5/cat5"] == 1.0 and m["questions"] == 2 and m["questions/cat5"] == 1
    assert "recall@5/cat2" not in m


def test_parse_evidence_counts_malformed_and_dangling() -> None:
    turns = {"D1:3", "D8:6", "D9:17", "D11:26"}
    ev = parse_evidence(["D1:3", "D8:6; D9:17", "D:11:26", "D", "D30:5"], turns)
    assert ev.gold == {"D1:3", "D8:6", "D9:17", "D11:26"}
    assert ev.malformed == 3  # the joined pair, the extra colon, the bare "D"
    assert ev.dangling == 1  # D30:5 names no turn


def test_parse_conversations() -> None:
    assert parse_conversations(None, 10) == tuple(range(10))
    assert parse_conversations("1-3,7", 10) == (0, 1, 2, 6)
    for bad in ("0", "11", "2-1", "x"):
        with pytest.raises(InvalidInputError):
            parse_conversations(bad, 10)


def test_spread_links_gives_a_share_of_the_best_linked_neighbour_both_ways() -> None:
    scores = {"a": 1.0, "b": 0.2, "c": 0.4, "d": 0.1}
    got = spread_links(scores, {"b": ["a"], "c": ["b"], "d": ["gone"]}, 0.5)
    assert got["a"] == pytest.approx(1.0 + 0.5 * 0.2)  # b links to a: read both ways
    assert got["b"] == pytest.approx(0.2 + 0.5 * 1.0)  # best of a (1.0) and c (0.4)
    assert got["c"] == pytest.approx(0.4 + 0.5 * 0.2)
    assert got["d"] == 0.1  # a link leaving the pool gives nothing


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_search_spreads_scores_along_links_on_both_stores(db_url: str, embedder) -> None:
    from memq import Memory
    from memq.types import Link, NewRecord

    with Memory(db_url, embedder=embedder, scope="t") as mem:
        asked = mem.add("Caroline: How long have you been into pottery?")
        reply = mem.add(
            NewRecord(
                text="Melanie: Seven years now, it calms me.", links=[Link(target=asked.id, type="follows")]
            )
        )
        mem.add(["Melanie: We went camping by the lake.", "Caroline: The parade was fun."])
        query = "How long has Melanie been into pottery?"
        plain = {h.record.id: h.score for h in mem.search(query, k=10, link_weight=0).hits}
        spread = {h.record.id: h.score for h in mem.search(query, k=10).hits}
        ranked = [h.record.id for h in mem.search(query, k=10).hits]
    assert spread[reply.id] == pytest.approx(plain[reply.id] + 0.5 * plain[asked.id])
    assert spread[asked.id] == pytest.approx(plain[asked.id] + 0.5 * plain[reply.id])
    others = set(plain) - {asked.id, reply.id}
    assert all(spread[o] == pytest.approx(plain[o]) for o in others)  # no links, no change
    assert ranked[:2] == [asked.id, reply.id]


def test_default_search_options_are_the_measured_recipe() -> None:
    opts = SearchOptions()
    assert (opts.fusion, opts.weights, opts.link_weight) == ("weighted", {"dense": 0.4, "lexical": 0.6}, 0.5)
    with pytest.raises(ValueError):
        SearchOptions(link_weight=1.5)


# -- a tiny LoCoMo-format file --------------------------------------------------------------------


def _tiny_locomo(path: Path) -> Path:
    def conv(name: str, a: str, b: str, topic: str) -> dict:
        return {
            "speaker_a": a,
            "speaker_b": b,
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": a, "dia_id": "D1:1", "text": f"Hi {b}! I started {topic} lessons last week."},
                {"speaker": b, "dia_id": "D1:2", "text": "That's great, how is it going?"},
                {"speaker": a, "dia_id": "D1:3", "text": "My teacher is called Marta and she is patient."},
            ],
            "session_2_date_time": "10:00 am on 20 June, 2023",
            "session_2": [
                {"speaker": b, "dia_id": "D2:1", "text": "I adopted a puppy named Biscuit!"},
                {
                    "speaker": a,
                    "dia_id": "D2:2",
                    "text": "Look at this",
                    "blip_caption": "a photo of a small brown dog",
                },
            ],
        }

    items = []
    for i, (a, b, topic) in enumerate([("Ann", "Bo", "piano"), ("Cy", "Di", "violin")]):
        items.append(
            {
                "sample_id": f"conv-{i}",
                "conversation": conv(f"conv-{i}", a, b, topic),
                "qa": [
                    {
                        "question": f"What lessons did {a} start?",
                        "answer": topic,
                        "evidence": ["D1:1"],
                        "category": 4,
                    },
                    {
                        "question": f"What is the name of {b}'s puppy?",
                        "answer": "Biscuit",
                        "evidence": ["D2:1"],
                        "category": 1,
                    },
                    {
                        "question": "Who is the teacher?",
                        "answer": "Marta",
                        "evidence": ["D1:3; D1:1"],
                        "category": 2,
                    },
                    {"question": "No evidence here", "answer": "x", "evidence": [], "category": 3},
                    {
                        "question": "What pet does the cat own?",
                        "adversarial_answer": "none",
                        "evidence": ["D2:1"],
                        "category": 5,
                    },
                ],
            }
        )
    path.write_text(json.dumps(items))
    return path


def _tiny_audit(path: Path) -> Path:
    path.write_text(
        json.dumps(
            [
                {"question_id": "locomo_0_qa0", "error_type": "WRONG_CITATION", "correct_evidence": ["D1:3"]},
                {"question_id": "locomo_0_qa1", "error_type": "HALLUCINATION", "correct_evidence": ["D1:2"]},
            ]
        )
    )
    return path


def test_turn_docs_link_each_turn_to_the_previous_turn_of_its_session(tmp_path: Path) -> None:
    conv = load_locomo(_tiny_locomo(tmp_path / "l.json"))[0]
    docs = turn_docs(conv)
    assert [d.key for d in docs] == ["D1:1", "D1:2", "D1:3", "D2:1", "D2:2"]
    assert [d.meta.get("follows") for d in docs] == [None, "D1:1", "D1:2", None, "D2:1"]
    assert docs[0].text.startswith("Ann (08 May 2023): ")
    assert "[shares a photo: a photo of a small brown dog]" in docs[4].text


def test_memq_system_stores_follows_links(tmp_path: Path, embedder) -> None:
    conv = load_locomo(_tiny_locomo(tmp_path / "l.json"))[0]
    system = MemqSystem("memq", embedder, workdir=tmp_path / "db")
    try:
        for doc in turn_docs(conv):
            system.add("s", [doc])
        records = {
            r.metadata["key"]: r for r in system.memory.iter(scope={"tenant": "bench", "session": "s"})
        }
        assert [(ln.type, records["D1:2"].links[0].target) for ln in records["D1:2"].links] == [
            ("follows", records["D1:1"].id)
        ]
        assert records["D2:1"].links == [] and "follows" not in records["D1:2"].metadata
    finally:
        system.close()


def test_memq_system_resolves_follows_links_inside_one_batch(tmp_path: Path, embedder) -> None:
    conv = load_locomo(_tiny_locomo(tmp_path / "l.json"))[0]
    system = MemqSystem("memq", embedder, workdir=tmp_path / "db")
    try:
        system.add("s", turn_docs(conv))  # one add: the turns a doc follows are in the same batch
        records = {
            r.metadata["key"]: r for r in system.memory.iter(scope={"tenant": "bench", "session": "s"})
        }
        assert [(ln.type, ln.target) for ln in records["D1:2"].links] == [("follows", records["D1:1"].id)]
        assert [(ln.type, ln.target) for ln in records["D2:2"].links] == [("follows", records["D2:1"].id)]
        assert records["D2:1"].links == []
    finally:
        system.close()


def test_load_audit_keeps_wrong_citations_only(tmp_path: Path) -> None:
    assert load_audit(_tiny_audit(tmp_path / "a.json")) == {(0, 0): ("D1:3",)}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(InvalidInputError):
        load_audit(tmp_path / "bad.json")


def test_run_locomo_counts_evidence_problems_and_scores_the_audit_line(tmp_path: Path, embedder) -> None:
    data = _tiny_locomo(tmp_path / "l.json")
    rf = run_locomo(["memq"], embedder, data, audit_path=_tiny_audit(tmp_path / "a.json"), ks=[1, 5])
    default, audit = rf.results
    assert (default.variant, audit.variant) == ("default", "audit")
    m = default.metrics
    assert m["malformed_evidence"] == 2 and m["skipped_no_evidence"] == 2
    assert m["questions"] == 6 and m["questions/cat5"] == 2
    assert m["llm_calls"] == 0 and m["records"] == 10 and m["search_ms_p50"] > 0
    assert audit.metrics["audit_corrected"] == 1
    # 5 turns per conversation and dense candidates cover them all: every gold id is in the top 5
    assert m["recall@5"] == 1.0
    assert {"recall@1", "recall@10", "ndcg@10", "recall@5/cat4"} <= set(m)


def test_cli_writes_a_valid_results_file(tmp_path: Path) -> None:
    from memq.cli import app

    data = _tiny_locomo(tmp_path / "l.json")
    _tiny_audit(tmp_path / "locomo10_audit_errors.json")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "locomo",
            "--systems",
            "memq,memq-dense",
            "--data",
            str(data),
            "--out",
            str(out),
            "--k",
            "1,5",
            "--variants",
            "default,audit",
            "--cache",
            str(tmp_path / "cache.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    rf = read_results(out)
    assert rf.benchmark == "locomo"
    assert [(r.system, r.variant) for r in rf.results] == [
        ("memq", "default"),
        ("memq", "audit"),
        ("memq-dense", "default"),
        ("memq-dense", "audit"),
    ]
    assert all(r.dataset == "locomo10" and r.versions.get("memq") for r in rf.results)
    assert 0.0 <= rf.results[0].metrics["recall@1"] <= rf.results[0].metrics["recall@5"] <= 1.0
    bad = CliRunner().invoke(app, ["bench", "locomo", "--systems", "nope", "--data", str(data)])
    assert bad.exit_code == 2 and "unknown system" in bad.output


def test_online_variant_trains_on_the_first_conversations_and_compares_without_training(
    tmp_path: Path, embedder
) -> None:
    data = _tiny_locomo(tmp_path / "l.json")
    with pytest.raises(InvalidInputError, match="online variant"):
        run_locomo(["memq-memrl"], embedder, data, variants=["online"])  # 2 conversations, 5 to train
    rf = run_locomo(
        ["memq-memrl", "memq"],
        embedder,
        data,
        variants=["online"],
        online_train=1,
        ks=[1, 5],
        seeds=(0, 1),
        promotions=("guarded",),
    )
    # fixed recipes have no online variant; a learner: the recipe alone, each seed, their mean
    assert [r.variant for r in rf.results] == ["online-baseline", "online/seed0", "online/seed1", "online"]
    base, seed0, seed1, learned = rf.results
    assert {r.system for r in rf.results} == {"memq-memrl"}
    assert learned.config["train_conversations"] == [1] and base.config["eval_conversations"] == [2]
    assert learned.metrics["train_questions"] == 4  # conversation 1's questions with evidence
    assert 0.0 <= learned.metrics["train_reward_mean"] <= 1.0
    assert learned.metrics["recall@5"] == pytest.approx(
        (seed0.metrics["recall@5"] + seed1.metrics["recall@5"]) / 2
    )
    assert learned.metrics["recall@5/gain"] == pytest.approx(
        learned.metrics["recall@5"] - base.metrics["recall@5"]
    )
    # four feedbacks cannot promote a learner: the recipe ranked every evaluation search
    assert learned.metrics["promoted"] == 0.0 and learned.metrics["served_share"] == 0.0
    assert learned.metrics["recall@5"] == pytest.approx(base.metrics["recall@5"])
