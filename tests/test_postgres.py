"""PostgreSQL-only behaviour: the native async store, concurrent migrations and first inserts, the
filtered-HNSW fallback, the embedding space (refusal, re-embed to another dimension), exact float32
and JSON round trips, and error translation. The shared contract lives in test_store_contract.py.

Vectors here are random unit vectors inserted through the store directly, so these tests are about
the store, not embedding quality.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
import pytest
from pgvector.psycopg import register_vector

from memq import AsyncMemory, DimensionMismatchError, Memory, StoreError
from memq.embed import HashingEmbedder
from memq.errors import ConflictError
from memq.retrieve.filters import parse_filter
from memq.store import AsyncStore, Store
from memq.store.base import CandidateQuery, VersionChange
from memq.store.postgres import AsyncPostgresStore, PostgresStore, candidates, hnsw, schema, steps
from memq.store.postgres.steps import (
    READ_SNAPSHOT,
    WRITE_ATTEMPTS,
    Deferred,
    Fork,
    Join,
    Op,
    Q,
    complete,
    mask_dsn,
    retry_delay,
)
from memq.types import HistoryOp, MemoryRecord, Scope, utcnow


def _records(
    tenant: str, count: int, dim: int, rng: np.random.Generator, **extra: object
) -> list[MemoryRecord]:
    vecs = rng.normal(size=(count, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        MemoryRecord(
            scope=Scope(tenant=tenant),
            text=f"{tenant} note {i}",
            embedding=v.tolist(),
            embedding_model="test-model",
            **extra,  # type: ignore[arg-type]
        )
        for i, v in enumerate(vecs)
    ]


def _exact_top(records: list[MemoryRecord], query: np.ndarray, n: int) -> list[str]:
    mat = np.asarray([r.embedding for r in records], dtype=np.float32)
    sims = mat @ (query / np.linalg.norm(query))
    return [records[i].id for i in np.argsort(-sims, kind="stable")[:n]]


def _index_defs(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE tablename = 'records' AND indexdef ILIKE '%hnsw%'"
        ).fetchall()
    return [r[0] for r in rows]


def _column_type(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'records'::regclass AND attname = 'embedding'"
        ).fetchone()
    assert row is not None
    return str(row[0])


# -- the async store ---------------------------------------------------------------------------------


async def test_async_memory_on_postgres_is_native(pg_url: str, embedder) -> None:
    mem = await AsyncMemory.open(pg_url, embedder=embedder, scope="acme")
    try:
        assert isinstance(mem.store, AsyncPostgresStore) and isinstance(mem.store, AsyncStore)
        added = await mem.add(
            [
                {"text": "Carol adopted a golden retriever named Max", "metadata": {"topic": "pets"}},
                {"text": "Bob is allergic to peanuts", "metadata": {"topic": "health"}},
                {"text": "Alice moved to Berlin in 2021", "metadata": {"topic": "travel"}},
            ]
        )
        # several coroutines at once share the pool (no worker thread serialises them)
        dog, nuts, listed = await asyncio.gather(
            mem.search("who has a dog?", k=1),
            mem.search("peanuts", k=1, mode="lexical"),
            mem.list(filters={"metadata.topic": {"in": ["pets", "travel"]}}),
        )
        assert dog.records[0].id == added[0].id
        assert nuts.records[0].id == added[1].id
        assert [r.id for r in listed.records] == [added[0].id, added[2].id]

        before = datetime.now(UTC)
        await mem.update(added[2].id, text="Alice moved to Munich in 2024", reason="moved")
        assert (await mem.get(added[2].id)).version == 2
        past = await mem.search("where does Alice live", k=1, as_of=before)
        assert past.records[0].text == "Alice moved to Berlin in 2021"
        await mem.delete(added[1].id)
        assert [e.op.value for e in await mem.history(added[1].id)] == ["add", "delete"]
        stats = await mem.stats()
        assert (stats.backend, stats.records, stats.versions, stats.deleted) == ("postgres", 3, 4, 1)
        assert stats.embedding_dim == embedder.dim and stats.bytes and stats.bytes > 0

        out = io.StringIO()
        assert await mem.export(out) == 4 + 5  # 4 versions, 5 events
        with pytest.raises(ConflictError):
            await mem.import_(io.StringIO(out.getvalue()))  # same ids: nothing half-imported
        assert (await mem.stats()).versions == 4
    finally:
        await mem.close()


async def test_async_store_connect_and_close(pg_url: str) -> None:
    store = await AsyncPostgresStore.connect(pg_url, max_size=2)
    rng = np.random.default_rng(1)
    await store.insert(_records("t", 5, 8, rng))
    assert await store.embedding_space() == ("test-model", 8)
    assert len(await store.export_rows("t")) == 10
    assert [e for _, e in await store.export_events("t", 0, 10)] == (await store.export_rows("t"))[5:]
    first = await store.embeddable(0, 2)
    second = await store.embeddable(first[-1][0], 2)
    third = await store.embeddable(second[-1][0], 2)
    assert [len(first), len(second), len(third)] == [2, 2, 1]
    assert await store.embeddable(third[-1][0], 2) == []
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await store.embedding_space()


async def test_async_store_builds_the_vector_index_too(pg_url: str) -> None:
    store = await AsyncPostgresStore.connect(pg_url)
    try:
        recs = _records("t", hnsw.BUILD_TAIL + 100, 8, np.random.default_rng(6))
        await store.insert(recs)
        assert _graph(pg_url)[1] == len(recs)  # a bulk load: outside the graph
        query = np.random.default_rng(7).normal(size=8).astype(np.float32)
        got = await store.dense_candidates(CandidateQuery(scope=Scope(tenant="t")), query, 5)
        upto, tail, top = _graph(pg_url)
        assert (upto, tail) == (top, 0) and await store.build_index()  # built by the search
        sims = _sims(recs, query)
        assert len(got) == 5 and all(abs(c.score - sims[c.id]) < 1e-5 for c in got)
    finally:
        await store.close()


# -- one implementation for both stores --------------------------------------------------------------

# the async store's own lifecycle: ``await AsyncPostgresStore.connect(dsn)`` / ``await store.open()``
ASYNC_LIFECYCLE = {"connect", "open"}
# PostgreSQL's own: build_index (the SQLite store builds its vector index on its own, in the process)
POSTGRES_ONLY = {"build_index"}
# SQLite's own: the indexes beside its file checked against the rows (``memq check``: check_indexes,
# rebuild_indexes; verify_lexical and verify_mirror for tests). PostgreSQL keeps its indexes itself
SQLITE_ONLY = {"check_indexes", "rebuild_indexes", "verify_lexical", "verify_mirror"}
# methods whose sync and async forms differ by nature: closing, and export_rows (a stream, or a list)
RUNNER_METHODS = {"close", "export_rows"}


def _methods(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n))}


def test_sync_and_async_stores_offer_the_same_methods_written_once() -> None:
    from memq.store.sqlite import SQLiteStore

    sync, aio = _methods(PostgresStore), _methods(AsyncPostgresStore)
    assert aio - ASYNC_LIFECYCLE == sync
    assert sync - POSTGRES_ONLY == _methods(SQLiteStore) - SQLITE_ONLY
    assert sync > RUNNER_METHODS
    for name in sync - RUNNER_METHODS:  # one function object serves both stores
        assert getattr(PostgresStore, name) is getattr(AsyncPostgresStore, name), name
    assert AsyncPostgresStore.is_async and not getattr(PostgresStore, "is_async", False)


# -- migrations and the first insert under concurrency -------------------------------------------------


def _run_threads(count: int, target) -> list[BaseException]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(30)
            target(i)
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors


def test_migrations_are_idempotent_when_stores_open_at_once(pg_url: str) -> None:
    stores: list[PostgresStore] = []
    lock = threading.Lock()

    def open_one(i: int) -> None:
        store = PostgresStore(pg_url, max_size=1)
        with lock:
            stores.append(store)

    assert _run_threads(6, open_one) == []
    try:
        assert len(stores) == 6 and all(isinstance(s, Store) for s in stores)
        with psycopg.connect(pg_url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM memq_schema ORDER BY version")]
        assert versions == list(range(1, schema.SCHEMA_VERSION + 1))
    finally:
        for s in stores:
            s.close()
    PostgresStore(pg_url).close()  # and opening an up-to-date database changes nothing
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM memq_schema").fetchone() == (schema.SCHEMA_VERSION,)


def test_first_inserts_racing_set_the_space_once(pg_url: str) -> None:
    PostgresStore(pg_url).close()  # schema only: no space, untyped column
    assert _column_type(pg_url) == "vector"

    def add(i: int) -> None:
        with PostgresStore(pg_url, max_size=1) as store:
            for _ in range(5):
                store.insert(_records("race", 10, 24, np.random.default_rng(i)))

    assert _run_threads(4, add) == []
    with PostgresStore(pg_url) as store:
        assert store.embedding_space() == ("test-model", 24)
        assert store.stats().records == 4 * 5 * 10
        assert store.verify_index()
    assert _column_type(pg_url) == "vector(24)"
    assert len(_index_defs(pg_url)) == 1


def test_racing_updates_of_one_record_give_one_version_and_a_conflict(pg_url: str) -> None:
    with PostgresStore(pg_url) as setup:
        rec = _records("t", 1, 8, np.random.default_rng(4))[0]
        setup.insert([rec])
    outcomes: list[str] = []

    def update(i: int) -> None:
        with PostgresStore(pg_url, max_size=1) as store:
            current = store.get("t", [rec.id], with_embedding=True)[0]
            new = current.model_copy(update={"version": 2, "text": f"writer {i}", "recorded_at": utcnow()})
            try:
                store.write_version(VersionChange("t", rec.id, new, HistoryOp.UPDATE))
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

    for _ in range(3):
        assert _run_threads(4, update) == []
        assert sorted(outcomes) == ["conflict"] * 3 + ["ok"]
        with PostgresStore(pg_url) as store:
            assert [(e.op.value, e.version) for e in store.history("t", rec.id)] == [
                ("add", 1),
                ("update", 2),
            ]
            assert store.stats().versions == 2
        with psycopg.connect(pg_url, autocommit=True) as conn:  # reset to one version for the next round
            conn.execute("DELETE FROM records WHERE version = 2")
            conn.execute("UPDATE records SET expired_at = NULL")
            conn.execute("DELETE FROM events WHERE version = 2")
        outcomes.clear()


# -- dense search: the filtered-HNSW fallback ------------------------------------------------------------


@pytest.fixture
def big_and_small(pg_url: str):  # type: ignore[no-untyped-def]
    """3,000 vectors in tenant A (20 of them tagged rare) and 20 in tenant B, HNSW-indexed."""
    rng = np.random.default_rng(42)
    store = PostgresStore(pg_url)
    a = _records("A", 2980, 32, rng)
    rare = _records("A", 20, 32, rng, metadata={"group": "rare"})
    b = _records("B", 20, 32, rng)
    store.insert(a)
    store.insert(rare)
    store.insert(b)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("ANALYZE records")
    assert len(_index_defs(pg_url)) == 1
    yield store, a, rare, b, rng
    store.close()


def test_selective_filters_still_get_n_dense_results(big_and_small) -> None:  # type: ignore[no-untyped-def]
    store, _, rare, b, rng = big_and_small
    for _ in range(3):
        query = rng.normal(size=32).astype(np.float32)
        got = store.dense_candidates(CandidateQuery(scope=Scope(tenant="B")), query, 10)
        assert [c.id for c in got] == _exact_top(b, query, 10)
        assert all(-1.0 <= c.score <= 1.0 for c in got)
        narrow = CandidateQuery(scope=Scope(tenant="A"), filter=parse_filter({"metadata.group": "rare"}))
        got = store.dense_candidates(narrow, query, 10)
        assert [c.id for c in got] == _exact_top(rare, query, 10)
        wide = store.dense_candidates(CandidateQuery(scope=Scope(tenant="A")), query, 10)
        assert len(wide) == 10
        # fewer visible rows than asked: all of them, no error
        assert len(store.dense_candidates(narrow, query, 50)) == 20


def test_starved_index_scan_is_rerun_exactly(big_and_small, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    """With sorting priced out, the planner must take the HNSW scan for tenant B, which finds only a
    few of B's rows among its ef_search candidates; the operation notices and re-runs exactly."""
    store, _, _, b, rng = big_and_small
    assert store.build_index()  # every row in the graph (the bulk insert deferred them)
    query = rng.normal(size=32).astype(np.float32)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        register_vector(conn)
        upto = int(conn.execute("SELECT value FROM meta WHERE key = 'hnsw_upto'").fetchone()[0])
        nearest_of_b = (
            f"SELECT r.id FROM records r WHERE r.tenant = 'B' AND r.expired_at IS NULL AND {hnsw.in_graph(upto)} "
            "ORDER BY r.embedding <=> %s LIMIT 10"
        )
        conn.execute("SET enable_sort = off")
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 40")
            plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + nearest_of_b, (query,)))
            assert schema.HNSW_INDEX in plan
            starved = conn.execute(nearest_of_b, (query,)).fetchall()
        assert len(starved) < 10
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(READ_SNAPSHOT)
            got = complete(
                cur, candidates.dense_candidates(CandidateQuery(scope=Scope(tenant="B")), query, 10)
            )
    assert [c.id for c in got] == _exact_top(b, query, 10)


