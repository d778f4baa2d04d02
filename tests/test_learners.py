"""Learners, credit assignment and the stream runner, on small synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from memq.errors import InvalidInputError
from memq.learn import make_learner
from memq.learn.base import Outcome, PoolItem, clipped_z, top_k
from memq.learn.contextual import ContextualLearner
from memq.learn.credit import assign_credit
from memq.learn.memrl import MemRLLearner
from memq.types import Utility
from memq_bench.ttl import Dataset, RunSpec, load_labelled_csv, run_stream


def _pool(sims: list[float], qs: list[float | None] | None = None) -> list[PoolItem]:
    qs = qs or [None] * len(sims)
    return [PoolItem(str(i), s, Utility(q=q)) for i, (s, q) in enumerate(zip(sims, qs, strict=True))]


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


def test_memrl_two_phase_and_update() -> None:
    learner = MemRLLearner(k1=3, delta=0.5, lam=0.5, q_init=0.5)
    rng = np.random.default_rng(0)
    # below the gate: nothing is shown
    assert learner.select(np.zeros(2), _pool([0.2, 0.4]), 2, rng).ids == []
    # the gate keeps 3 of 4; z-scores: 0 → 0.26, 1 → −0.35, 2 → 0.10, so high-Q record 2 passes record 1
    sel = learner.select(np.zeros(2), _pool([0.9, 0.8, 0.7, 0.1], [0.0, 0.0, 1.0, 1.0]), 2, rng)
    assert sel.ids == ["0", "2"] and sel.propensities == [1.0, 1.0]
    assert sel.scores["0"] == pytest.approx(0.5 * 1.2247 - 0.5 * 0.7071, abs=1e-3)
    # missing Q = Q_init; Q ← Q + α(r − Q)
    q, _ = learner.update_record(Utility(), 1.0)
    assert q == pytest.approx(0.5 + 0.3 * 0.5)
    q, _ = learner.update_record(Utility(q=q), 0.0)
    assert q == pytest.approx(0.65 * 0.7)


def test_memrl_epsilon_propensities_are_true_probabilities() -> None:
    learner = MemRLLearner(k1=4, delta=0.0, epsilon=0.5)
    pool = _pool([0.9, 0.8, 0.7, 0.6], [0.5, 0.5, 0.5, 0.5])
    rng = np.random.default_rng(1)
    counts: dict[str, int] = {}
    reported: dict[str, float] = {}
    n = 20_000
    for _ in range(n):
        sel = learner.select(np.zeros(2), pool, 2, rng)
        for rid, p in zip(sel.ids, sel.propensities, strict=True):
            counts[rid] = counts.get(rid, 0) + 1
            reported[rid] = p
    # greedy picks 0 and 1: P = 0.5 + 0.5·(1/2); the others: 0.5·(1/2)
    assert reported == pytest.approx({"0": 0.75, "1": 0.75, "2": 0.25, "3": 0.25})
    for rid, c in counts.items():
        assert c / n == pytest.approx(reported[rid], abs=0.02)


def test_contextual_learner_learns_that_disagreeing_records_fail() -> None:
    learner = ContextualLearner(k1=4, fit_every=20)
    rng = np.random.default_rng(0)
    good = Utility(stats={"agree": 9.0, "agree_total": 10.0})
    bad = Utility(stats={"agree": 0.5, "agree_total": 10.0})
    for _ in range(400):
        items = [PoolItem("g", 0.8, good), PoolItem("b", 0.82, bad)]
        sel = learner.select(np.zeros(2), items, 2, rng)
        credits = {"g": 1.0, "b": 0.0}
        learner.observe(Outcome(np.zeros(2), items, sel.ids, {"g", "b"}, 0.5, credits))
    assert learner.w[2] > 1.0, "agreement gets a positive weight"
    fresh_bad = PoolItem("nb", 0.85, Utility(stats={"agree": 0.0, "agree_total": 5.0}))
    fresh_good = PoolItem("ng", 0.80, Utility(stats={"agree": 5.0, "agree_total": 5.0}))
    assert learner.select(np.zeros(2), [fresh_bad, fresh_good], 1, rng).ids == ["ng"]
    clone = ContextualLearner(k1=4)
    clone.load_state_dict(learner.state_dict())
    assert clone.select(np.zeros(2), [fresh_bad, fresh_good], 2, rng).scores == pytest.approx(
        learner.select(np.zeros(2), [fresh_bad, fresh_good], 2, rng).scores
    )


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


def _confounded_stream(learner: ContextualLearner, steps: int = 300) -> None:
    """``shown`` credit where the queries with more similar pools earn less: every shown record of a
    query gets that query's reward, so similarity only predicts reward *between* queries (negatively)."""
    rng = np.random.default_rng(1)
    for step in range(steps):
        high = step % 2 == 0
        base = 0.75 if high else 0.3
        items = [PoolItem(f"{step}-{j}", base + 0.05 * rng.random(), Utility()) for j in range(4)]
        sel = learner.select(np.zeros(2), items, 2, rng)
        reward = 0.0 if high else 1.0
        credits = assign_credit(sel.ids, reward, strategy="shown")
        learner.observe(Outcome(np.zeros(2), items, sel.ids, set(), reward, credits))


def _objective(w: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float) -> float:
    p = np.clip(1.0 / (1.0 + np.exp(-(x @ w))), 1e-12, 1 - 1e-12)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum() + 0.5 * l2 * (w @ w))


