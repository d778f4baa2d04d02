"""The SQLite store's HNSW path: over-fetching under filters, persistence, staleness, purge."""

from __future__ import annotations

import mmap
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from memq.store.base import CandidateQuery
from memq.store.sqlite import SQLiteStore
from memq.types import MemoryRecord, Scope

DIM = 32


@pytest.fixture(autouse=True)
def _one_graph_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Graphs built on one thread: the same graph every run, so what a test asserts about an
    approximate search holds or fails every time (on several threads, a query's own vector is
    missing from its 64 candidates about 1 time in 100 here)."""
    from memq.store.sqlite import vectors

    monkeypatch.setattr(vectors, "GRAPH_THREADS", 1)


def _records(rng: np.random.Generator, n: int, tenant: str, start: int = 0) -> list[MemoryRecord]:
    vecs = rng.normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        MemoryRecord(
            scope=Scope(tenant=tenant),
            text=f"{tenant} item {start + i}",
            metadata={"i": start + i},
            embedding=v.tolist(),
            embedding_model="test:random",
        )
        for i, v in enumerate(vecs)
    ]


def test_ann_path_returns_filtered_results_and_agrees_with_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    store = SQLiteStore(tmp_path / "a.db", exact_threshold=500)
    big = _records(rng, 3000, "big")
    small = _records(rng, 15, "small")
    store.insert(big)
    store.insert(small)
    query = np.asarray(big[42].embedding, dtype=np.float32)
    # the HNSW path (3,015 vectors > threshold) finds the record itself first
    top = store.dense_candidates(CandidateQuery(scope=Scope(tenant="big")), query, 10)
    assert top[0].id == big[42].id and len(top) == 10
    # a tenant with 15 rows: the over-fetch cannot find 10 of them, so exact search takes over
    small_top = store.dense_candidates(CandidateQuery(scope=Scope(tenant="small")), query, 10)
    assert len(small_top) == 10 and {c.id for c in small_top} <= {r.id for r in small}
    exact = sorted(small, key=lambda r: -float(np.dot(r.embedding, query)))[:10]
    assert [c.id for c in small_top] == [r.id for r in exact]
    # recall of the HNSW path against exact search
    exact_store = SQLiteStore(tmp_path / "b.db", exact_threshold=10**9)
    exact_store.insert(big)
    hits = 0
    for i in range(0, 3000, 150):
        q = np.asarray(big[i].embedding, dtype=np.float32) + rng.normal(scale=0.3, size=DIM).astype(
            np.float32
        )
        q /= np.linalg.norm(q)
        scope = CandidateQuery(scope=Scope(tenant="big"))
        approx = {c.id for c in store.dense_candidates(scope, q, 10)}
        truth = {c.id for c in exact_store.dense_candidates(scope, q, 10)}
        hits += len(approx & truth)
    assert hits / (20 * 10) >= 0.9
    store.close()
    exact_store.close()


def test_index_is_saved_reloaded_and_caught_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "p.db"
    store = SQLiteStore(path, exact_threshold=10)
    store.insert(_records(rng, 100, "t"))
    assert store.verify_index()
    store.close()
    assert path.with_name("p.db.usearch").exists()
    # another writer adds rows without ever loading the index (as a crashed or index-less process would)
    writer = SQLiteStore(path, exact_threshold=10)
    later = _records(rng, 50, "t", start=100)
    writer.insert(later)
    writer._conn.close()  # no save: the index file on disk is stale now
    reader = SQLiteStore(path, exact_threshold=10)
    assert reader.verify_index()
    q = np.asarray(later[7].embedding, dtype=np.float32)
    assert reader.dense_candidates(CandidateQuery(scope=Scope(tenant="t")), q, 1)[0].id == later[7].id
    reader.close()


@pytest.mark.parametrize(
    ("name", "spoil"),
    [
        ("c.db.usearch", lambda data: b"garbage"),
        ("c.db.usearch.mirror.pack", lambda data: data[: len(data) // 2]),  # mapped: must not fault
        ("c.db.usearch.mirror.pack", lambda data: b"garbage"),
    ],
)
def test_corrupt_index_file_is_rebuilt(tmp_path: Path, name: str, spoil: Callable[[bytes], bytes]) -> None:
    rng = np.random.default_rng(2)
    path = tmp_path / "c.db"
    store = SQLiteStore(path, exact_threshold=10)
    recs = _records(rng, 80, "t")
    store.insert(recs)
    store.close()
    spoilt = path.with_name(name)
    spoilt.write_bytes(spoil(spoilt.read_bytes()))
    again = SQLiteStore(path, exact_threshold=10)
    q = np.asarray(recs[3].embedding, dtype=np.float32)
    assert again.dense_candidates(CandidateQuery(scope=Scope(tenant="t")), q, 1)[0].id == recs[3].id
    assert again.verify_index()
    again.close()


def _mapped(array: np.ndarray) -> bool:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)


def test_a_store_reading_mapped_index_files_survives_another_store_saving_over_them(tmp_path: Path) -> None:
    """Two stores on one file, both opened on saved (mapped) indexes: one adds, purges and saves new
    files over the ones the other has mapped; the other still answers from its mapping, catches up
    with the rows, and sees its own adds."""
    from memq.store.sqlite.vectors import _pack_file

    rng = np.random.default_rng(8)
    path = tmp_path / "m.db"
    first = SQLiteStore(path, exact_threshold=10)
    recs = _records(rng, 120, "t")
    first.insert(recs)
    first.close()  # saves the indexes: the stores below map them
    a, b = SQLiteStore(path, exact_threshold=10), SQLiteStore(path, exact_threshold=10)
    scope = CandidateQuery(scope=Scope(tenant="t"))
    q = np.asarray(recs[7].embedding, dtype=np.float32)
    assert a.dense_candidates(scope, q, 1)[0].id == b.dense_candidates(scope, q, 1)[0].id == recs[7].id
    assert a.lexical_candidates(scope, "item 7", 1)[0].id == recs[7].id
    if os.name == "posix":  # both of a's indexes read their saved files through a mapping
        assert _mapped(a._index._mat) and _mapped(a._lex._segments[0].docs)
    before = _pack_file(a.index_path).stat().st_ino
    later = _records(rng, 30, "t", start=120)
    b.insert(later)
    assert b.purge("t", [recs[9].id]) == 1
    b.close()  # new index files replace the mapped ones
    assert _pack_file(a.index_path).stat().st_ino != before
    q_late = np.asarray(later[3].embedding, dtype=np.float32)
    assert a.dense_candidates(scope, q_late, 1)[0].id == later[3].id  # b's rows, caught up
    assert a.dense_candidates(scope, q, 1)[0].id == recs[7].id  # from a's own mapping
    q_gone = np.asarray(recs[9].embedding, dtype=np.float32)
    assert all(c.id != recs[9].id for c in a.dense_candidates(scope, q_gone, 5))
    own = _records(rng, 5, "t", start=500)
    a.insert(own)
    assert a.dense_candidates(scope, np.asarray(own[2].embedding, dtype=np.float32), 1)[0].id == own[2].id
    assert a.lexical_candidates(scope, "item 502", 1)[0].id == own[2].id
    assert a.verify_index() and a.verify_lexical()
    a.close()


def test_purge_in_one_process_reaches_the_index_of_another(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "d.db"
    a = SQLiteStore(path, exact_threshold=10)
    b = SQLiteStore(path, exact_threshold=10)
    recs = _records(rng, 60, "t")
    a.insert(recs)
    q = np.asarray(recs[5].embedding, dtype=np.float32)
    scope = CandidateQuery(scope=Scope(tenant="t"))
    assert b.dense_candidates(scope, q, 1)[0].id == recs[5].id
    assert a.purge("t", [recs[5].id]) == 1
    assert all(c.id != recs[5].id for c in b.dense_candidates(scope, q, 5))
    assert a.verify_index() and b.verify_index()
    a.close()
    b.close()


def test_scope_bound_never_undercounts_the_scope_and_follows_adds_removals_and_reloads(
    tmp_path: Path,
) -> None:
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(3)
    index = VectorIndex(8, hnsw_from=10**9)
    scopes = [("t1", f"u{i % 3}", None, f"s{i % 5}") for i in range(40)] + [("t2", "u0", "a", None)] * 10
    index.add(np.arange(1, 51), rng.normal(size=(50, 8)).astype(np.float32), scopes)
    index.remove(np.array([2, 5, 41, 42]))

    def check(ix: VectorIndex) -> None:
        for scope in [("t1", None, None, None), ("t1", "u0", None, None), ("t2", "u0", None, None),
                      ("t1", "u1", None, "s2"), ("t2", None, "a", None), ("t3", None, None, None),
                      ("t1", "nobody", None, None)]:  # fmt: skip
            mask = ix.scope_mask(scope)
            rows = 0 if mask is None else int(mask.sum())
            bound = ix.scope_bound(scope)
            assert bound >= rows, scope
            if sum(v is not None for v in scope) == 1:  # one field: the bound is the count
                assert bound == rows, scope

    check(index)
    assert index.scope_bound(("t1", None, None, None)) == 38
    assert index.scope_bound(("t2", None, None, None)) == 8
    index.save(tmp_path / "ix")
    loaded = VectorIndex.load(tmp_path / "ix", 8, "")
    assert loaded is not None
    check(loaded)
    assert loaded.scope_bound(("t2", "u0", None, None)) == 8


def test_vectors_are_stored_as_float32_exactly(tmp_path: Path) -> None:
    """The list a record holds is written as the float32 values numpy would give (struct packs it),
    including values beyond float32's range (numpy's inf), and read back unchanged."""
    store = SQLiteStore(tmp_path / "m.db")
    values = np.random.default_rng(3).standard_normal(8).astype(np.float32).tolist()
    plain = MemoryRecord(scope=Scope(tenant="t"), text="plain", embedding=values)
    huge = MemoryRecord(scope=Scope(tenant="t"), text="huge", embedding=[*values[:7], 1e39])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the documented inf comes without numpy's overflow warning
        store.insert([plain, huge])
    found = store.vectors("t", [plain.id, huge.id])
    np.testing.assert_array_equal(found[plain.id], np.asarray(values, dtype=np.float32))
    assert found[huge.id][7] == np.inf and found[huge.id][:7].tolist() == values[:7]
    store.close()


def test_exact_search_sees_every_present_vector_after_removals_and_regrowth() -> None:
    """After removals (freed slots reused) and growth past the mirror's capacity, exact search
    returns what a brute-force scan of the present vectors returns."""
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(11)
    index = VectorIndex(8, hnsw_from=10**9)
    vecs: dict[int, np.ndarray] = {}

    def add(keys: range, user: str) -> None:
        v = rng.standard_normal((len(keys), 8)).astype(np.float32)
        index.add(np.array(list(keys)), v, [("t", user, None, None)] * len(keys))
        vecs.update(zip(keys, v, strict=True))

    add(range(1, 700), "a")
    removed = np.array(range(5, 600, 3))
    index.remove(removed)
    for k in removed.tolist():
        vecs.pop(k)
    add(range(700, 2500), "b")  # reuses the freed slots, then grows the mirror
    query = rng.standard_normal(8).astype(np.float32)
    keys, sims = index.exact(query, 40)
    brute = sorted(vecs, key=lambda k: -float(vecs[k] @ query))[:40]
    assert keys.tolist() == brute
    np.testing.assert_allclose(sims, [float(vecs[k] @ query) for k in brute], rtol=1e-5)
    keys, _ = index.exact(query, 10, index.scope_slots(("t", "a", None, None)))
    in_a = [k for k in vecs if k < 700]
    assert keys.tolist() == sorted(in_a, key=lambda k: -float(vecs[k] @ query))[:10]


def test_rows_fill_the_mirror_from_slot_zero_so_a_scan_reads_no_spare_capacity() -> None:
    """An add that outgrows the mirror while it still has free slots fills those first: the used
    slots stay packed below ``_top``, where exact search stops scanning."""
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(5)
    index = VectorIndex(8, hnsw_from=10**9)
    vecs = rng.standard_normal((1100, 8)).astype(np.float32)
    index.add(np.arange(1, 701), vecs[:700], [("t", None, None, None)] * 700)  # capacity 1,024
    index.add(np.arange(701, 1101), vecs[700:], [("t", None, None, None)] * 400)  # grows to 2,048
    assert index._top == len(index) == 1100
    query = rng.standard_normal(8).astype(np.float32)
    keys, _ = index.exact(query, 25)
    assert keys.tolist() == (np.argsort(-(vecs @ query), kind="stable")[:25] + 1).tolist()


def test_exact_similarities_do_not_depend_on_rows_added_and_removed_before() -> None:
    """Two indexes holding the same rows answer with bitwise-equal similarities, though one of them
    held more rows once (its used part is longer): a seeded run replays exactly (the RL environment
    relies on it). The scan is rounded up to whole ``SCAN_BLOCK``s for this."""
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(3)  # MiniLM's width: BLAS's blocking shows at it
    scope = ("t", None, None, None)
    for n in (50, 1500):
        vecs = rng.standard_normal((n + 39, 384)).astype(np.float32)
        plain = VectorIndex(384, hnsw_from=10**9)
        plain.add(np.arange(1, n + 1), vecs[:n], [scope] * n)
        churned = VectorIndex(384, hnsw_from=10**9)
        churned.add(np.arange(1, n + 1), vecs[:n], [scope] * n)
        churned.add(np.arange(n + 1, n + 40), vecs[n:], [scope] * 39)
        churned.remove(np.arange(n + 1, n + 40))
        for query in rng.standard_normal((30, 384)).astype(np.float32):
            keys, sims = plain.exact(query, 10)
            again, same = churned.exact(query, 10)
            assert keys.tolist() == again.tolist()
            assert sims.tobytes() == same.tobytes()


def test_scope_slots_are_kept_between_searches_and_follow_every_add_and_removal() -> None:
    from memq.store.sqlite.vectors import SCOPE_CACHE, VectorIndex

    rng = np.random.default_rng(5)
    index = VectorIndex(8, hnsw_from=10**9)
    index.add(
        np.arange(1, 41),
        rng.normal(size=(40, 8)).astype(np.float32),
        [("t", f"u{i % 4}", None, None) for i in range(40)],
    )
    scope = ("t", "u1", None, None)

    def fresh() -> list[int]:
        mask = index.scope_mask(scope)
        return [] if mask is None else np.flatnonzero(mask).tolist()

    first = index.scope_slots(scope)
    assert first is not None and first.tolist() == fresh() and len(first) == 10
    assert index.scope_slots(scope) is first  # kept: no pass over the slots
    index.add(
        np.array([41, 42]), rng.normal(size=(2, 8)).astype(np.float32), [scope, ("t", "u2", None, None)]
    )
    assert index.scope_slots(scope).tolist() == fresh() and len(fresh()) == 11
    index.remove(np.array([2, 6, 41]))  # rows 2 and 6 were u1's, like 41
    assert index.scope_slots(scope).tolist() == fresh() and len(fresh()) == 8
    assert index.scope_slots(("t", "nobody", None, None)) is None
    n = SCOPE_CACHE + 1
    sessions = [("t", "u9", None, f"s{i}") for i in range(n)]
    index.add(np.arange(100, 100 + n), rng.normal(size=(n, 8)).astype(np.float32), sessions)
    index.scope_slots(scope)
    for one in sessions:  # bounded: the least recently searched scope goes first
        assert index.scope_slots(one) is not None
    assert len(index._scopes) == SCOPE_CACHE and scope not in index._scopes


def test_kept_scope_slots_stay_equal_to_a_fresh_pass_through_random_adds_and_removals() -> None:
    from memq.store.sqlite.vectors import SCOPE_UPDATE_MAX, VectorIndex

    rng = np.random.default_rng(21)
    index = VectorIndex(4, hnsw_from=10**9)
    values: list[list[str | None]] = [
        ["t", "x"],
        [None, "u0", "u1", "u2"],
        [None, "a0", "a1"],
        [None, "s0", "s1"],
    ]

    def pick() -> tuple[str | None, ...]:
        return tuple(v[int(rng.integers(len(v)))] for v in values)

    present: set[int] = set()
    next_key = 1
    for step in range(300):
        kept = set(index._scopes)
        if present and rng.random() < 0.35:
            gone = rng.choice(sorted(present), size=min(len(present), int(rng.integers(1, 6))), replace=False)
            index.remove(np.asarray(gone, dtype=np.int64))
            present -= set(gone.tolist())
            assert set(index._scopes) == kept  # a small removal updates the kept lists
        else:
            n = int(rng.integers(1, 8)) if rng.random() < 0.9 else SCOPE_UPDATE_MAX + 1
            again = [k for k in range(1, next_key) if k not in present][: n // 2]  # freed rowids come back
            keys = np.array(again + list(range(next_key, next_key + n - len(again))), dtype=np.int64)
            next_key += n - len(again)
            index.add(keys, rng.normal(size=(len(keys), 4)).astype(np.float32), [pick() for _ in keys])
            present |= set(keys.tolist())
            assert set(index._scopes) == (set() if n > SCOPE_UPDATE_MAX else kept)  # a large add forgets
        for _ in range(3):
            index.scope_slots(pick())
        assert set(index._scope_codes.values()) == set(index._scopes)
        for scope, slots in index._scopes.items():
            mask = index.scope_mask(scope)
            assert mask is not None and slots.tolist() == np.flatnonzero(mask).tolist(), (step, scope)


def test_search_rescores_only_the_graphs_first_candidates_when_asked() -> None:
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(11)
    vecs = rng.normal(size=(600, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex(16, hnsw_from=100)
    index.add(np.arange(1, 601), vecs)
    assert index.has_graph
    query = vecs[7] + 0.1 * rng.normal(size=16).astype(np.float32)
    graph_first = np.asarray(index._graph.search(query, 120, threads=1).keys, dtype=np.int64)[:30]
    keys, sims = index.search(query, 120, rescore=30)
    assert sorted(keys.tolist()) == sorted(graph_first.tolist())  # those, and only those
    np.testing.assert_allclose(sims, vecs[keys - 1] @ query, rtol=1e-5)  # exact, best first
    assert list(sims) == sorted(sims, reverse=True)
    full_keys, _ = index.search(query, 120)
    assert len(full_keys) == 120 and set(keys.tolist()) <= set(full_keys.tolist())


def test_scope_slots_kept_never_outnumber_the_rows() -> None:
    from memq.store.sqlite.vectors import VectorIndex

    index = VectorIndex(8, hnsw_from=10**9)
    rows = np.random.default_rng(2).normal(size=(30, 8)).astype(np.float32)
    index.add(np.arange(1, 31), rows, [("t", f"u{i % 3}", None, None) for i in range(30)])
    tenant, user = ("t", None, None, None), ("t", "u0", None, None)
    assert len(index.scope_slots(tenant)) == 30
    assert len(index.scope_slots(user)) == 10  # 40 slots kept would outnumber the 30 rows
    assert list(index._scopes) == [user]
    assert len(index.scope_slots(tenant)) == 30  # still answered, and kept alone again
    assert list(index._scopes) == [tenant]


def test_the_check_on_open_counts_vectors_from_the_partial_index(tmp_path: Path) -> None:
    """A loaded vector index is checked against the number of rows with a vector; that count reads
    the small partial index (schema 8), not every row (14 s at 1M records), on a new database and on
    one migrated from schema 7."""
    import sqlite3

    from memq.store.sqlite.candidates import VECTOR_ROWS

    path = tmp_path / "v.db"
    store = SQLiteStore(path)
    store.insert(_records(np.random.default_rng(0), 30, "t"))
    store.close()
    raw = sqlite3.connect(path)
    raw.execute("DROP INDEX records_embedded")
    raw.execute("PRAGMA user_version = 7")
    raw.commit()
    raw.close()
    store = SQLiteStore(path)  # migrates to schema 8
    plan = " ".join(str(r) for r in store._conn.execute(f"EXPLAIN QUERY PLAN {VECTOR_ROWS}").fetchall())
    assert "records_embedded" in plan
    assert store._conn.execute(VECTOR_ROWS).fetchone()[0] == 30
    assert store.verify_index()
    store.close()


def test_a_loaded_graph_is_mapped_until_its_first_write(tmp_path: Path) -> None:
    """``load`` maps the saved graph (a searching process reads only what its searches touch); the
    first add or removal works on an in-memory copy, and the file is never read again for it: another
    process may have saved a newer one at that path meanwhile."""
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(12)
    vecs = rng.normal(size=(700, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    saved = VectorIndex(16, hnsw_from=100)
    saved.add(np.arange(1, 601), vecs[:600])
    path = tmp_path / "g.usearch"
    saved.save(path)
    query = vecs[3] + 0.05 * rng.normal(size=16).astype(np.float32)

    loaded = VectorIndex.load(path, 16, "", hnsw_from=100)
    assert loaded is not None and loaded._graph_mapped
    assert [k.tolist() for k in loaded.search(query, 20)] == [k.tolist() for k in saved.search(query, 20)]

    other = VectorIndex(16, hnsw_from=100)  # another process saves a different index at the path
    other.add(np.arange(1, 101), vecs[600:])
    other.save(path)

    loaded.add(np.arange(601, 651), vecs[600:650])  # the first write: a copy of the mapped graph
    loaded.remove(np.array([4]))
    assert not loaded._graph_mapped and len(loaded._graph) == 649 == len(loaded)
    keys, sims = loaded.search(vecs[620], 5)
    assert keys[0] == 621 and sims[0] > 0.999  # a row added after the load is found by the graph
    assert 4 not in loaded.search(vecs[3], 50)[0].tolist()


def _churned_index(rng: np.random.Generator, hnsw_from: int = 10**9):
    from memq.store.sqlite.vectors import VectorIndex

    vecs = rng.normal(size=(3000, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex(16, hnsw_from=hnsw_from)
    scopes = [("t", f"u{i % 7}", None, None) for i in range(3000)]
    index.add(np.arange(1, 3001), vecs, scopes)
    index.remove(np.arange(5, 3001, 9))  # holes below the top
    return index, vecs


def test_a_saved_mirror_loads_slot_for_slot(tmp_path: Path) -> None:
    """The mirror is saved with its slots (free ones keyed -1) and loaded as it is: the same rows in
    the same slots, so exact similarities are bitwise those of the saving process; scope counts and
    the free slots (lowest hole first) come back too."""
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(13)
    index, vecs = _churned_index(rng)
    path = tmp_path / "m.usearch"
    index.save(path)
    loaded = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert loaded is not None and len(loaded) == len(index) and loaded._top == index._top
    present = np.flatnonzero(index._slot >= 0)
    np.testing.assert_array_equal(loaded._slot[present], index._slot[present])
    for q in rng.normal(size=(5, 16)).astype(np.float32):
        for scope in (None, ("t", "u3", None, None)):
            slots_a = None if scope is None else index.scope_slots(scope)
            slots_b = None if scope is None else loaded.scope_slots(scope)
            a, b = index.exact(q, 50, slots_a), loaded.exact(q, 50, slots_b)
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1].tobytes() == b[1].tobytes()
    assert loaded.scope_bound(("t", "u3", None, None)) == index.scope_bound(("t", "u3", None, None))
    top = loaded._top
    loaded.add(np.array([5000]), vecs[:1], [("t", "u1", None, None)])
    assert loaded._slot[5000] < top and loaded._top == top  # a hole is reused, the scan does not grow


@pytest.mark.parametrize("graph", [True, False])
def test_a_loaded_mirror_is_mapped_and_a_write_leaves_its_file_alone(tmp_path: Path, graph: bool) -> None:
    """On POSIX the saved mirror of an index with a graph is mapped copy-on-write (without a graph
    every search scans it all, so it is read whole): loading reads only the keys and codes, and adds
    and removals after the load change this process's copy, never the file (another process may
    have it open); the next save replaces the file whole."""
    import hashlib

    from memq.store.sqlite.vectors import VectorIndex, _pack_file

    rng = np.random.default_rng(15)
    index, vecs = _churned_index(rng, hnsw_from=100 if graph else 10**9)
    assert index.has_graph == graph
    path = tmp_path / "m.usearch"
    index.save(path)
    digest = hashlib.sha256(_pack_file(path).read_bytes()).hexdigest()
    loaded = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert loaded is not None and loaded.has_graph == graph
    assert _mapped(loaded._mat) == (graph and os.name == "posix")
    loaded.add(np.array([7000, 7001]), vecs[:2], [("t", "u1", None, None)] * 2)
    loaded.remove(np.array([1, 2, 3]))
    assert hashlib.sha256(_pack_file(path).read_bytes()).hexdigest() == digest
    again = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert again is not None and 7000 not in again.all_keys() and 1 in again.all_keys()
    q = rng.normal(size=16).astype(np.float32)
    np.testing.assert_array_equal(again.exact(q, 30)[0], index.exact(q, 30)[0])
    keys, sims = loaded.exact(vecs[0], 1)
    assert keys[0] == 7000 and sims[0] > 0.999  # the process's own add, from its copy
    loaded.save(path)
    after = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert after is not None and {7000, 7001} <= set(after.all_keys()) and 1 not in after.all_keys()
    np.testing.assert_array_equal(after.exact(q, 30)[0], loaded.exact(q, 30)[0])


def test_a_mirror_saved_slot_by_slot_in_an_npz_still_loads(tmp_path: Path) -> None:
    """The layout memq saved before the mapped pack ("slots": an npz of keys, vectors, codes)
    loads as before; the next save writes the pack and removes the npz."""
    import json

    from memq.store.sqlite.arrays import sidecar
    from memq.store.sqlite.vectors import VectorIndex, _mirror_file, _pack_file, _whole_blocks

    rng = np.random.default_rng(16)
    index, _ = _churned_index(rng)
    path = tmp_path / "old.usearch"
    index.save(path)
    top = _whole_blocks(index._top)  # the slots save writes
    with open(_mirror_file(path), "wb") as out:
        np.savez(out, keys=index._key[:top], vectors=index._mat[:top], codes=index._codes[:top])
    _pack_file(path).unlink()
    meta = json.loads(sidecar(path).read_text())
    meta["layout"] = "slots"
    sidecar(path).write_text(json.dumps(meta))
    loaded = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert loaded is not None and len(loaded) == len(index) and loaded._top == index._top
    q = rng.normal(size=16).astype(np.float32)
    a, b = index.exact(q, 40), loaded.exact(q, 40)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].tobytes() == b[1].tobytes()
    loaded.save(path)
    assert _pack_file(path).exists() and not _mirror_file(path).exists()


def test_a_mirror_saved_packed_by_an_older_memq_still_loads(tmp_path: Path) -> None:
    import json

    from memq.store.sqlite.arrays import sidecar
    from memq.store.sqlite.vectors import VectorIndex, _mirror_file

    rng = np.random.default_rng(14)
    index, _ = _churned_index(rng)
    path = tmp_path / "old.usearch"
    index.save(path)
    used = np.flatnonzero(index._key >= 0)  # rewrite the files as memq wrote them before: rows packed
    with open(_mirror_file(path), "wb") as out:
        np.savez(out, keys=index._key[used], vectors=index._mat[used], codes=index._codes[used])
    meta = json.loads(sidecar(path).read_text())
    del meta["layout"]
    sidecar(path).write_text(json.dumps(meta))
    loaded = VectorIndex.load(path, 16, "", hnsw_from=10**9)
    assert loaded is not None and len(loaded) == len(index)
    q = rng.normal(size=16).astype(np.float32)
    a, b = index.exact(q, 40), loaded.exact(q, 40)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)


class _HeldGraph:
    """A usearch graph whose inserts wait for ``go`` (or fail with ``fail``): what a slow background
    insert looks like to the index."""

    def __init__(self, graph: object, fail: bool = False) -> None:
        self.graph, self.fail, self.go = graph, fail, threading.Event()

    def add(self, *args: object, **kwargs: object) -> object:
        self.go.wait(10)
        if self.fail:
            raise RuntimeError("insert failed")
        return self.graph.add(*args, **kwargs)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.graph, name)


def test_a_search_waits_for_the_graph_insert_of_the_rows_added_before_it() -> None:
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(5)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex(16, hnsw_from=100)
    index.add(np.arange(1, 201), vecs[:200])
    assert index.has_graph
    held = _HeldGraph(index._graph)
    index._graph = held
    index.add(np.arange(201, 301), vecs[200:])  # returns with the insert still held
    assert index._pending is not None and not index._pending.done()
    threading.Timer(0.2, held.go.set).start()  # the search below can only finish after this
    keys, _ = index.search(vecs[250], 10)
    assert keys[0] == 251  # the row added before the search, through the graph
    assert index._pending is None and len(held.graph) == 300


def test_a_failed_graph_insert_is_rebuilt_from_the_vectors(caplog: object) -> None:
    from memq.store.sqlite.vectors import VectorIndex

    rng = np.random.default_rng(6)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = VectorIndex(16, hnsw_from=100)
    index.add(np.arange(1, 201), vecs[:200])
    held = _HeldGraph(index._graph, fail=True)
    held.go.set()
    index._graph = held
    index.add(np.arange(201, 301), vecs[200:])
    keys, _ = index.search(vecs[260], 10)
    assert keys[0] == 261
    assert not isinstance(index._graph, _HeldGraph) and len(index._graph) == 300
    assert "rebuilding it from the vectors" in caplog.text  # type: ignore[attr-defined]


def _graph_store(tmp_path: Path) -> tuple[SQLiteStore, list[MemoryRecord]]:
    """A store whose 2,000 records (tenant "big", 40 users) are searched through the HNSW graph."""
    rng = np.random.default_rng(7)
    recs = _records(rng, 2000, "big")
    for i, r in enumerate(recs):
        r.scope = Scope(tenant="big", user=f"u{i % 40}")
        r.text = f"item {i} {'apple' if i % 3 else 'pear'} {'red' if i % 7 else 'green'}"
    store = SQLiteStore(tmp_path / "g.db", exact_threshold=500)
    store.insert(recs)
    return store, recs


def test_a_hybrid_search_runs_its_graph_search_beside_bm25_with_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both signals searching, the graph search runs on the search worker while this thread runs the
    BM25 search; the pool is the one each signal's own search gives. A scope small enough for an
    exact scan searches both on this thread."""
    from memq.store.sqlite.vectors import VectorIndex

    store, recs = _graph_store(tmp_path)
    threads: list[str] = []
    search = VectorIndex.search

    def recorded(self: VectorIndex, *args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread().name)
        return search(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(VectorIndex, "search", recorded)
    q = CandidateQuery(scope=Scope(tenant="big"))
    vector = np.asarray(recs[5].embedding, dtype=np.float32)
    both = store.search_candidates(q, 20, vector=vector, text="apple green")
    assert threads and threads[0].startswith("memq-search")
    dense = store.search_candidates(q, 20, vector=vector)
    lexical = store.search_candidates(q, 20, text="apple green")
    assert threads[-1] == threading.current_thread().name  # a dense search alone: on this thread
    assert both.signals == {"dense": dense.signals["dense"], "lexical": lexical.signals["lexical"]}
    assert both.signals["dense"][0].id == recs[5].id and len(both.signals["lexical"]) == 20
    assert both.rows == {**dense.rows, **lexical.rows}

    threads.clear()
    scoped = CandidateQuery(scope=Scope(tenant="big", user="u5"))  # 50 of 2,000 rows: exact
    store.search_candidates(scoped, 20, vector=vector, text="apple green")
    assert not threads  # the exact scan: no graph search at all
    store.close()


def test_a_failed_bm25_search_waits_for_the_graph_search_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock covers both searches: when the BM25 search raises, the graph search on the worker is
    waited for before the error leaves (and the lock with it)."""
    from memq.store.sqlite.lexical import LexicalIndex
    from memq.store.sqlite.vectors import VectorIndex

    store, recs = _graph_store(tmp_path)
    finished = threading.Event()
    search = VectorIndex.search

    def slow(self: VectorIndex, *args: object, **kwargs: object) -> object:
        out = search(self, *args, **kwargs)  # type: ignore[arg-type]
        threading.Event().wait(0.2)  # still searching when the BM25 search fails
        finished.set()
        return out

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("bm25 failed")

    monkeypatch.setattr(VectorIndex, "search", slow)
    monkeypatch.setattr(LexicalIndex, "search", broken)
    with pytest.raises(RuntimeError, match="bm25 failed"):
        store.search_candidates(
            CandidateQuery(scope=Scope(tenant="big")),
            20,
            vector=np.asarray(recs[1].embedding, dtype=np.float32),
            text="apple",
        )
    assert finished.is_set()
    store.close()


def test_hybrid_searches_from_several_threads_beside_adds_stay_correct(tmp_path: Path) -> None:
    """Four threads run hybrid searches (their graph searches go to the one search worker) while a
    fifth adds batches into the graph: nothing fails or waits forever, each search's pool equals the
    one its dense and lexical searches give alone afterwards, and every added row is found."""
    store, recs = _graph_store(tmp_path)
    rng = np.random.default_rng(8)
    added = _records(rng, 400, "big", start=2000)
    for r in added:
        r.text = f"added {r.text}"
    q = CandidateQuery(scope=Scope(tenant="big"))
    errors: list[BaseException] = []
    done = threading.Event()

    def search(seed: int) -> None:
        try:
            for i in range(40):
                vector = np.asarray(recs[(seed * 40 + i) % 2000].embedding, dtype=np.float32)
                pool = store.search_candidates(q, 20, vector=vector, text="apple green added")
                assert len(pool.signals["dense"]) == 20 and len(pool.signals["lexical"]) == 20
        except BaseException as exc:  # reported below
            errors.append(exc)

    def add() -> None:
        try:
            for start in range(0, len(added), 50):
                store.insert(added[start : start + 50])
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            done.set()

    threads = [threading.Thread(target=search, args=(s,)) for s in range(4)]
    threads.append(threading.Thread(target=add))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and done.is_set()
    assert not errors
    for r in added[::40]:  # every added row is in the graph, the mirror and the lexical index
        vector = np.asarray(r.embedding, dtype=np.float32)
        pool = store.search_candidates(q, 20, vector=vector, text=r.text)
        assert pool.signals["dense"][0].id == r.id
        assert r.id in {c.id for c in pool.signals["lexical"]}
        alone = (store.search_candidates(q, 20, vector=vector), store.search_candidates(q, 20, text=r.text))
        assert pool.signals == {"dense": alone[0].signals["dense"], "lexical": alone[1].signals["lexical"]}
    store.close()