# -- bulk loads: rows wait outside the HNSW graph for the next build ----------------------------------------


def _graph(url: str) -> tuple[int, int, int]:
    """(the index's watermark row key, rows waiting outside the graph, the newest row key)."""
    with psycopg.connect(url) as conn:
        upto = int(conn.execute("SELECT value FROM meta WHERE key = 'hnsw_upto'").fetchone()[0])
        (tail,) = conn.execute(
            "SELECT count(*) FROM records WHERE deferred AND row_key > %s", (upto,)
        ).fetchone()
        (top,) = conn.execute("SELECT max(row_key) FROM records").fetchone()
    return upto, tail, top


def _sims(records: list[MemoryRecord], query: np.ndarray) -> dict[str, float]:
    unit_query = query / np.linalg.norm(query)
    return {r.id: float(np.asarray(r.embedding, np.float32) @ unit_query) for r in records}


def test_a_bulk_load_skips_the_graph_until_a_search_builds_it(big_and_small, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    store, a, rare, _, rng = big_and_small
    assert _graph(pg_url)[:2] == (0, 3020)  # a fresh store is a bulk load: no row went into the graph
    everyone = CandidateQuery(scope=Scope(tenant="A"))
    query = rng.normal(size=32).astype(np.float32)
    with psycopg.connect(pg_url, autocommit=True) as other:  # another session is building: no build here
        other.execute(f"SELECT pg_advisory_lock({schema.LOCK_NAMESPACE}, {schema.LOCK_BUILD})")
        got = store.dense_candidates(everyone, query, 10)
    assert [c.id for c in got] == _exact_top(
        a + rare, query, 10
    )  # the rows outside the graph, scanned exactly
    assert _graph(pg_url)[:2] == (0, 3020)
    got = store.dense_candidates(everyone, query, 10)  # finds 3,020 rows outside the graph: builds first
    upto, tail, top = _graph(pg_url)
    assert (upto, tail) == (top, 0) and store.verify_index() and len(_index_defs(pg_url)) == 1
    sims = _sims(a + rare, query)
    assert len(got) == 10 and all(abs(c.score - sims[c.id]) < 1e-5 for c in got)


def test_small_writes_enter_the_graph_and_large_ones_wait(pg_url: str) -> None:
    rng = np.random.default_rng(21)
    with PostgresStore(pg_url) as store:
        store.insert(_records("t", 2000, 16, rng))
        assert store.build_index() and _graph(pg_url)[1] == 0
        store.insert(_records("t", 5, 16, rng))  # a few rows into a large graph: inserted into it at once
        assert _graph(pg_url)[1] == 0
        later = _records("t", 600, 16, rng)  # 600 >= DEFER_RATIO x 2,005: rebuilding is cheaper
        store.insert(later)
        upto, tail, _ = _graph(pg_url)
        assert tail == 600 < hnsw.BUILD_TAIL
        query = np.asarray(later[7].embedding, np.float32)
        got = store.dense_candidates(CandidateQuery(scope=Scope(tenant="t")), query, 5)
        assert got[0].id == later[7].id and _graph(pg_url)[:2] == (upto, 600)  # found exactly; no build
        assert store.build_index() and store.build_index()  # the second finds nothing to do
        upto, tail, top = _graph(pg_url)
        assert (upto, tail) == (top, 0)


def test_a_build_after_a_bulk_load_refreshes_the_planner_statistics(pg_url: str) -> None:
    """Right after a bulk load the columns have no statistics yet (a tenant looks like one row) and the
    new rows' text index entries wait in its pending list, which every lexical search scans; the build
    vacuums and analyses the table, so the planner picks the HNSW index instead of sorting the tenant's
    rows, and the pending list is empty."""
    rng = np.random.default_rng(23)
    with PostgresStore(pg_url) as store:
        rows = _records("t", 3000, 16, rng)
        store.insert(rows)
        assert store.build_index()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        register_vector(conn)
        upto = int(conn.execute("SELECT value FROM meta WHERE key = 'hnsw_upto'").fetchone()[0])
        with conn.transaction():
            conn.execute("SET LOCAL hnsw.ef_search = 100")
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    f"EXPLAIN SELECT r.id FROM records r WHERE r.tenant = 't' AND r.expired_at IS NULL AND "
                    f"{hnsw.in_graph(upto)} ORDER BY r.embedding <=> %s LIMIT 50",
                    (np.asarray(rows[0].embedding, np.float32),),
                )
            )
        assert conn.execute("SELECT gin_clean_pending_list('records_tsv')").fetchone()[0] == 0
    assert schema.HNSW_INDEX in plan


