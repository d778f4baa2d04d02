"""The learning layer on every backend: the retrieval log, feedback, credit, learner state.

The same cases run on SQLite and on PostgreSQL, through the public :class:`memq.Memory` and
:class:`memq.AsyncMemory` APIs with the real MiniLM embedder (the store is called directly only
where the case is about the store: pruning, and a plan slowed down to force two feedbacks to
overlap).
"""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memq import (
    AsyncMemory,
    ConflictError,
    InvalidInputError,
    Memory,
    MemoryConfig,
    NotFoundError,
)
from memq.errors import ExpiredError
from memq.learn.feedback import plan_feedback
from memq.learn.memrl import MemRLLearner
from memq.learn.replay import window_of
from memq.retrieve.features import FEATURE_SET, NAMES
from memq.store.base import FeedbackPlan
from memq.types import LoggedRetrieval, Utility

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)

FACTS = [
    ("Alice moved to Berlin in 2021 for a new job", {"topic": "travel"}),
    ("Bob is allergic to peanuts", {"topic": "health"}),
    ("Carol adopted a golden retriever named Max", {"topic": "pets"}),
    ("Dave runs a marathon every spring", {"topic": "sport"}),
    ("The team offsite will be in Lisbon", {"topic": "travel"}),
    ("Erin keeps two cats and a parrot at home", {"topic": "pets"}),
]
ALPHA, Q_INIT = 0.3, 0.5  # MemRL's defaults: the update rule of hybrid retrievals too
MEMRL_EXPLORE = {"memrl": {"epsilon": 0.5, "delta": 0.0, "k1": 5}}


def _serving(**learner_params: dict) -> MemoryConfig:
    """A config in which a learner serves as soon as it is asked for (no promotion test, and no
    exploration of the recipe's picks: only the learner's own propensities)."""
    return MemoryConfig(learner_params=learner_params, learning={"promotion": "always", "explore": 0.0})


@pytest.fixture
def mem(db_url: str, embedder) -> Iterator[Memory]:
    m = Memory(db_url, embedder=embedder, scope="acme")
    yield m
    m.close()


def _seed(mem: Memory) -> list[str]:
    return [r.id for r in mem.add([{"text": t, "metadata": md} for t, md in FACTS])]


def _memrl_q(credit: float, q: float = Q_INIT) -> float:
    return q + ALPHA * (credit - q)


# -- the retrieval log ----------------------------------------------------------------------------------


def test_log_keeps_query_pool_shown_policy_and_propensities(mem: Memory, embedder) -> None:
    _seed(mem)
    before = datetime.now(UTC)
    result = mem.search("Alice moved to Berlin", k=3)
    logged = mem.retrieval(result.id)
    assert isinstance(logged, LoggedRetrieval)
    assert (logged.id, logged.tenant, logged.query, logged.k) == (
        result.id,
        "acme",
        "Alice moved to Berlin",
        3,
    )
    # the recipe served (the default fusion); the configured learner (memq) trains on this search
    assert (logged.policy, logged.learner, result.learner) == ("hybrid-weighted", "memq", "memq")
    assert before - timedelta(seconds=1) <= logged.created_at <= datetime.now(UTC)
    assert logged.created_at == result.created_at
    assert [(s.id, s.rank, s.score) for s in logged.shown] == [
        (h.record.id, h.rank, h.score) for h in result.hits
    ]
    assert all(s.propensity == 1.0 for s in logged.shown) and all(h.propensity == 1.0 for h in result.hits)
    # the pool: every candidate either signal proposed, with each signal's own score
    by_id = {p.id: p for p in logged.pool}
    assert len(by_id) == len(logged.pool) == len(FACTS)  # a small store: every record is a dense candidate
    assert set(result.ids) <= set(by_id)
    assert all(p.dense is not None and -1.0 <= p.dense <= 1.0 for p in logged.pool)
    lexical = [p for p in logged.pool if p.lexical is not None]
    assert lexical and all(p.lexical > 0 for p in lexical)
    assert by_id[result.ids[0]].lexical is not None  # the Alice record matches the words too
    # the query vector round-trips as float32, exactly
    expected = np.asarray(embedder.embed_query("Alice moved to Berlin"), dtype=np.float32)
    assert np.asarray(logged.query_vector, dtype=np.float32).tobytes() == expected.tobytes()
    assert logged.embedding_model == embedder.model_id
    assert logged.feedback is None
    assert [r.id for r in mem.store.list_retrievals("acme")] == [result.id]
    # the window (the recipe's top candidates, in its order) and one logged feature row per candidate
    assert logged.window[: len(result.ids)] == result.ids and set(logged.window) == set(by_id)
    assert logged.feature_set == FEATURE_SET
    assert logged.features is not None and np.asarray(logged.features).shape == (
        len(logged.window),
        len(NAMES),
    )
    base = np.asarray(logged.features)[:, NAMES.index("base")]
    assert base[0] == 1.0 and list(base) == sorted(base, reverse=True)  # the recipe's order
    # the learner's top k as it was (cold: the recipe's), for the promotion test
    assert logged.shadow == result.ids


