"""Learners, credit assignment and the stream runner, on small synthetic data with known answers.

Learners rank a :class:`Window` (the recipe's top candidates and their feature rows) and fit on
:class:`TrainingData` (logged rows); here both are built by hand so each rule can be checked exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

from memq.errors import InvalidInputError
from memq.learn import LEARNERS, make_learner
from memq.learn.base import PoolItem, TrainingData, Window, clipped_z, top_k
from memq.learn.contextual import ContextualLearner, cold_weights
from memq.learn.credit import assign_credit
from memq.learn.memrl import MemRLLearner
from memq.retrieve.features import COLUMN, NAMES
from memq.types import Utility
from memq_bench.ttl import Dataset, RunSpec, load_labelled_csv, run_stream


def _window(rows: list[dict[str, float]]) -> Window:
    """A window in the recipe's order: rows of named features (the rest 0, bias 1)."""
    x = np.zeros((len(rows), len(NAMES)))
    x[:, COLUMN["bias"]] = 1.0
    for i, row in enumerate(rows):
        for name, value in row.items():
            x[i, COLUMN[name]] = value
    return Window([str(i) for i in range(len(rows))], x)


def _data(rows: list[dict[str, float]], y: list[float], groups: list[int] | None = None) -> TrainingData:
    w = _window(rows)
    g = np.asarray(groups if groups is not None else range(len(rows)), dtype=np.int64)
    return TrainingData(w.x, np.asarray(y, float), np.ones(len(y)), g, w.ids, [None] * (int(g.max()) + 1))


def test_credit_strategies() -> None:
    assert assign_credit(["a", "b"], 1.0, strategy="shown") == {"a": 1.0, "b": 1.0}
    assert assign_credit(["a", "b"], 1.0, strategy="used", used=["b"]) == {"b": 1.0}
    assert assign_credit(["a", "b", "c"], 1.0, strategy="rank") == pytest.approx(
        {"a": 1.0, "b": 1 / np.log2(3), "c": 0.5}
    )
    with pytest.raises(InvalidInputError):
        assign_credit(["a"], 1.0, strategy="used")
    with pytest.raises(InvalidInputError):
        assign_credit(["a"], 1.0, strategy="used", used=["zzz"])
    with pytest.raises(InvalidInputError):
        assign_credit(["a"], float("nan"))


def test_zscore_and_topk_edge_cases() -> None:
    assert clipped_z(np.array([0.5, 0.5])).tolist() == [0.0, 0.0]  # std 0 → the term drops out
    assert clipped_z(np.array([0.0, 100.0]), mean=0.0, std=1.0).tolist() == [0.0, 3.0]
    assert top_k(np.array([0.1, 0.9, 0.9, 0.5]), 3).tolist() == [1, 2, 3]
    assert top_k(np.array([]), 3).tolist() == []


@pytest.mark.parametrize("name", LEARNERS)
def test_every_learner_ranks_in_the_recipes_order_before_it_has_learned(name: str) -> None:
    """Cold start: what a search returns does not change when learning is switched on."""
    learner = make_learner(name)
    rng = np.random.default_rng(0)
    base = [1.0, 0.98, 0.7, 0.7, 0.4, 0.1]  # a tie, in the recipe's order
    window = _window([{"base": b, "dense": 0.9 - i / 10} for i, b in enumerate(base)])
    for k in range(1, 7):
        assert learner.select(window, k, rng).ids == window.ids[:k]
    assert not learner.trained


def test_memrl_two_phase_and_update() -> None:
    learner = MemRLLearner(k1=3, delta=0.5, lam=0.5, q_init=0.5)
    rng = np.random.default_rng(0)
    # below the gate (dense cosine < δ): nothing is shown
    assert (
        learner.select(_window([{"base": 1.0, "dense": 0.2}, {"base": 0.5, "dense": 0.4}]), 2, rng).ids == []
    )
    # the gate and k1 keep 3 of 4; z(base): 0 → 1.22, 1 → 0, 2 → −1.22; z(q): −0.71, −0.71, 1.41
    rows = [
        {"base": 0.9, "dense": 0.9, "q": 0.0},
        {"base": 0.8, "dense": 0.8, "q": 0.0},
        {"base": 0.7, "dense": 0.7, "q": 1.0},
        {"base": 0.6, "dense": 0.1, "q": 1.0},
    ]
    sel = learner.select(_window(rows), 2, rng)
    assert sel.ids == ["0", "2"] and sel.propensities == [1.0, 1.0]
    assert sel.scores["0"] == pytest.approx(0.5 * 1.2247 - 0.5 * 0.7071, abs=1e-3)
    assert "3" not in sel.scores  # gated out
    # missing Q = Q_init; Q ← Q + α(r − Q)
    q, _ = learner.update_record(Utility(), 1.0)
    assert q == pytest.approx(0.5 + 0.3 * 0.5)
    q, _ = learner.update_record(Utility(q=q), 0.0)
    assert q == pytest.approx(0.65 * 0.7)
    # with fixed corpus statistics, the similarity term is the dense cosine's z (the released code)
    fixed = MemRLLearner(lam=0.0, sim_mean=0.5, sim_std=0.1)
    assert fixed.score(_window(rows)).tolist() == pytest.approx([3.0, 3.0, 2.0, -3.0])