def test_an_index_made_before_the_watermark_keeps_serving(pg_url: str) -> None:
    """A store of schema 2 (its index over every row, no watermark) migrates to watermark 0."""
    with psycopg.connect(pg_url, autocommit=True) as conn, conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            "CREATE TABLE memq_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, statements in enumerate(schema.MIGRATIONS[:2], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO memq_schema (version) VALUES (%s)", (version,))
        conn.execute("ALTER TABLE records ALTER COLUMN embedding TYPE vector(3)")
        conn.execute(
            "CREATE INDEX records_embedding_hnsw ON records USING hnsw (embedding vector_cosine_ops) "
            "WITH (m = 16, ef_construction = 64)"
        )
        conn.execute("INSERT INTO meta VALUES ('embedding_model', 'm'), ('embedding_dim', '3')")
        conn.execute(
            "INSERT INTO records (id, version, tenant, kind, text, payload_json, metadata_json, source_message_ids, "
            "parent_ids, recorded_at, embedding_model, embedding) VALUES ('r1', 1, 't', 'fact', 'Bob likes tea', "
            "'{}', '{}', '[]', '[]', now(), 'm', '[1,0,0]'), ('r2', 1, 't', 'fact', 'tea and more tea', "
            "'{}', '{}', '[]', '[]', now(), 'm', '[0,1,0]')"
        )
    with PostgresStore(pg_url) as store:
        assert _graph(pg_url)[:2] == (0, 0) and store.verify_index()
        q = CandidateQuery(scope=Scope(tenant="t"))
        assert [c.id for c in store.dense_candidates(q, np.array([0.1, 1, 0], np.float32), 2)] == ["r2", "r1"]
        assert [c.id for c in store.lexical_candidates(q, "tea", 2)] == ["r2", "r1"]  # the lexicon was filled
        assert _counts(pg_url, LEXICON) == _counts(pg_url, RECOUNT)