def test_contextual_never_inverts_similarity_on_records_without_evidence() -> None:
    free = ContextualLearner(k1=6, fit_every=20, min_sim_weight=None)
    _confounded_stream(free)
    assert free.w[1] < -1.0, "the stream pushes an unconstrained similarity weight negative"
    sims = [0.9, 0.7, 0.5, 0.4, 0.35, 0.2]
    fresh = [PoolItem(f"f{i}", s, Utility()) for i, s in enumerate(sims)]
    rng = np.random.default_rng(0)
    assert free.select(np.zeros(2), fresh, 6, rng).ids == [f"f{i}" for i in reversed(range(6))]

    learner = ContextualLearner(k1=6, fit_every=20)
    _confounded_stream(learner)
    assert learner.w[1] >= 0.0
    for k in range(1, 7):
        assert learner.select(np.zeros(2), fresh, k, rng).ids == [f"f{i}" for i in range(k)]
    shuffled = [fresh[i] for i in (3, 0, 5, 1, 4, 2)]  # the pool's order does not matter either
    assert learner.select(np.zeros(2), shuffled, 6, rng).ids == [f"f{i}" for i in range(6)]
    # the projected fit is the constrained optimum: no feasible step improves it, the free weights
    # are stationary, and the bound is active because the objective wants w_sim below it
    state = learner.state_dict()
    x, y, w = np.asarray(state["x"]), np.asarray(state["y"]), learner.w
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    grad = x.T @ (p - y) + learner.l2 * w
    assert w[1] == 0.0 and grad[1] > 0
    assert np.abs(grad[[0, 2, 3]]).max() < 1e-3
    best = _objective(w, x, y, learner.l2)
    for d in np.random.default_rng(2).normal(size=(200, 4)) * 0.3:
        trial = w + d
        trial[1] = max(trial[1], 0.0)
        assert _objective(trial, x, y, learner.l2) >= best - 1e-9


def test_contextual_constraint_leaves_evidence_free_to_reorder() -> None:
    """The bound is on similarity alone: a record's own evidence still lifts it past a closer one."""
    learner = ContextualLearner(k1=4, fit_every=20)
    _confounded_stream(learner)
    rng = np.random.default_rng(3)
    good, bad = Utility(stats={"n": 6.0, "s": 6.0}), Utility(stats={"n": 6.0, "s": 0.0})
    for _ in range(200):
        items = [PoolItem("g", 0.5, good), PoolItem("b", 0.6, bad)]
        sel = learner.select(np.zeros(2), items, 2, rng)
        learner.observe(Outcome(np.zeros(2), items, sel.ids, {"g"}, 1.0, {"g": 1.0, "b": 0.0}))
    assert learner.w[1] >= 0.0 and learner.w[3] > 0.5
    pool = [PoolItem("far", 0.5, good), PoolItem("near", 0.6, Utility()), PoolItem("nearer", 0.65, Utility())]
    assert learner.select(np.zeros(2), pool, 3, rng).ids == ["far", "nearer", "near"]
    with pytest.raises(ValueError, match="min_sim_weight"):
        ContextualLearner(min_sim_weight=float("nan"))


def test_contextual_projects_a_stored_negative_similarity_weight() -> None:
    """A state saved before the bound (LoCoMo's w) no longer inverts the pool once loaded."""
    old = ContextualLearner(min_sim_weight=None)
    old.w = np.array([-1.84, -0.036, -0.92, 0.90])
    fresh = [PoolItem(f"f{i}", s, Utility()) for i, s in enumerate([0.6, 0.5, 0.4])]
    rng = np.random.default_rng(0)
    assert old.select(np.zeros(2), fresh, 3, rng).ids == ["f2", "f1", "f0"]
    loaded = ContextualLearner()
    loaded.load_state_dict(old.state_dict())
    assert loaded.w[1] == 0.0 and list(loaded.w[[0, 2, 3]]) == [-1.84, -0.92, 0.90]
    assert loaded.select(np.zeros(2), fresh, 3, rng).ids == ["f0", "f1", "f2"]


def test_unknown_learner_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="memrl"):
        make_learner("nope")


def _clusters(
    n_labels: int = 8, per: int = 60, dim: int = 16, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_labels, dim))
    labels = np.repeat(np.arange(n_labels), per)
    vecs = centers[labels] + 0.35 * rng.normal(size=(len(labels), dim))
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), labels


def test_stream_runner_poison_hurts_similarity_and_oracle_is_the_ceiling() -> None:
    vecs, labels = _clusters()
    results = {
        name: run_stream(RunSpec(name, 0.4, 0, 3, None), vecs, labels, 8, vecs[:50], labels[:50])
        for name in ("similarity", "oracle", "memrl", "memq")
    }
    assert results["similarity"].poisoned > 100  # ~40% of 480 writes are poisoned
    assert results["oracle"].poisoned == results["similarity"].poisoned  # same seed, same stream
    assert results["oracle"].overall > results["similarity"].overall + 0.1
    assert results["memq"].overall > results["similarity"].overall
    assert all(0 <= r.test <= 1 for r in results.values())
    clean = run_stream(RunSpec("similarity", 0.0, 0, 3, None), vecs, labels, 8)
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
    with pytest.raises(InvalidInputError, match="mode"):
        mem.search("my card is gone", policy="memq", mode="lexical")
    # link spreading and recency weighting belong to the hybrid recipe: refused, not silently dropped
    for option in ("link_weight", "recency_weight"):
        with pytest.raises(InvalidInputError, match=option):
            mem.search("my card is gone", policy="memq", **{option: 0.2})
    assert mem.search("my card is gone", k=3, link_weight=0.2).hits  # the hybrid recipe takes it
    mem.close()