def test_memrl_epsilon_propensities_are_true_probabilities() -> None:
    learner = MemRLLearner(k1=4, epsilon=0.5)
    window = _window([{"base": b, "q": 0.5} for b in (0.9, 0.8, 0.7, 0.6)])
    rng = np.random.default_rng(1)
    counts: dict[str, int] = {}
    reported: dict[str, float] = {}
    n = 20_000
    for _ in range(n):
        sel = learner.select(window, 2, rng)
        for rid, p in zip(sel.ids, sel.propensities, strict=True):
            counts[rid] = counts.get(rid, 0) + 1
            reported[rid] = p
    # greedy picks 0 and 1: P = 0.5 + 0.5·(1/2); the others: 0.5·(1/2)
    assert reported == pytest.approx({"0": 0.75, "1": 0.75, "2": 0.25, "3": 0.25})
    for rid, c in counts.items():
        assert c / n == pytest.approx(reported[rid], abs=0.02)


def test_contextual_learner_learns_that_disagreeing_records_fail() -> None:
    learner = ContextualLearner()
    rows, y = [], []
    for _ in range(200):  # a disagreeing record ranked first fails, an agreeing one below it helps
        rows += [{"base": 1.0, "agree": 0.05}, {"base": 0.9, "agree": 0.9}]
        y += [0.0, 1.0]
    learner.fit(_data(rows, y))
    assert learner.trained and learner.w[COLUMN["agree"]] > 1.0, "agreement gets a positive weight"
    fresh = _window([{"base": 1.0, "agree": 0.0}, {"base": 0.95, "agree": 1.0}])
    assert learner.select(fresh, 1, np.random.default_rng(0)).ids == ["1"]
    clone = ContextualLearner()
    clone.load_state_dict(learner.state_dict())
    assert clone.score(fresh) == pytest.approx(learner.score(fresh))


def test_contextual_learns_query_record_features_that_carry_over_to_new_records() -> None:
    """Trained on some records, it ranks records it has never seen by what their features say."""
    learner = ContextualLearner()
    rows, y = [], []
    for i in range(300):  # cited: the record that mentions the query's names, wherever it ranks
        rows += [{"base": 1.0, "names": 0.0}, {"base": 0.8, "names": 1.0}, {"base": 0.7, "names": 0.0}]
        y += [0.0, 1.0, float(i % 7 == 0)]
    learner.fit(_data(rows, y))
    unseen = _window([{"base": 1.0}, {"base": 0.9}, {"base": 0.6, "names": 1.0}])
    assert learner.select(unseen, 1, np.random.default_rng(0)).ids == ["2"]


def test_contextual_on_write_counts_agreement_both_ways() -> None:
    learner = ContextualLearner()
    new = PoolItem("n", 1.0, Utility(), answer="A")
    deltas = learner.on_write(
        new, [PoolItem("x", 0.9, Utility(), answer="A"), PoolItem("y", 0.5, Utility(), answer="B")]
    )
    assert deltas["n"] == pytest.approx({"agree": 0.9, "agree_total": 1.4})
    assert deltas["x"] == {"agree": 0.9, "agree_total": 0.9} and deltas["y"] == {
        "agree": 0.0,
        "agree_total": 0.5,
    }
    assert learner.on_write(PoolItem("z", 1.0, Utility()), []) == {}


def _confounded() -> TrainingData:
    """``shown`` credit where the queries whose candidates score higher earn less: every shown record
    of a query gets that query's reward, so the recipe's score predicts reward only *between* queries,
    negatively."""
    rng = np.random.default_rng(1)
    rows, y, groups = [], [], []
    for step in range(300):
        high = step % 2 == 0
        for _ in range(2):
            rows.append({"base": (0.75 if high else 0.3) + 0.05 * rng.random(), "evidence": 0.0})
            y.append(0.0 if high else 1.0)
            groups.append(step)
    return _data(rows, y, groups)


def _objective(w: np.ndarray, data: TrainingData, l2: float) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-(data.x @ w))), 1e-12, 1 - 1e-12)
    d = w - cold_weights()
    return float(-(data.y * np.log(p) + (1 - data.y) * np.log(1 - p)).sum() + 0.5 * l2 * (d @ d))