# -- lexical search: BM25 from the lexicon -----------------------------------------------------------------


# the lexicon as the trigger keeps it, and counted afresh from the records:
# ({(tenant, lexeme): document frequency}, {tenant: (documents, total length)})
LEXICON = (
    "SELECT tenant, lexeme, sum(df) FROM lexicon GROUP BY 1, 2 HAVING sum(df) <> 0",
    "SELECT tenant, sum(docs), sum(lexemes) FROM lexicon_docs GROUP BY 1 HAVING sum(docs) <> 0",
)
RECOUNT = (
    "SELECT r.tenant, u.lexeme, count(*) FROM records r, unnest(tsvector_to_array(r.tsv)) AS u(lexeme) GROUP BY 1, 2",
    "SELECT tenant, count(*), coalesce(sum(length(tsv)), 0) FROM records GROUP BY 1",
)


def _counts(
    url: str, queries: tuple[str, str]
) -> tuple[dict[tuple[str, str], int], dict[str, tuple[int, int]]]:
    with psycopg.connect(url) as conn:
        df = conn.execute(queries[0]).fetchall()
        docs = conn.execute(queries[1]).fetchall()
    return {(t, lexeme): int(n) for t, lexeme, n in df}, {t: (int(n), int(total)) for t, n, total in docs}