def test_pool_scores_round_trip_packed_and_lines_logged_before_still_read(mem: Memory, db_url: str) -> None:
    _seed(mem)
    result = mem.search("Alice moved to Berlin", k=3, explain=True)
    by_id = {p.id: p for p in mem.retrieval(result.id).pool}
    query = mem.core.query(None)
    bm25 = {c.id: c.score for c in mem.store.lexical_candidates(query, "Alice moved to Berlin", 50)}
    for hit in result.hits:  # each signal's score as the search saw it, at float32
        s, p = hit.signals, by_id[hit.record.id]
        assert p.dense == float(np.float32(s.dense))
        # raw BM25 in the log (the explanation shows it normalised)
        assert p.lexical == (None if s.lexical is None else float(np.float32(bm25[hit.record.id])))
        assert p.score == float(np.float32(s.base))
    assert any(p.lexical is None for p in by_id.values())  # NaN in the packed column reads back as None
    # a line logged before the scores were packed kept them in the pool's JSON
    old = [{"id": "a", "dense": 0.25, "score": 0.5}, {"id": "b", "lexical": 1.5}]
    if db_url.startswith("postgres"):
        import psycopg
        from psycopg.types.json import Jsonb

        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE retrievals SET pool = %s, pool_scores = NULL WHERE id = %s", (Jsonb(old), result.id)
            )
    else:
        import sqlite3

        with sqlite3.connect(db_url) as conn:
            conn.execute(
                "UPDATE retrievals SET pool = ?, pool_scores = NULL WHERE id = ?",
                (json.dumps(old), result.id),
            )
    assert [(p.id, p.dense, p.lexical, p.score) for p in mem.retrieval(result.id).pool] == [
        ("a", 0.25, None, 0.5),
        ("b", None, 1.5, None),
    ]