def test_contextual_never_inverts_the_recipe_on_records_without_evidence() -> None:
    base = COLUMN["base"]
    free = ContextualLearner(min_base_weight=None)
    free.fit(_confounded())
    assert free.w[base] < -1.0, "the confounded log pushes an unconstrained recipe weight negative"
    fresh = _window([{"base": b} for b in (1.0, 0.7, 0.5, 0.4, 0.35, 0.2)])
    rng = np.random.default_rng(0)
    assert free.select(fresh, 6, rng).ids == list(reversed(fresh.ids))

    data = _confounded()
    learner = ContextualLearner()
    learner.fit(data)
    assert learner.w[base] == 0.0  # on the bound
    for k in range(1, 7):  # at w_base = 0 the candidates tie and keep the recipe's order
        assert learner.select(fresh, k, rng).ids == fresh.ids[:k]
    # the constrained optimum: the free coordinates are stationary, the bound is active (the
    # objective wants w_base below it), and no feasible step improves the objective
    w = learner.w
    p = 1.0 / (1.0 + np.exp(-(data.x @ w)))
    grad = data.x.T @ (p - data.y) + learner.l2 * (w - cold_weights())
    assert grad[base] > 0 and np.abs(np.delete(grad, base)).max() < 1e-3
    best = _objective(w, data, learner.l2)
    for d in np.random.default_rng(2).normal(size=(200, len(NAMES))) * 0.3:
        trial = w + d
        trial[base] = max(trial[base], 0.0)
        assert _objective(trial, data, learner.l2) >= best - 1e-9


def test_contextual_constraint_leaves_evidence_free_to_reorder() -> None:
    """The bound is on the recipe's weight alone: a record's own evidence still lifts it past a closer one."""
    learner = ContextualLearner()
    rows, y = [], []
    for _ in range(200):
        rows += [{"base": 0.5, "evidence": 0.75}, {"base": 0.6, "evidence": -0.75}]
        y += [1.0, 0.0]
    learner.fit(_data(rows, y))
    assert learner.w[COLUMN["base"]] >= 0.0 and learner.w[COLUMN["evidence"]] > 0.5
    pool = _window([{"base": 0.65}, {"base": 0.6}, {"base": 0.5, "evidence": 0.75}])
    assert learner.select(pool, 3, np.random.default_rng(3)).ids == ["2", "0", "1"]
    with pytest.raises(ValueError, match="min_base_weight"):
        ContextualLearner(min_base_weight=float("nan"))


def test_contextual_ignores_a_state_of_an_older_format() -> None:
    """A state saved by an older memq (other features) leaves the learner cold rather than misread."""
    learner = ContextualLearner()
    learner.load_state_dict({"w": [-1.84, -0.036, -0.92, 0.90], "cov": [], "x": [], "y": []})
    assert not learner.trained and learner.w.tolist() == cold_weights().tolist()


def test_unknown_learner_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="memrl"):
        make_learner("nope")