def test_the_lexicon_follows_inserts_versions_and_purges(pg_url: str) -> None:
    texts = ["Bob's café opens at 8", "the café closes late", "Alice runs marathons", "marathons and cafés"]

    def add(i: int) -> None:
        with PostgresStore(pg_url, max_size=1) as store:
            for round_ in range(3):
                store.insert([MemoryRecord(scope=Scope(tenant=f"t{i}"), text=f"{t} {round_}") for t in texts])

    assert _run_threads(4, add) == []  # concurrent writers on several shards lose no count
    with PostgresStore(pg_url) as store:
        first = store.list(CandidateQuery(scope=Scope(tenant="t0")), cursor=None, limit=1).records[0]
        new = first.model_copy(update={"version": 2, "text": "new text"})
        store.write_version(VersionChange("t0", first.id, new, HistoryOp.UPDATE))
        purged = store.list(CandidateQuery(scope=Scope(tenant="t1")), cursor=None, limit=3).records
        assert store.purge("t1", [r.id for r in purged]) == 3
        assert _counts(pg_url, LEXICON) == _counts(pg_url, RECOUNT)
        assert sum(n for n, _ in _counts(pg_url, RECOUNT)[1].values()) == 4 * 12 + 1 - 3


def test_lexical_scores_are_bm25(pg_url: str) -> None:
    texts = [
        "Carol adopted a golden retriever named Max",
        "Max the retriever loves the beach, Max swims",
        "the golden hour at the beach",
        "Bob is allergic to peanuts",
        "a retriever, a beach, a dog: a long day out with friends and family at the seaside",
    ]
    with PostgresStore(pg_url) as store:
        records = [MemoryRecord(scope=Scope(tenant="t"), text=t) for t in texts]
        store.insert([*records, MemoryRecord(scope=Scope(tenant="other"), text="retriever")])
        got = store.lexical_candidates(
            CandidateQuery(scope=Scope(tenant="t")), "Which golden retriever went to the beach?", 10
        )
    counted, per_tenant = _counts(pg_url, RECOUNT)  # the tenant's own statistics: "other" plays no part
    df = {lexeme: n for (tenant, lexeme), n in counted.items() if tenant == "t"}
    docs, total = per_tenant["t"]
    with psycopg.connect(pg_url) as conn:
        terms = [
            r[0]
            for r in conn.execute(
                "SELECT unnest(tsvector_to_array(to_tsvector('english', 'golden retriever went beach')))"
            )
        ]
        rows = conn.execute(
            "SELECT r.id, length(r.tsv), u.lexeme, array_length(u.positions, 1) FROM records r, unnest(r.tsv) AS u "
            "WHERE r.tenant = 't' AND u.lexeme = ANY(%s)",
            (terms,),
        ).fetchall()
    expected: dict[str, float] = {}
    for rid, length, lexeme, tf in rows:  # Okapi BM25, k1 = 1.2, b = 0.75
        idf = np.log(1 + (docs - df[lexeme] + 0.5) / (df[lexeme] + 0.5))
        expected[rid] = expected.get(rid, 0.0) + idf * tf * 2.2 / (
            tf + 1.2 * (0.25 + 0.75 * length / (total / docs))
        )
    assert [c.id for c in got] == sorted(expected, key=lambda rid: -expected[rid])
    assert all(abs(c.score - expected[c.id]) < 1e-9 for c in got) and len(got) == 4


def test_lexical_plan_scores_rare_terms_whole_and_common_ones_together() -> None:
    df = {"zebra": 10.0, "okapi": 300.0, "time": 4_000.0, "like": 6_000.0, "day": 3_000.0}
    query, exact = candidates.plan_lexical(df, 100_000.0, budget=1000)
    parts = query.split(" | ")
    assert not exact and parts[:2] == ["'zebra'", "'okapi'"]  # all their rows; of the rest, rows with two
    assert set(parts[2:]) == {"('day' & 'time')", "('day' & 'like')", "('time' & 'like')"}
    more = candidates.plan_lexical({**df, "time": 40_000.0}, 100_000.0)[
        0
    ]  # pairs: ~3,600 rows; all three: ~70
    assert more == "'zebra' | 'okapi' | ('day' & 'like' & 'time')"
    assert candidates.plan_lexical({"zebra": 10.0, "okapi": 300.0}, 100_000.0) == ("'zebra' | 'okapi'", True)
    assert candidates.plan_lexical({"time": 40_000.0}, 100_000.0) == (
        "",
        False,
    )  # nothing fits: score every match
    assert candidates.quote("it's\\") == "'it''s\\\\'"


