"""memq bench longmemeval --variants online: the split, the citing agent's evidence, the learner runs
against the recipe alone, and the CLI, on a tiny LongMemEval-shaped file with the real embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memq.cli import app
from memq.errors import InvalidInputError
from memq_bench.lme_online import evidence, run_online, split, summarize
from memq_bench.longmemeval import load_longmemeval
from memq_bench.results import read_results

runner = CliRunner()

# (question, the user's fact it asks about, unrelated chatter), one haystack per question
TOPICS = [
    ("What is the name of my dog?", "I adopted a beagle named Pixel last spring.", "Any tips for a sourdough starter?"),
    ("How long is my commute?", "My commute to the office takes 40 minutes by train.", "Which sci-fi novels are classics?"),
    ("Which instrument am I learning?", "I started cello lessons on Tuesday evenings.", "How do I descale a kettle?"),
    ("Where did I go on holiday?", "We spent a week hiking in the Dolomites in July.", "What is a good stretching routine?"),
    ("What car do I drive?", "I finally bought a used green Subaru Outback.", "Explain compound interest briefly."),
    ("What is my sister's job?", "My sister works as a paediatric nurse in Leeds.", "Suggest a name for a houseplant."),
]  # fmt: skip


def _question(i: int, *, abstention: bool = False, assistant_evidence: bool = False, extra: int = 0) -> dict:
    question, fact, chatter = TOPICS[i % len(TOPICS)]
    qid = f"q{i}" + ("_abs" if abstention else "")
    answer_session = f"s{i}_fact"
    fact_session = [
        {"role": "user", "content": fact, "has_answer": not abstention and not assistant_evidence},
        {"role": "assistant", "content": "Thanks for telling me.", "has_answer": assistant_evidence},
        {"role": "user", "content": f"Also, question {i}: what should I cook tonight?"},
    ]
    other = [
        {"role": "user", "content": chatter},
        {"role": "assistant", "content": "Here is an idea."},
    ]
    for j in range(extra):  # more user turns: more shown candidates per search
        note = TOPICS[(i + j + 1) % len(TOPICS)][2]
        other.append({"role": "user", "content": f"Haystack {i}, note {j}: {note}"})
    if i % 3 == 0:  # a near-duplicate of the question that is not the evidence: hard at k = 1
        other.append({"role": "user", "content": f"Not the answer: {question.lower()} I keep forgetting."})
    return {
        "question_id": qid,
        "question_type": "single-session-user",
        "question": question,
        "question_date": "2023/05/30 (Tue) 10:00",
        "answer": "x",
        "answer_session_ids": [answer_session],
        "haystack_session_ids": [f"s{i}_other", answer_session],
        "haystack_dates": ["2023/05/28 (Sun) 19:47", "2023/05/29 (Mon) 08:00"],
        "haystack_sessions": [other, fact_session],
    }


def _file(path: Path) -> Path:
    # positions 0, 2, 4 train (q2 abstains: not asked), 1, 3, 5 evaluate; q4's evidence is an assistant turn
    rows = [_question(i, abstention=i == 2, assistant_evidence=i == 4) for i in range(len(TOPICS))]
    path.write_text(json.dumps(rows))
    return path


def test_split_alternates_and_evidence_falls_back_to_answer_sessions(tmp_path: Path) -> None:
    qs = load_longmemeval(_file(tmp_path / "s.json"))
    train, test = split(qs)
    assert [q.question_id for q in train] == ["q0", "q2_abs", "q4"]
    assert [q.question_id for q in test] == ["q1", "q3", "q5"]
    assert evidence(qs[0], "user") == {"s0_fact_1"}  # the has_answer turn only
    # q4's has_answer turn is the assistant's: with user turns indexed, the answer session's user turns
    assert evidence(qs[4], "user") == {"s4_fact_1", "s4_fact_3"}
    assert evidence(qs[4], "all") == {"s4_fact_2"}
    assert evidence(qs[2], "user") == frozenset()  # abstention: nothing to cite


def test_summarize_by_hand() -> None:
    seeds = [
        {"session_recall_all@5": 0.5, "turn_recall_any@5": 1.0, "promoted": 0.0, "only_here": 1.0},
        {"session_recall_all@5": 1.0, "turn_recall_any@5": 0.5, "promoted": 1.0},
    ]
    base = {"session_recall_all@5": 0.25, "turn_recall_any@5": 0.75, "promoted": 0.0}
    got = summarize(seeds, base)
    assert got["session_recall_all@5"] == pytest.approx(0.75)
    assert got["session_recall_all@5/gain"] == pytest.approx(0.5)
    assert got["turn_recall_any@5/gain"] == pytest.approx(0.0)
    assert got["session_recall_all@5/std"] == pytest.approx(0.25)
    assert got["promoted"] == pytest.approx(0.5) and "promoted/gain" not in got  # no gain of a count
    assert "only_here" not in got  # a metric one seed lacks has no mean


def test_online_learners_against_the_recipe_on_the_held_out_half(tmp_path: Path, embedder) -> None:
    qs = load_longmemeval(_file(tmp_path / "s.json"))
    results = run_online(
        "memq-memq", embedder, qs, [1, 2], search_k=6, seeds=(0, 1), promotions=("guarded", "always")
    )
    assert [r.variant for r in results] == [
        "online-baseline",
        "online/seed0",
        "online/seed1",
        "online",
        "online-always/seed0",
        "online-always/seed1",
        "online-always",
    ]
    by = {r.variant: r for r in results}
    base = by["online-baseline"].metrics
    train_ids, eval_ids = (set(by["online"].config[k]) for k in ("train_questions", "eval_questions"))
    assert not train_ids & eval_ids and train_ids | eval_ids == {q.question_id for q in qs}
    assert base["session_questions"] == 3 == base["turn_questions"]  # the evaluation half only
    assert base["records"] == 6 * 3 + 2  # every haystack's user turns: training ones ingested too
    for r in results:
        for key, v in r.metrics.items():
            if (
                key.startswith(("session_recall", "turn_recall", "session_ndcg", "turn_ndcg"))
                and "/" not in key
            ):
                assert 0.0 <= v <= 1.0, (r.variant, key)
    for mode in ("online", "online-always"):
        seeds = [by[f"{mode}/seed{s}"].metrics for s in (0, 1)]
        mean = by[mode].metrics
        for seed in seeds:
            assert seed["train_questions"] == 2  # q0 and q4; the abstention is not asked
            assert seed["feedbacks"] == 2 and seed["eval_feedbacks"] == 0  # frozen evaluation
            assert 0.0 <= seed["train_reward_mean"] <= 1.0
        for key in ("session_recall_all@2", "turn_recall_any@1", "session_ndcg_any@2"):
            assert mean[key] == pytest.approx((seeds[0][key] + seeds[1][key]) / 2)
            assert mean[f"{key}/gain"] == pytest.approx(mean[key] - base[key])
        assert mean["session_recall_all@1/std"] >= 0.0
        assert mean["trained"] == 0.0  # memq's learner refits every 50 feedbacks: never here
    # two feedbacks cannot promote a guarded learner: the recipe ranked every evaluation search
    guarded = by["online"].metrics
    assert guarded["promoted"] == 0.0 and guarded["served_share"] == 0.0
    for key in ("session_recall_all@1", "session_recall_all@2", "turn_recall_any@1"):
        assert guarded[key] == pytest.approx(base[key])
    # always: the learner ranked them all
    assert by["online-always"].metrics["promoted"] == 1.0
    assert by["online-always"].metrics["served_share"] == 1.0


def test_fit_every_lets_the_learner_fit_on_few_feedbacks(tmp_path: Path, embedder) -> None:
    # 14 questions, 6 user turns per haystack: 7 training searches show 5 each (35 rows; a fit needs 30)
    path = tmp_path / "s.json"
    path.write_text(json.dumps([_question(i, extra=3) for i in range(14)]))
    qs = load_longmemeval(path)
    results = run_online(
        "memq-memq", embedder, qs, [1, 5], search_k=6, seeds=(0,), promotions=("always",), fit_every=1
    )
    assert [r.variant for r in results] == [
        "online-baseline",
        "online-always-fit1/seed0",
        "online-always-fit1",
    ]
    seed = results[1].metrics
    assert results[1].config["fit_every"] == 1
    assert seed["train_questions"] == 7 and seed["feedbacks"] == 7 and seed["eval_feedbacks"] == 0
    assert seed["trained"] == 1.0 and seed["served_share"] == 1.0  # fitted, and it ranked every evaluation
    assert results[2].metrics["session_recall_all@5/gain"] == pytest.approx(
        seed["session_recall_all@5"] - results[0].metrics["session_recall_all@5"]
    )
    with pytest.raises(InvalidInputError, match="fit_every"):
        run_online("memq-memq", embedder, qs, [1], search_k=5, seeds=(0,), fit_every=0)


def test_online_needs_both_halves(tmp_path: Path, embedder) -> None:
    qs = load_longmemeval(_file(tmp_path / "s.json"))
    with pytest.raises(InvalidInputError, match="online variant"):
        run_online("memq-memq", embedder, qs[:1], [1], search_k=5, seeds=(0,))
    with pytest.raises(InvalidInputError, match="search_k"):
        run_online("memq-memq", embedder, qs, [5], search_k=2, seeds=(0,))


def test_cli_online_variant(tmp_path: Path) -> None:
    s_file = _file(tmp_path / "s.json")
    out = tmp_path / "out.json"
    common = ["bench", "longmemeval", "--data", str(s_file), "--k", "1,2", "--search-k", "6"]
    common += ["--cache", str(tmp_path / "cache.sqlite"), "--out", str(out)]
    result = runner.invoke(
        app,
        [
            *common,
            "--variants",
            "online",
            "--systems",
            "memq-memq,memq",
            "--seeds",
            "1",
            "--promotion",
            "guarded",
        ],
    )
    assert result.exit_code == 0, result.output
    rf = read_results(out)
    assert [(r.system, r.variant) for r in rf.results] == [
        ("memq-memq", "online-baseline"),
        ("memq-memq", "online/seed0"),
        ("memq-memq", "online"),
    ]
    assert rf.args["variants"] == ["online"] and rf.args["seeds"] == 1
    assert any("memq" in note for note in rf.extra["notes"])  # the fixed recipe was skipped, and said so
    assert "session_recall_all@1/gain" in rf.results[-1].metrics
    for extra, message in (
        (["--variants", "online", "--systems", "memq"], "learner preset"),
        (["--variants", "offline", "--systems", "memq-memq"], "--variants"),
        (["--variants", "online", "--systems", "memq-memq", "--promotion", "sometimes"], "--promotion"),
    ):
        bad = runner.invoke(app, [*common, *extra])
        assert bad.exit_code == 2 and message in bad.output, (extra, bad.output)