def _clusters(
    n_labels: int = 8, per: int = 60, dim: int = 16, seed: int = 0
) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_labels, dim))
    labels = np.repeat(np.arange(n_labels), per)
    vecs = centers[labels] + 0.35 * rng.normal(size=(len(labels), dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    texts = [f"message {i}" for i in range(len(labels))]
    return texts, vecs.astype(np.float32), labels


def test_stream_runner_poison_hurts_similarity_and_oracle_is_the_ceiling(tmp_path) -> None:
    texts, vecs, labels = _clusters()
    serve = {"promotion": "always", "explore": 0.0}  # the learner ranks from its first fit
    results = {
        name: run_stream(
            RunSpec(name, 0.4, 0, 3, None, learning=serve if name in ("memq", "memrl") else {}),
            "synthetic",
            texts,
            vecs,
            labels,
            8,
            texts[:50],
            vecs[:50],
            labels[:50],
            workdir=tmp_path,
        )
        for name in ("similarity", "oracle", "memrl", "memq")
    }
    assert results["similarity"].poisoned > 100  # ~40% of 480 writes are poisoned
    assert results["oracle"].poisoned == results["similarity"].poisoned  # same seed, same stream
    assert results["oracle"].overall > results["similarity"].overall + 0.1
    assert results["memq"].overall > results["similarity"].overall
    assert all(r.ms_per_step > 0 and 0 <= r.test <= 1 for r in results.values())
    clean = run_stream(
        RunSpec("similarity", 0.0, 0, 3, None), "synthetic", texts, vecs, labels, 8, workdir=tmp_path
    )
    assert clean.poisoned == 0 and clean.overall > 0.9


def test_csv_loader(tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('text,category\n"multi\nline text ",a\nsecond,b\n\n', encoding="utf-8")
    ds = load_labelled_csv(p)
    assert isinstance(ds, Dataset) and ds.texts == ["multi\nline text", "second"] and ds.labels == ["a", "b"]
    (tmp_path / "one.csv").write_text("text,label\nx,a\ny,a\n")
    with pytest.raises(InvalidInputError):
        load_labelled_csv(tmp_path / "one.csv")
    with pytest.raises(InvalidInputError):
        load_labelled_csv(tmp_path / "missing.csv")


def test_remember_experience_merges_task_keys(tmp_path, embedder) -> None:
    from memq import Memory

    mem = Memory(tmp_path / "e.db", scope="t", embedder=embedder)
    a = mem.remember_experience(
        "Transfer 100 EUR to Bob's account",
        "use the transfer API",
        "success",
        1.0,
        trajectory=["open app", "transfer"],
    )
    b = mem.remember_experience("Transfer 100 EUR to Bob's account.", "use the SEPA form", "failure", 0.0)
    c = mem.remember_experience("What is the weather in Paris?", "call the weather API", "success", 1.0)
    assert a.kind == "experience" and a.payload["task_key"] == a.id and a.version == 1
    assert a.payload["trajectory"] == ["open app", "transfer"] and a.payload["reward"] == 1.0
    assert b.payload["task_key"] == a.id and [(x.target, x.type) for x in b.links] == [(a.id, "same_task")]
    assert c.payload["task_key"] == c.id and c.links == []
    with pytest.raises(InvalidInputError):
        mem.remember_experience("task", "", "success", 1.0)
    mem.close()


def test_bench_ttl_command_on_a_small_csv(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from memq.cli import app

    rows = ["text,label"]
    for i in range(20):
        rows.append(f"how do I reset my card pin number {i},pin")
        rows.append(f"what is the exchange rate for euros today {i},rates")
    data = tmp_path / "tiny.csv"
    data.write_text("\n".join(rows) + "\n")
    out, doc = tmp_path / "r.json", tmp_path / "r.md"
    result = CliRunner().invoke(
        app,
        [
            "bench",
            "ttl",
            "--data",
            str(data),
            "--test",
            str(data),
            "--noise",
            "0,0.3",
            "--seeds",
            "2",
            "--learners",
            "similarity,memrl,memq",
            "--max-steps",
            "30",
            "--jobs",
            "1",
            "--out",
            str(out),
            "--doc",
            str(doc),
            "--cache",
            str(tmp_path / "cache.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["benchmark"] == "ttl" and report["schema_version"] == 1
    keys = {(r["system"], r["config"]["noise"]) for r in report["results"]}
    assert keys == {(n, p) for n in ("similarity", "memrl", "memq", "oracle") for p in (0.0, 0.3)}
    for r in report["results"]:
        assert {"acc_last2000", "acc_last2000_std", "acc_overall", "acc_test"} <= set(r["metrics"])
        assert r["variant"] == f"p={r['config']['noise']:g}" and r["seconds"] > 0
        assert r["config"]["steps"] == 30 and r["config"]["seeds"] == 2
        assert 0 <= r["metrics"]["acc_last2000"] <= 1
    curves = report["extra"]["curves"]
    assert {(c["system"], c["variant"]) for c in curves} == {
        (r["system"], r["variant"]) for r in report["results"]
    }
    assert all(len(c["step"]) == len(c["accuracy"]) >= 1 for c in curves)
    assert "gap closed" in doc.read_text()
    bad = CliRunner().invoke(app, ["bench", "ttl", "--data", str(data), "--learners", "nope"])
    assert bad.exit_code == 2


def test_experiences_record_agreement_with_their_neighbours(tmp_path, embedder) -> None:
    from memq import Memory

    mem = Memory(tmp_path / "agree.db", scope="t", embedder=embedder)
    tasks = [
        "I lost my card, what should I do?",
        "My card was stolen, help",
        "Card missing, how to block it?",
    ]
    good = [mem.remember_experience(t, "lost_or_stolen_card", "success", 1.0) for t in tasks]
    bad = mem.remember_experience("Someone stole my card yesterday", "exchange_rate", "failure", 0.0)

    def agreement(rid: str) -> float:
        stats = mem.get(rid).utility.stats
        return stats["agree"] / stats["agree_total"]

    assert agreement(bad.id) == 0.0  # its neighbours all answered differently
    assert all(agreement(g.id) > 0.5 for g in good)
    hits = mem.search("my card is gone", k=3, policy="memq", kinds=["experience"])
    assert len(hits.hits) == 3 and all(h.propensity == 1.0 for h in hits.hits)
    # a learner reranks whatever the recipe ranks: the recipe's options apply with a policy too
    lexical = mem.search("my card is gone", k=3, policy="memq", mode="lexical", link_weight=0.2)
    assert (lexical.policy, lexical.learner) == ("lexical", "memq")
    mem.close()