def test_lexical_search_logs_no_vector(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("peanuts", mode="lexical", k=2)
    logged = mem.retrieval(result.id)
    assert logged.query_vector is None and logged.embedding_model is None
    assert logged.policy == "lexical"
    assert logged.pool and all(p.dense is None and p.lexical is not None for p in logged.pool)


def test_memrl_exploration_logs_propensities_of_the_formula(db_url: str, embedder) -> None:
    config = _serving(**MEMRL_EXPLORE)
    eps = 0.5
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        seen_explore = seen_greedy = False
        queries = ["who has pets?", "travel plans", "food allergies", "sports", "where is the offsite?"]
        for query in queries * 4:  # the policy's draws are seeded (MemoryConfig.seed): deterministic
            result = mem.search(query, k=2, policy="memrl")
            logged = mem.retrieval(result.id)
            assert (logged.policy, logged.learner) == ("memrl", "memrl")
            # MemRL's phase A: the window's top k1 = 5 by the recipe that pass the gate (cosine ≥ δ = 0);
            # phase B scores them from the window's logged features, as MemRL's rule says
            window = window_of(logged)
            assert window is not None
            score = MemRLLearner(**MEMRL_EXPLORE["memrl"]).score(window)
            cand = [rid for rid, v in zip(window.ids, score, strict=True) if np.isfinite(v)]
            dense = window.col("dense")
            assert cand == [rid for rid, d in zip(window.ids, dense, strict=True) if d >= 0.0][:5]
            m, shown = len(cand), len(logged.shown)
            assert shown == 2 and m > shown
            greedy = {
                rid for rid, _ in sorted(zip(window.ids, score, strict=True), key=lambda p: -p[1])[:shown]
            }
            p_random = math.comb(m - 1, shown - 1) / math.comb(m, shown)
            for s, hit in zip(logged.shown, result.hits, strict=True):
                expected = (1 - eps) * (s.id in greedy) + eps * p_random
                assert s.propensity == pytest.approx(expected) and hit.propensity == s.propensity
                assert 0 < s.propensity < 1
            if {s.id for s in logged.shown} == greedy:
                seen_greedy = True
            else:
                seen_explore = True
        assert seen_greedy and seen_explore, "with epsilon 0.5 (seed 0) both branches occur"


def test_unknown_policy_is_refused(mem: Memory) -> None:
    _seed(mem)
    with pytest.raises(InvalidInputError):
        mem.search("anything", policy="nope")


# -- feedback and credit --------------------------------------------------------------------------------


def test_shown_credit_updates_every_shown_record(mem: Memory) -> None:
    ids = _seed(mem)
    result = mem.search("who has a dog?", k=3)
    before = datetime.now(UTC)
    fb = mem.feedback(result.id, 0.8)
    after = datetime.now(UTC)
    assert fb.credit == "shown" and fb.reward == 0.8 and fb.count == 1 and fb.used is None
    assert fb.credits == {rid: 0.8 for rid in result.ids}
    for rid in result.ids:
        u = mem.get(rid).utility
        assert u.q == pytest.approx(0.5 + 0.3 * (0.8 - 0.5))
        assert (u.n_shown, u.n_used, u.reward_sum) == (1, 0, pytest.approx(0.8))
        assert before <= u.last_feedback_at <= after
    for rid in set(ids) - set(result.ids):
        assert mem.get(rid).utility == Utility()
    logged = mem.retrieval(result.id)
    assert logged.feedback == fb


def test_used_credit_credits_only_the_used_records(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("who has a dog?", k=3)
    used, rest = result.ids[0], result.ids[1:]
    fb = mem.feedback(result.id, 1.0, used=[used])
    assert fb.credit == "used" and fb.used == [used] and fb.credits == {used: 1.0}
    u = mem.get(used).utility
    assert (u.q, u.n_shown, u.n_used, u.reward_sum) == (pytest.approx(_memrl_q(1.0)), 1, 1, 1.0)
    assert u.last_feedback_at is not None
    for rid in rest:  # shown but not credited: n_shown + 1 and nothing else
        assert mem.get(rid).utility == Utility(n_shown=1)


def test_rank_credit_discounts_by_position(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("who has a dog?", k=3)
    fb = mem.feedback(result.id, 1.0, credit="rank")
    assert fb.credit == "rank"
    for i, rid in enumerate(result.ids, start=1):
        credit = 1.0 / math.log2(i + 1)
        assert fb.credits[rid] == pytest.approx(credit)
        u = mem.get(rid).utility
        assert u.q == pytest.approx(_memrl_q(credit)) and u.reward_sum == pytest.approx(credit)
        assert (u.n_shown, u.n_used) == (1, 0)


def test_shown_credit_with_used_counts_use(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("who has a dog?", k=2)
    mem.feedback(result.id, 0.0, used=[result.ids[1]], credit="shown")
    first, second = (mem.get(rid).utility for rid in result.ids)
    assert (first.n_used, second.n_used) == (0, 1)
    assert first.q == second.q == pytest.approx(_memrl_q(0.0))


def test_memrl_policy_feedback_uses_its_update(db_url: str, embedder) -> None:
    config = _serving(memrl={"delta": 0.0, "alpha": 0.3})
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        result = mem.search("who has pets?", k=2, policy="memrl")
        mem.feedback(result.id, 1.0)
        for rid in result.ids:
            assert mem.get(rid).utility.q == pytest.approx(0.5 + 0.3 * (1.0 - 0.5))
        # the learned q reaches the next search as a feature of the window (what MemRL reranks by)
        again = mem.retrieval(mem.search("who has pets?", k=2, policy="memrl").id)
        q = dict(zip(again.window, np.asarray(again.features)[:, NAMES.index("q")], strict=True))
        assert all(q[rid] == pytest.approx(0.65) for rid in result.ids)
        assert all(q[rid] == Q_INIT for rid in again.window if rid not in result.ids)


def test_second_feedback_conflicts_unless_accumulating(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("who has a dog?", k=2)
    mem.feedback(result.id, 1.0)
    with pytest.raises(ConflictError):
        mem.feedback(result.id, 0.0)
    q1 = _memrl_q(1.0)
    assert mem.get(result.ids[0]).utility.q == pytest.approx(q1)  # the refused one changed nothing
    fb = mem.feedback(result.id, 0.0, accumulate=True)
    assert fb.count == 2 and fb.reward == pytest.approx(1.0)
    assert fb.credits == {rid: pytest.approx(1.0) for rid in result.ids}
    u = mem.get(result.ids[0]).utility
    assert u.q == pytest.approx(_memrl_q(0.0, q1))
    assert (u.n_shown, u.reward_sum) == (2, pytest.approx(1.0))
    fb3 = mem.feedback(result.id, 1.0, used=[result.ids[1]], accumulate=True)
    assert fb3.count == 3 and fb3.used == [result.ids[1]] and fb3.credit == "used"
    assert mem.retrieval(result.id).feedback == fb3


def test_unknown_retrieval_is_not_found(mem: Memory) -> None:
    _seed(mem)
    with pytest.raises(NotFoundError, match="no retrieval") as info:
        mem.feedback("0190b2a4-0000-7000-8000-000000000000", 1.0)
    assert not isinstance(info.value, ExpiredError)
    with pytest.raises(NotFoundError):
        mem.retrieval("nope")


def test_feedback_after_the_window_is_expired(db_url: str, embedder) -> None:
    window = 0.05 / 86_400  # 50 ms
    config = MemoryConfig(feedback_window_days=window)
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        result = mem.search("who has a dog?", k=2)
        time.sleep(0.2)
        with pytest.raises(ExpiredError):
            mem.feedback(result.id, 1.0)
        assert all(mem.get(rid).utility == Utility() for rid in result.ids)
        assert mem.retrieval(result.id).feedback is None
    with Memory(db_url, embedder=embedder, scope="acme") as mem:  # a 30-day window still takes it
        assert mem.feedback(result.id, 1.0).count == 1


def test_failing_plan_writes_nothing(mem: Memory) -> None:
    ids = _seed(mem)
    result = mem.search("who has a dog?", k=2)
    not_shown = next(i for i in ids if i not in result.ids)
    with pytest.raises(InvalidInputError):
        mem.feedback(result.id, 1.0, used=[not_shown])
    with pytest.raises(InvalidInputError):
        mem.feedback(result.id, float("nan"))
    with pytest.raises(InvalidInputError):
        mem.feedback(result.id, 1.0, credit="everyone")
    assert all(mem.get(rid).utility == Utility() for rid in ids)
    assert mem.retrieval(result.id).feedback is None
    assert mem.feedback(result.id, 1.0, used=[result.ids[0]]).count == 1  # not a conflict


def test_tenant_isolation(mem: Memory) -> None:
    _seed(mem)
    mem.add("Zed keeps a dog too", scope="other")
    result = mem.search("who has a dog?", k=2)
    theirs = mem.search("who has a dog?", k=2, scope="other")
    with pytest.raises(NotFoundError):
        mem.feedback(result.id, 1.0, scope="other")
    with pytest.raises(NotFoundError):
        mem.retrieval(result.id, scope="other")
    assert [r.id for r in mem.store.list_retrievals("other")] == [theirs.id]
    assert all(mem.get(rid).utility == Utility() for rid in result.ids)
    mem.feedback(theirs.id, 1.0, scope="other")
    assert mem.retrieval(result.id).feedback is None


QUERIES = ["who has pets?", "travel plans", "food allergies", "sports", "where is the offsite?", "a dog"]


def _train(mem: Memory, searches: int, policy: str = "memq") -> list[str]:
    """Searches with used-credit feedback: the first shown record is cited when it is about pets."""
    ids = []
    for i in range(searches):
        result = mem.search(QUERIES[i % len(QUERIES)], k=3, policy=policy)
        pets = [h.record.id for h in result.hits if h.record.metadata.get("topic") == "pets"]
        mem.feedback(result.id, 1.0 if pets else 0.0, used=pets[:1])
        ids.append(result.id)
    return ids


def test_memq_learner_state_persists_across_instances(db_url: str, embedder) -> None:
    config = MemoryConfig(learner_params={"memq": {"fit_every": 5, "min_rows": 5}})
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        _train(mem, 12)
        entry = mem._learner("acme", "memq")
        assert entry.learner.fits == 2 and entry.learner.trained  # after the 5th and the 10th feedback
        saved = mem.store.learner_state("acme", "memq")
        assert saved.version == entry.version == 2 and saved.feedbacks == 12
        assert saved.state["model"] == entry.learner.state_dict()
        assert saved.state["serving"]["fitted"] == 10 and saved.state["serving"]["promoted"] is False
        assert mem.store.learner_state("other", "memq") is None
        stats = mem.get(mem.search("pets", k=1).ids[0]).utility.stats
        assert set(stats) == {"n", "s"} and stats["n"] >= 1
        scores = mem.learning_status().estimate
        learned = dict(zip(*_learned_scores(mem), strict=True))
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as fresh:
        loaded = fresh._learner("acme", "memq")
        assert loaded.learner.state_dict() == saved.state["model"] and loaded.version == 2
        assert np.array_equal(loaded.learner.w, entry.learner.w)
        # the same model: the same scores (up to the age feature, which grew by a few milliseconds)
        assert dict(zip(*_learned_scores(fresh), strict=True)) == pytest.approx(learned, abs=1e-9)
        assert fresh.learning_status().estimate == scores


def _learned_scores(mem: Memory) -> tuple[list[str], list[float | None]]:
    hits = mem.search("who has pets?", k=3, explain=True).hits
    return [h.record.id for h in hits], [h.signals.learned for h in hits if h.signals]


def test_feedback_counts_in_its_transaction_and_fits_only_every_so_often(db_url: str, embedder) -> None:
    """A feedback rewrites no learner model: the count goes up in the feedback's transaction; the
    model is fit (outside it) and saved every ``fit_every`` feedbacks."""
    config = MemoryConfig(learner_params={"memq": {"fit_every": 4, "min_rows": 3}})
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        versions = []
        for _ in range(9):
            _train(mem, 1)
            stored = mem.store.learner_state("acme", "memq")
            versions.append((stored.feedbacks, stored.version))
        assert versions == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 1), (6, 1), (7, 1), (8, 2), (9, 2)]


def test_two_instances_count_every_feedback_and_never_overwrite_a_newer_fit(db_url: str, embedder) -> None:
    config = MemoryConfig(learner_params={"memq": {"fit_every": 3, "min_rows": 3}})
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
    a = Memory(db_url, embedder=embedder, scope="acme", config=config)
    b = Memory(db_url, embedder=embedder, scope="acme", config=config)
    try:
        _train(a, 2)
        _train(b, 1)  # the third feedback of the tenant: b fits, on a's rows and its own
        stored = a.store.learner_state("acme", "memq")
        assert (stored.feedbacks, stored.version) == (3, 1)
        assert b._learner("acme", "memq").version == 1
        _train(a, 3)  # a's copy is stale (version 0): its fit reloads the stored one first
        stored = a.store.learner_state("acme", "memq")
        assert (stored.feedbacks, stored.version) == (6, 2)
        assert a._learner("acme", "memq").learner.fits == 2, "a learned on top of b's fit"
        # a save against a version that is no longer stored is refused, and changes nothing
        with pytest.raises(ConflictError):
            b.store.save_learner_state("acme", "memq", {"model": {}}, expected_version=1)
        assert a.store.learner_state("acme", "memq").version == 2
    finally:
        a.close()
        b.close()


async def test_async_and_sync_instances_share_the_learner(db_url: str, embedder) -> None:
    config = MemoryConfig(learner_params={"memq": {"fit_every": 2, "min_rows": 2}})
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        _train(mem, 1)
        amem = await AsyncMemory.open(db_url, embedder=embedder, scope="acme", config=config)
        try:
            result = await amem.search("who has pets?", k=3, policy="memq")
            await amem.feedback(result.id, 1.0, used=result.ids[:1])  # the second: the async one fits
            stored = await amem.store.learner_state("acme", "memq")
            assert (stored.feedbacks, stored.version) == (2, 1)
            entry = await amem._learner("acme", "memq")
            assert entry.learner.state_dict() == stored.state["model"] and entry.learner.fits == 1
            assert (await amem.learning_status()).feedbacks == 2
        finally:
            await amem.close()


def test_save_learner_state_checks_the_version(mem: Memory) -> None:
    state = {"w": [0.1, -2.5e-07, 1e16, 3.0], "nested": {"b": [1, 2], "a": None}}
    assert mem.store.learner_state("acme", "custom") is None
    assert mem.store.save_learner_state("acme", "custom", state, expected_version=0) == 1
    got = mem.store.learner_state("acme", "custom")
    assert (got.state, got.version, got.feedbacks) == (state, 1, 0)
    with pytest.raises(ConflictError):
        mem.store.save_learner_state("acme", "custom", {"w": []}, expected_version=0)
    assert mem.store.save_learner_state("acme", "custom", {"w": []}, expected_version=1) == 2
    assert mem.store.save_learner_state("acme", "custom", {"w": [1]}, expected_version=None) == 3
    assert mem.store.learner_state("acme", "custom").state == {"w": [1]}


def _make_schema_v1(db_url: str, created: datetime) -> None:
    """A database as the release before the learning layer left it, with a logged search in it."""
    shown = '[{"id": "gone", "score": 0.5, "rank": 1}]'
    if db_url.startswith("postgresql"):
        import psycopg

        from memq.store.postgres import schema

        with psycopg.connect(db_url, autocommit=True) as conn, conn.transaction():
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            conn.execute(
                "CREATE TABLE memq_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for statement in schema.MIGRATIONS[0]:
                conn.execute(statement)
            conn.execute("INSERT INTO memq_schema (version) VALUES (1)")
            conn.execute(
                "INSERT INTO retrievals (id, tenant, query, policy, k, shown, created_at) "
                "VALUES ('old', 'acme', 'q', 'hybrid-rrf', 1, %s, %s)",
                (shown, created),
            )
            conn.execute("INSERT INTO utility (id, tenant, q, n_shown) VALUES ('gone', 'acme', 0.7, 3)")
        return
    import sqlite3

    from memq.store.sqlite import schema as sqlite_schema
    from memq.store.sqlite.store import to_us

    conn = sqlite3.connect(db_url, isolation_level=None)
    try:
        for statement in sqlite_schema._split(sqlite_schema.MIGRATIONS[0]):
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO retrievals (id, tenant, query, policy, k, shown, created_at) "
            "VALUES ('old', 'acme', 'q', 'hybrid-rrf', 1, ?, ?)",
            (shown, to_us(created)),
        )
        conn.execute("INSERT INTO utility (id, tenant, q, n_shown) VALUES ('gone', 'acme', 0.7, 3)")
    finally:
        conn.close()


def test_a_store_of_the_previous_schema_upgrades(db_url: str, embedder) -> None:
    created = datetime.now(UTC) - timedelta(hours=1)
    _make_schema_v1(db_url, created)
    with Memory(db_url, embedder=embedder, scope="acme") as mem:
        old = mem.retrieval("old")
        assert (old.policy, old.policy_version, old.pool, old.query_vector, old.feedback) == (
            "hybrid-rrf",
            "1",
            [],
            None,
            None,
        )
        assert old.created_at == created
        assert [(s.id, s.rank, s.score, s.propensity) for s in old.shown] == [("gone", 1, 0.5, 1.0)]
        fb = mem.feedback("old", 1.0)  # its record is gone: the feedback is kept, no utility comes back
        assert mem.retrieval("old").feedback == fb
        ids = _seed(mem)
        assert mem.get(ids[0]).utility == Utility()
        assert mem.store.learner_state("acme", "memq") is None


# -- erasure and pruning --------------------------------------------------------------------------------


def test_purge_drops_the_log_entries_that_showed_or_pooled_the_record(mem: Memory) -> None:
    ids = _seed(mem)
    carol = ids[2]
    mem.add("Zed keeps a dog too", scope="other")
    showed = mem.search("who has a dog?", k=1)
    assert showed.ids == [carol]
    pooled = mem.search("Bob peanuts", k=1)
    assert carol not in pooled.ids and carol in {p.id for p in mem.retrieval(pooled.id).pool}
    untouched = mem.search("allergies", k=1, filters={"metadata.topic": "health"})
    assert carol not in {p.id for p in mem.retrieval(untouched.id).pool}
    theirs = mem.search("who has a dog?", k=1, scope="other")
    mem.feedback(showed.id, 1.0)
    assert mem.purge(carol) == 1
    for gone in (showed.id, pooled.id):
        with pytest.raises(NotFoundError):
            mem.retrieval(gone)
    assert mem.retrieval(untouched.id).pool
    assert mem.retrieval(theirs.id, scope="other").shown
    assert [r.id for r in mem.store.list_retrievals("acme")] == [untouched.id]


def test_prune_and_list_retrievals(mem: Memory) -> None:
    _seed(mem)
    first = mem.search("who has a dog?", k=1)
    time.sleep(0.01)
    second = mem.search("travel", k=1)
    theirs = mem.search("travel", k=1, scope="other")
    mem.feedback(second.id, 1.0)
    store = mem.store
    assert [r.id for r in store.list_retrievals("acme")] == [first.id, second.id]
    assert [r.id for r in store.list_retrievals("acme", limit=1)] == [first.id]
    assert [r.id for r in store.list_retrievals("acme", since=second.created_at)] == [second.id]
    assert [r.id for r in store.list_retrievals("acme", with_feedback=True)] == [second.id]
    assert store.prune_retrievals(second.created_at, tenant="other") == 0
    assert store.prune_retrievals(second.created_at, tenant="acme") == 1  # strictly older only
    assert [r.id for r in store.list_retrievals("acme")] == [second.id]
    with pytest.raises(NotFoundError):
        mem.feedback(first.id, 1.0)
    assert store.prune_retrievals(datetime.now(UTC) + timedelta(seconds=1)) == 2  # every tenant
    assert store.list_retrievals("acme") == [] and store.list_retrievals("other") == []
    with pytest.raises(NotFoundError):
        mem.retrieval(theirs.id, scope="other")


# -- utility stats in export / import -------------------------------------------------------------------


def test_utility_stats_survive_export_and_import_byte_identically(mem: Memory, make_url, embedder) -> None:
    ids = _seed(mem)
    result = mem.search("who has a dog?", k=2)
    mem.feedback(result.id, 1.0)
    first = io.StringIO()
    mem.export(first)
    # give one record learner stats whose keys are in no sorted order (as the memq learner writes them)
    lines = first.getvalue().splitlines()
    for i, line in enumerate(lines):
        obj = json.loads(line)
        if obj.get("type") == "record" and obj["record"]["id"] == ids[0]:
            obj["record"]["utility"]["stats"] = {"s": 1.5, "agree_total": 2.25, "n": 2.0, "agree": 0.1}
            lines[i] = json.dumps(obj, ensure_ascii=False)
    source = "\n".join(lines) + "\n"
    outputs = []
    for backend in ("sqlite", "postgres"):
        with Memory(make_url(backend), embedder=embedder, scope="acme") as other:
            other.import_(io.StringIO(source))
            got = other.get(ids[0]).utility.stats
            assert list(got) == ["s", "agree_total", "n", "agree"]
            assert other.get(result.ids[0]).utility.n_shown == 1
            out = io.StringIO()
            other.export(out)
            outputs.append(out.getvalue())
    assert outputs[0] == outputs[1]
    with Memory(make_url("sqlite"), embedder=embedder, scope="acme") as again:
        again.import_(io.StringIO(outputs[1]))
        out = io.StringIO()
        again.export(out)
        assert out.getvalue() == outputs[0]


# -- AsyncMemory ----------------------------------------------------------------------------------------


async def test_async_memory_feedback(db_url: str, embedder) -> None:
    config = _serving(**MEMRL_EXPLORE)
    mem = await AsyncMemory.open(db_url, embedder=embedder, scope="acme", config=config)
    try:
        ids = [r.id for r in await mem.add([{"text": t, "metadata": md} for t, md in FACTS])]
        result = await mem.search("who has a dog?", k=3)
        logged = await mem.retrieval(result.id)
        assert logged.shown and [s.id for s in logged.shown] == result.ids
        assert logged.query_vector is not None and len(logged.pool) == len(FACTS)
        fb = await mem.feedback(result.id, 1.0, used=[result.ids[0]])
        assert fb.credit == "used" and fb.count == 1
        u = (await mem.get(result.ids[0])).utility
        assert (u.q, u.n_shown, u.n_used) == (pytest.approx(_memrl_q(1.0)), 1, 1)
        assert (await mem.get(result.ids[1])).utility == Utility(n_shown=1)
        with pytest.raises(ConflictError):
            await mem.feedback(result.id, 0.0)
        assert (await mem.feedback(result.id, 0.0, accumulate=True)).count == 2
        with pytest.raises(NotFoundError):
            await mem.feedback(result.id, 1.0, scope="other")
        with pytest.raises(InvalidInputError):
            await mem.feedback(
                result.id, 1.0, used=[next(i for i in ids if i not in result.ids)], accumulate=True
            )
        # the learner path
        learned = await mem.search("who has pets?", k=2, policy="memrl")
        log = await mem.retrieval(learned.id)
        assert (log.policy, len(log.shown)) == ("memrl", 2)
        assert all(0 < s.propensity < 1 for s in log.shown)
        await mem.feedback(learned.id, 1.0)
        assert (await mem.retrieval(learned.id)).feedback.count == 1
        # two feedbacks at once on one loop: exactly one wins
        race = await mem.search("travel", k=2)
        outcomes = await asyncio.gather(
            mem.feedback(race.id, 1.0), mem.feedback(race.id, 0.0), return_exceptions=True
        )
        assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "FeedbackRecord"]
        assert (await mem.get(race.ids[0])).utility.n_shown == 1
        assert await mem.purge(result.ids[0]) == 1
        with pytest.raises(NotFoundError):
            await mem.retrieval(result.id)
        assert await mem.store.list_retrievals("acme") == []  # every search here pooled that record
        kept = await mem.search("travel", k=1)
        assert [r.id for r in await mem.store.list_retrievals("acme")] == [kept.id]
        assert await mem.store.prune_retrievals(datetime.now(UTC) + timedelta(seconds=1)) == 1
        assert await mem.store.list_retrievals("acme") == []
    finally:
        await mem.close()


# -- concurrent feedback on one retrieval ---------------------------------------------------------------


def test_two_threads_feedback_on_one_retrieval_exactly_one_wins(db_url: str, embedder) -> None:
    with Memory(db_url, embedder=embedder, scope="acme") as mem:
        _seed(mem)
        results = [mem.search(q, k=2) for q in ("who has a dog?", "travel", "allergies")]
    # two instances, two connections: the database's lock decides, not a Python lock
    a = Memory(db_url, embedder=embedder, scope="acme")
    b = Memory(db_url, embedder=embedder, scope="acme")
    try:
        for result in results:
            shown_before = {rid: a.get(rid).utility.n_shown for rid in result.ids}
            barrier = threading.Barrier(2)
            outcomes: list[object] = []

            def give(
                m: Memory,
                reward: float,
                rid: str = result.id,
                out: list[object] = outcomes,
                barrier: threading.Barrier = barrier,
            ) -> None:
                barrier.wait()
                try:
                    out.append(m.feedback(rid, reward))
                except ConflictError as exc:
                    out.append(exc)

            threads = [threading.Thread(target=give, args=(m, r)) for m, r in ((a, 1.0), (b, 0.0))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "FeedbackRecord"]
            assert a.retrieval(result.id).feedback.count == 1
            for rid in result.ids:  # counted once (records may recur across the searches)
                assert a.get(rid).utility.n_shown == shown_before[rid] + 1
    finally:
        a.close()
        b.close()


def test_a_second_feedback_waits_for_the_first_and_sees_it(db_url: str, embedder) -> None:
    """The first feedback's plan sleeps inside its transaction; the second must wait and then conflict."""
    with Memory(db_url, embedder=embedder, scope="acme") as mem:
        _seed(mem)
        result = mem.search("who has a dog?", k=2)
    stores = [Memory(db_url, embedder=embedder, scope="acme") for _ in range(2)]
    planned: list[tuple[str, bool]] = []
    errors: list[BaseException] = []
    first_in = threading.Event()

    def plan(name: str, delay: float):  # type: ignore[no-untyped-def]
        def run(logged: LoggedRetrieval, current: dict[str, Utility]) -> FeedbackPlan:
            planned.append((name, logged.feedback is not None))
            first_in.set()
            time.sleep(delay)
            return plan_feedback(
                logged,
                current,
                reward=1.0,
                used=None,
                strategy="shown",
                accumulate=False,
                now=datetime.now(UTC),
                window_days=30,
                learner=None,
            )

        return run

    def give(i: int, delay: float) -> None:
        try:
            stores[i].store.apply_feedback("acme", result.id, plan(f"p{i}", delay))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    try:
        slow = threading.Thread(target=give, args=(0, 0.5))
        slow.start()
        assert first_in.wait(10)
        fast = threading.Thread(target=give, args=(1, 0.0))
        fast.start()
        slow.join(30)
        fast.join(30)
        assert planned == [("p0", False), ("p1", True)], "the second plan ran after the first committed"
        assert [type(e) for e in errors] == [ConflictError]
        assert stores[0].get(result.ids[0]).utility.n_shown == 1
    finally:
        for m in stores:
            m.close()


def test_training_rows_follow_feedback_given_later_and_by_another_store(db_url: str, embedder) -> None:
    """The training rows a fit reads carry the latest feedback: the store keeps them decoded between
    fits and reads a row again when its feedback changed (accumulated here, or given through another
    store on the same database); a pruned row is gone."""
    first = Memory(db_url, embedder=embedder, scope="acme")
    second = Memory(db_url, embedder=embedder, scope="acme")
    try:
        _seed(first)
        a = first.search("Alice moved to Berlin", k=3)
        b = first.search("Who has pets?", k=3)
        first.feedback(a.id, 1.0)
        first.feedback(b.id, 0.0)
        rows = {r.id: r for r in first.store.training_log("acme", limit=100)}
        assert (rows[a.id].reward, rows[b.id].reward) == (1.0, 0.0)
        first.feedback(a.id, 0.5, accumulate=True)  # this store: the kept row is stale (rewards add up)
        second.feedback(b.id, 0.25, accumulate=True)  # another store on the same database
        rows = {r.id: r for r in first.store.training_log("acme", limit=100)}
        assert (rows[a.id].reward, rows[b.id].reward) == (1.5, 0.25)
        assert [r.id for r in first.store.training_log("acme", limit=100)] == [a.id, b.id]  # oldest first
        first.store.prune_retrievals(datetime.now(UTC) + timedelta(seconds=1))
        assert first.store.training_log("acme", limit=100) == []
    finally:
        first.close()
        second.close()


def test_a_feedback_during_a_refit_does_not_start_a_second_one(db_url: str, embedder, monkeypatch) -> None:
    """Request threads of a server: a feedback that crosses ``fit_every`` while another thread is
    refitting the same learner skips the fit instead of repeating it on the same log."""
    from memq.learn.contextual import ContextualLearner

    config = MemoryConfig(learner_params={"memq": {"fit_every": 1, "min_rows": 1}})
    entered, release = threading.Event(), threading.Event()
    fits: list[str] = []
    real_fit = ContextualLearner.fit

    def fit(self, data):  # the first fit waits until the test lets it go
        fits.append(threading.current_thread().name)
        if len(fits) == 1:
            entered.set()
            assert release.wait(30), "the test never released the first fit"
        return real_fit(self, data)

    monkeypatch.setattr(ContextualLearner, "fit", fit)
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        _seed(mem)
        first = mem.search(QUERIES[0], k=3, policy="memq")
        second = mem.search(QUERIES[1], k=3, policy="memq")
        worker = threading.Thread(target=mem.feedback, args=(first.id, 1.0), name="first")
        worker.start()
        try:
            assert entered.wait(30), "the first feedback never started its fit"
            mem.feedback(second.id, 1.0)  # crosses fit_every too, while the first fit runs
            assert fits == ["first"]
        finally:
            release.set()
            worker.join(30)
        assert not worker.is_alive()
        assert mem.store.learner_state("acme", "memq").feedbacks == 2
        third = mem.search(QUERIES[2], k=3, policy="memq")
        mem.feedback(third.id, 1.0)  # no refit in flight: this one fits
        assert fits == ["first", "MainThread"]