def test_a_common_term_alone_is_scored_over_every_match(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        plain = [
            MemoryRecord(scope=Scope(tenant="t"), text=f"an apple on day {i} of the trip")
            for i in range(1100)
        ]
        best = MemoryRecord(scope=Scope(tenant="t"), text="apple apple apple")
        store.insert([*plain[:600], best, *plain[600:]])
        got = store.lexical_candidates(CandidateQuery(scope=Scope(tenant="t")), "apple", 50)
        assert len(got) == 50 and got[0].id == best.id  # df 1,101 > the budget: the fallback scores all


# -- the embedding space ---------------------------------------------------------------------------------


def test_space_change_is_refused(pg_url: str) -> None:
    rng = np.random.default_rng(3)
    with PostgresStore(pg_url) as store:
        store.set_embedding_space("test-model", 8)
        store.set_embedding_space("test-model", 8)  # the same space again is fine
        assert _column_type(pg_url) == "vector(8)" and len(_index_defs(pg_url)) == 1
        with pytest.raises(DimensionMismatchError, match=r"'test-model' \(8-d\).*reembed"):
            store.set_embedding_space("test-model", 16)
        with pytest.raises(DimensionMismatchError):
            store.set_embedding_space("other-model", 8)
        store.insert(_records("t", 3, 8, rng))
        with pytest.raises(DimensionMismatchError):
            store.insert(_records("t", 2, 8, rng) + _records("t", 1, 16, rng))  # the batch fails whole
        assert store.stats().versions == 3
        with pytest.raises(DimensionMismatchError):
            store.dense_candidates(CandidateQuery(scope=Scope(tenant="t")), np.ones(16, np.float32), 3)
    with pytest.raises(DimensionMismatchError, match="dim=16"):
        PostgresStore(pg_url, dim=16)
    PostgresStore(pg_url, dim=8).close()


def test_dim_argument_prepares_the_vector_column(pg_url: str) -> None:
    with PostgresStore(pg_url, dim=12) as store:
        assert store.embedding_space() is None  # no model known yet, but the column is ready
        assert _column_type(pg_url) == "vector(12)" and len(_index_defs(pg_url)) == 1
        store.insert(_records("t", 2, 12, np.random.default_rng(0)))
        assert store.embedding_space() == ("test-model", 12)
    assert len(_index_defs(pg_url)) == 1


def test_reembed_switches_dimension_column_and_index(pg_url: str) -> None:
    with Memory(pg_url, embedder=HashingEmbedder(dim=32), scope="acme") as mem:
        mem.add(["Carol adopted a golden retriever", "Bob is allergic to peanuts", "Dave runs marathons"])
        rec = mem.add("Alice moved to Berlin")
        mem.update(rec.id, text="Alice moved to Munich")
        assert _column_type(pg_url) == "vector(32)"
        assert mem.reembed(HashingEmbedder(dim=48), batch=2) == 5  # every version, over 3 batches
        assert mem.store.embedding_space() == (HashingEmbedder(dim=48).model_id, 48)
        assert _column_type(pg_url) == "vector(48)"
        defs = _index_defs(pg_url)
        assert len(defs) == 1 and "vector_cosine_ops" in defs[0] and "m='16'" in defs[0].replace(" ", "")
        hit = mem.search("golden retriever", mode="dense", k=1).records[0]
        assert hit.text.startswith("Carol")
        old = mem.history(rec.id)[0].record
        assert old is not None
        exported = [r for r in mem.store.export_rows("acme") if isinstance(r, MemoryRecord)]
        assert all(len(r.embedding or []) == 48 for r in exported)
        assert {r.embedding_model for r in exported} == {HashingEmbedder(dim=48).model_id}
        mem.add("added after the switch")
    with (
        Memory(pg_url, embedder=HashingEmbedder(dim=32), scope="acme") as stale,
        pytest.raises(DimensionMismatchError),
    ):
        stale.add("old embedder")


def test_prepared_reads_survive_a_reembed_by_another_store(pg_url: str) -> None:
    """psycopg prepares a statement after a few runs; a re-embed elsewhere then retypes the column.
    Reads of vectors must not fail with "cached plan must not change result type"."""
    with PostgresStore(pg_url, max_size=1) as reader, PostgresStore(pg_url) as writer:
        recs = _records("t", 3, 8, np.random.default_rng(2))
        reader.insert(recs)
        for _ in range(8):  # past psycopg's prepare threshold, all on the reader's one connection
            assert len(reader.get("t", [recs[0].id], with_embedding=True)[0].embedding or []) == 8
        keys = [key for key, _ in writer.embeddable(0, 10)]
        writer.replace_embeddings("m2", 4, [(k, np.ones(4, np.float32)) for k in keys], first=True, last=True)
        assert reader.get("t", [recs[0].id], with_embedding=True)[0].embedding == [1.0] * 4
        with pytest.raises(DimensionMismatchError):
            reader.insert(_records("t", 1, 8, np.random.default_rng(3)))


def test_interrupted_reembed_gets_its_index_back_on_open(pg_url: str) -> None:
    rng = np.random.default_rng(5)
    with PostgresStore(pg_url) as store:
        store.insert(_records("t", 4, 8, rng))
        rows = [key for key, _ in store.embeddable(0, 10)]
        store.replace_embeddings("new-model", 6, [(rows[0], np.ones(6, np.float32))], first=True, last=False)
        assert _index_defs(pg_url) == []  # built after the last batch, not row by row
        assert store.embedding_space() == ("new-model", 6)
        assert not store.verify_index()
    with PostgresStore(pg_url) as store:  # the process died before `last`: opening repairs the index
        assert store.verify_index()
    assert len(_index_defs(pg_url)) == 1


# -- exact round trips --------------------------------------------------------------------------------------


def test_float32_vectors_and_json_round_trip_exactly(pg_url: str) -> None:
    rng = np.random.default_rng(9)
    vec = rng.normal(size=64).astype(np.float32)
    vec[:4] = [np.float32(1e-38), np.float32(3.4e38), np.float32(-0.0), np.nextafter(np.float32(1), 2)]
    metadata = {"zeta": 1, "alpha": {"b": 2.5, "a": 1e20}, "mid": [3, "x"], "ü": "ñ"}
    record = MemoryRecord(
        scope=Scope(tenant="t"),
        text="round trip",
        embedding=vec.tolist(),
        embedding_model="m",
        metadata=metadata,
    )
    with PostgresStore(pg_url) as store:
        store.insert([record])
        got = store.get("t", [record.id], with_embedding=True)[0]
        assert np.asarray(got.embedding, dtype=np.float32).tobytes() == vec.tobytes()
        assert list(got.metadata) == ["zeta", "alpha", "mid", "ü"]  # key order kept (jsonb would sort)
        assert list(got.metadata["alpha"]) == ["b", "a"] and isinstance(got.metadata["alpha"]["a"], float)
        assert got.recorded_at == record.recorded_at and got.recorded_at.tzinfo is UTC
        # the jsonb copy still serves filters
        q = CandidateQuery(scope=Scope(tenant="t"), filter=parse_filter({"metadata.alpha.b": {"gt": 2}}))
        assert [r.id for r in store.list(q, cursor=None, limit=10).records] == [record.id]


def test_lexical_search_is_safe_with_tsquery_syntax(pg_url: str) -> None:
    with PostgresStore(pg_url) as store:
        store.insert([MemoryRecord(scope=Scope(tenant="t"), text="Bob's café opens at 8 & closes late")])
        q = CandidateQuery(scope=Scope(tenant="t"))
        for text in ("café & | ! :* ( ' \\", "opens:*", "'closes'", "!!!"):
            store.lexical_candidates(q, text, 5)  # never a syntax error
        assert len(store.lexical_candidates(q, "closing time", 5)) == 1  # stemmed: closes ~ closing
        assert store.lexical_candidates(CandidateQuery(scope=Scope(tenant="other")), "closes", 5) == []


# -- errors and plumbing ----------------------------------------------------------------------------------


def test_unreachable_server_is_a_store_error_with_the_password_masked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    dsn = f"postgresql://memq:s3cret@/memq?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StoreError) as info:
        PostgresStore(dsn)
    assert "s3cret" not in str(info.value) and "***" in str(info.value)


def test_mask_dsn() -> None:
    assert (
        mask_dsn("postgresql://u:pw@h:5432/db?sslmode=require")
        == "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert mask_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert "pw" not in mask_dsn("postgresql://u@h/db?password=pw&host=/tmp")
    assert mask_dsn("host=h user=u password='p w' dbname=d") == "host=h user=u password=*** dbname=d"
    assert mask_dsn("host=h password=pw") == "host=h password=***"


def test_write_retry_policy() -> None:
    """Both stores retry a deadlock victim with a short backoff; anything else, the last attempt, or a
    ``retry`` that says no ends the write with the translated store error."""
    deadlock = psycopg.errors.DeadlockDetected("deadlock detected")
    assert 0 < retry_delay(deadlock, 0, "here", None) <= 0.03
    assert retry_delay(psycopg.errors.SerializationFailure("x"), 1, "here", lambda: True) > 0
    with pytest.raises(StoreError, match="PostgreSQL at here failed"):
        retry_delay(deadlock, WRITE_ATTEMPTS - 1, "here", None)
    with pytest.raises(StoreError):
        retry_delay(deadlock, 0, "here", lambda: False)
    with pytest.raises(ConflictError) as info:
        retry_delay(psycopg.errors.UniqueViolation("dup"), 0, "here", None)
    assert isinstance(info.value.__cause__, psycopg.errors.UniqueViolation)


def test_store_location_and_stats_per_tenant(pg_url: str) -> None:
    rng = np.random.default_rng(11)
    with PostgresStore(pg_url) as store:
        assert store.backend == "postgres" and store.location == mask_dsn(pg_url)
        store.insert(_records("a", 3, 4, rng) + _records("b", 2, 4, rng, kind="note"))
        assert store.stats("b").records == 2 and store.stats("b").kinds == {"note": 2}
        assert store.stats().tenants == 2 and store.stats().kinds == {"fact": 3, "note": 2}


def _drop_backends(url: str) -> None:
    """Terminate every other session on the store's database, as a server restart would."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.mark.parametrize("window", [0.0, 3600.0])
def test_a_pooled_connection_is_checked_unless_handed_out_recently(
    pg_url: str, window: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CHECK_IDLE`` seconds after it was last handed out, a connection is checked before it is handed
    out again, so one the server dropped is replaced unseen; within the window it is handed out
    unchecked, fails with a StoreError, and the pool replaces it for the next call."""
    monkeypatch.setattr(steps, "CHECK_IDLE", window)
    store = PostgresStore(pg_url, min_size=1, max_size=1)
    try:
        assert store.stats("t").records == 0
        _drop_backends(pg_url)
        if window:
            with pytest.raises(StoreError, match="connection or server problem"):
                store.stats("t")
        assert store.stats("t").records == 0
    finally:
        store.close()


@pytest.mark.parametrize("window", [0.0, 3600.0])
async def test_the_async_pool_skips_the_check_for_recent_connections_too(
    pg_url: str, window: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps, "CHECK_IDLE", window)
    store = await AsyncPostgresStore.connect(pg_url, min_size=1, max_size=1)
    try:
        assert (await store.stats("t")).records == 0
        await asyncio.to_thread(_drop_backends, pg_url)
        if window:
            with pytest.raises(StoreError, match="connection or server problem"):
                await store.stats("t")
        assert (await store.stats("t")).records == 0
    finally:
        await store.close()


# -- forked reads: one search's dense and lexical queries on two connections, one snapshot ---------------


def _count_with_pid() -> Op[tuple[int, int]]:
    row = yield Q("SELECT count(*), pg_backend_pid() FROM records", mode="one")
    return int(row[0]), int(row[1])


def _fork_sees_the_snapshot(
    insert_elsewhere: Callable[[], object],
) -> Op[tuple[int, Any, int, tuple[int, int]]]:
    """Counts the rows, lets another session commit a row, then forks the same count."""
    before, pid = yield from _count_with_pid()
    insert_elsewhere()
    handle = yield Fork(_count_with_pid())
    forked = yield Join(handle)
    return before, handle, pid, forked


def test_a_forked_read_runs_beside_in_the_same_snapshot(pg_url: str) -> None:
    """With a connection free (the pools here start full), a forked read runs on it, in a worker thread, and sees the snapshot of
    the read that forked it: not a row another session committed in between. With none free (a pool
    of one) it runs on the first connection when joined, in the same snapshot."""
    rng = np.random.default_rng(5)
    with PostgresStore(pg_url, min_size=2, max_size=2) as store, PostgresStore(pg_url, max_size=1) as lone:
        store.insert(_records("t", 3, 8, rng))
        before, handle, pid, (count, forked_pid) = store._read(
            lambda: _fork_sees_the_snapshot(lambda: store.insert(_records("t", 1, 8, rng)))
        )
        assert not isinstance(handle, Deferred) and forked_pid != pid
        assert count == before == 3 and store.stats("t").records == 4
        before, handle, pid, (count, forked_pid) = lone._read(
            lambda: _fork_sees_the_snapshot(lambda: store.insert(_records("t", 1, 8, rng)))
        )
        assert isinstance(handle, Deferred) and forked_pid == pid
        assert count == before == 4 and store.stats("t").records == 5


async def test_the_async_store_forks_reads_too(pg_url: str) -> None:
    rng = np.random.default_rng(6)
    with PostgresStore(pg_url) as writer:
        writer.insert(_records("t", 3, 8, rng))
        for size, forks in ((2, True), (1, False)):
            store = await AsyncPostgresStore.connect(pg_url, min_size=size, max_size=size)
            try:
                before, handle, pid, (count, forked_pid) = await store._read(
                    lambda: _fork_sees_the_snapshot(lambda: writer.insert(_records("t", 1, 8, rng)))
                )
                assert isinstance(handle, asyncio.Task) is forks and (forked_pid != pid) is forks
                assert count == before and writer.stats("t").records == before + 1
            finally:
                await store.close()


def test_a_forked_read_that_fails_fails_the_read(pg_url: str) -> None:
    def failing() -> Op[None]:
        yield Q("SELECT no_such_column FROM records")

    def forks_a_failure() -> Op[None]:
        yield Q("SELECT 1")
        yield Join((yield Fork(failing())))

    with PostgresStore(pg_url) as store:
        with pytest.raises(StoreError, match="no_such_column"):
            store._read(forks_a_failure)
        assert store.stats().records == 0  # the pool still serves


@pytest.mark.parametrize("size", [1, 4])
def test_a_hybrid_search_finds_what_each_signal_finds_alone(pg_url: str, size: int) -> None:
    """search_candidates forks the dense search (pool of 4) or runs it after the lexical one (pool of
    1): the same candidates as each signal's own search. After a bulk load the forked dense search
    asks for the index build (IndexBehind, raised at the join), and the search is then answered."""
    rng = np.random.default_rng(8)
    with PostgresStore(pg_url, min_size=size, max_size=size) as store:
        recs = _records("t", 1500, 16, rng)
        for i, r in enumerate(recs):
            r.text = f"note {i} about {'ravens' if i % 7 == 0 else 'the weather'}"
        store.insert(recs)
        assert _graph(pg_url)[1] >= hnsw.BUILD_TAIL  # nothing in the graph yet
        query = CandidateQuery(scope=Scope(tenant="t"))
        vec = rng.normal(size=16).astype(np.float32)
        pool = store.search_candidates(query, 20, vector=vec, text="ravens")
        assert _graph(pg_url)[1] == 0 and store.verify_index()  # the search built the index first
        assert [c.id for c in pool.signals["dense"]] == _exact_top(recs, vec, 20)
        assert pool.signals["lexical"] == store.lexical_candidates(query, "ravens", 20)
        assert pool.signals["dense"] == store.dense_candidates(query, vec, 20)
        assert set(pool.rows) == {c.id for found in pool.signals.values() for c in found}


def test_the_insert_clash_check_is_planned_for_each_batch(pg_url: str) -> None:
    """The check that a batch's ids are new is never a prepared statement: psycopg prepares a statement
    run five times on a connection, and a generic plan made while the table was small scans it whole."""

    def prepared() -> Op[list[str]]:
        rows = yield Q("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in rows]

    rng = np.random.default_rng(9)
    with PostgresStore(pg_url, min_size=1, max_size=1) as store:
        for _ in range(8):
            store.insert(_records("t", 3, 8, rng))
        statements = store._read(prepared)
        assert any("FROM meta" in s for s in statements)  # the insert's other statements are prepared
        assert not any("WHERE id = ANY" in s and "LIMIT 1" in s for s in statements)


def test_the_text_index_keeps_a_short_pending_list(pg_url: str) -> None:
    """Every lexical search scans the GIN index's pending list, so it is flushed at 256 kB (schema 6),
    on a new store and on one migrated from schema 5."""

    def options() -> list[str]:
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT reloptions FROM pg_class WHERE relname = 'records_tsv'").fetchone()
        return list(row[0] or [])

    PostgresStore(pg_url).close()
    assert options() == ["gin_pending_list_limit=256"]
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to schema 5
        conn.execute("ALTER INDEX records_tsv RESET (gin_pending_list_limit)")
        conn.execute("DELETE FROM memq_schema WHERE version = 6")
    assert options() == []
    PostgresStore(pg_url).close()
    assert options() == ["gin_pending_list_limit=256"]
