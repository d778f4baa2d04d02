"""The SQLite store's light-row mirror (memq.store.sqlite.mirror): a search's candidate rows come from
memory, and after every kind of write — by this store, by another connection, through any path —
they are what SQL returns for the same query."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memq import Memory
from memq.embed import HashingEmbedder
from memq.store.base import CandidateQuery, VersionChange
from memq.store.sqlite import SQLiteStore, mirror
from memq.store.sqlite.mirror import RowMirror
from memq.types import HistoryOp, Link, MemoryRecord, Scope

NOW = datetime.now(UTC)


def _queries() -> list[CandidateQuery]:
    """Every shape of query the mirror answers by itself (no metadata filter)."""
    past, future = NOW - timedelta(days=400), NOW + timedelta(days=400)
    return [
        CandidateQuery(scope=Scope(tenant="t")),
        CandidateQuery(scope=Scope(tenant="t", user="alice")),
        CandidateQuery(scope=Scope(tenant="t", user="bob", agent="a1")),
        CandidateQuery(scope=Scope(tenant="t", session="s1")),
        CandidateQuery(scope=Scope(tenant="other")),
        CandidateQuery(scope=Scope(tenant="t"), include_invalidated=True),
        CandidateQuery(scope=Scope(tenant="t"), valid_at=past),
        CandidateQuery(scope=Scope(tenant="t"), valid_at=future),
        CandidateQuery(scope=Scope(tenant="t"), as_of=NOW - timedelta(seconds=1)),
        CandidateQuery(scope=Scope(tenant="t"), as_of=future, include_invalidated=True),
    ]


def _agrees(store: SQLiteStore) -> bool:
    return all(store.verify_mirror(q) for q in _queries())


def _valid_to(i: int) -> datetime | None:
    """Invalidated in the past, or to be invalidated in the future, or open."""
    return NOW - timedelta(days=10) if i % 11 == 0 else NOW + timedelta(days=10) if i % 11 == 3 else None


def _seed(store: SQLiteStore) -> list[MemoryRecord]:
    """Records across scopes, tenants and world times, with links and utility."""
    recs = []
    for i in range(40):
        recs.append(
            MemoryRecord(
                scope=Scope(
                    tenant="other" if i % 10 == 9 else "t",
                    user=("alice", "bob", None)[i % 3],
                    agent="a1" if i % 4 == 0 else None,
                    session="s1" if i % 5 == 0 else None,
                ),
                text=f"note {i} about topic{i % 7}",
                metadata={"speaker": "Ann"} if i % 6 == 0 else {},
                valid_from=NOW - timedelta(days=1000) if i % 8 == 0 else None,
                valid_to={0: NOW - timedelta(days=10), 3: NOW + timedelta(days=10)}.get(
                    i % 11 if i != 3 else 3
                ),
                recorded_at=NOW - timedelta(days=3),
            )
        )
    recs[1] = recs[1].model_copy(
        update={"links": [Link(target=recs[2].id), Link(target=recs[4].id, type="cites")]}
    )
    store.insert(recs)
    store.add_stats("t", {recs[5].id: {"hits": 2.0}})
    return recs


Pair = tuple[SQLiteStore, SQLiteStore, list[MemoryRecord]]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[Pair]:
    """A seeded store, a second connection to its file (another writer), and the seeded records."""
    a = SQLiteStore(tmp_path / "m.db")
    recs = _seed(a)
    b = SQLiteStore(tmp_path / "m.db")
    yield a, b, recs
    b.close()
    a.close()


def test_the_mirror_answers_every_query_shape_as_sql_cold_and_warm(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    _seed(store)
    assert _agrees(store)  # cold: every row is read from SQLite, then kept
    assert store._mirror is not None and len(store._mirror) == 40
    assert _agrees(store)  # warm: every row from memory
    store.close()


def test_each_kind_of_write_reaches_a_warm_mirror(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "w.db")
    recs = _seed(store)
    assert _agrees(store)
    old = recs[0]
    new = old.model_copy(update={"version": 2, "text": "renamed quokka", "links": [Link(target=recs[7].id)]})
    store.write_version(VersionChange(tenant="t", record_id=old.id, new=new, op=HistoryOp.UPDATE))
    assert _agrees(store)  # the old version expired, the new one and its link seen
    store.add_stats("t", {recs[2].id: {"hits": 1.0}, recs[6].id: {"misses": 3.0}})
    assert _agrees(store)  # utility inserted and updated
    store.delete("t", recs[12].id)
    assert _agrees(store)
    store.archive("t", [recs[13].id])
    assert _agrees(store)
    store.restore("t", recs[13].id)
    assert _agrees(store)
    assert store.purge("t", [recs[1].id, recs[2].id]) == 2  # rows, utility and links deleted
    assert _agrees(store)
    store.close()


def test_memory_writes_feedback_and_invalidation_reach_it(tmp_path: Path) -> None:
    mem = Memory(SQLiteStore(tmp_path / "f.db"), embedder=HashingEmbedder(dim=64), scope="t")
    ids = [r.id for r in mem.add([f"fact {i} about cats and dogs" for i in range(12)])]
    store = mem.store
    res = mem.search("cats and dogs", k=5)
    assert _agrees(store)
    mem.feedback(res.id, 1.0, used=[res.records[0].id])  # utility written by the learner
    assert _agrees(store)
    mem.invalidate(ids[3])
    mem.update(ids[4], text="fact four about parrots")
    assert _agrees(store)
    after = mem.search("cats and dogs", k=12)
    assert ids[3] not in {r.id for r in after.records}
    mem.close()


def test_writes_by_another_connection_reach_it(pair: Pair) -> None:
    a, b, recs = pair
    assert _agrees(a)
    b.add_stats("t", {recs[0].id: {"hits": 5.0}})
    b.delete("t", recs[3].id)
    new = recs[6].model_copy(update={"version": 2, "text": "moved on"})
    b.write_version(VersionChange(tenant="t", record_id=recs[6].id, new=new, op=HistoryOp.UPDATE))
    assert _agrees(a)


def test_a_log_pruned_past_the_watermark_clears_the_mirror(pair: Pair) -> None:
    a, b, recs = pair
    assert _agrees(a)
    b.add_stats("t", {recs[0].id: {"hits": 5.0}})  # a change the mirror has not read yet...
    raw = sqlite3.connect(a.path)
    raw.execute("DELETE FROM row_changes")  # ...pruned away before it could
    raw.commit()
    raw.close()
    b.add_stats("t", {recs[1].id: {"hits": 1.0}})
    assert _agrees(a)  # recs[0]'s entry did not survive: the gap cleared everything


def test_the_log_prunes_itself(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "l.db")
    recs = _seed(store)
    with store._lock:  # 70,000 logged changes in one transaction, through the trigger
        store._conn.execute("BEGIN")
        store._conn.executemany(
            "UPDATE utility SET n_shown = n_shown + 1 WHERE id = ?", [(recs[5].id,)] * 70_000
        )
        store._conn.execute("COMMIT")
    count, top = store._conn.execute("SELECT count(*), max(seq) FROM row_changes").fetchone()
    assert top >= 70_000 and count <= 65_536 + 4_096
    assert _agrees(store)
    store.close()


def test_a_row_read_before_a_change_is_not_kept() -> None:
    rows = RowMirror(mark=0)
    # rowid, id, kind, text, valid_from, recorded_at, no utility or links, metadata, tenant, no scope or times
    key, entry = mirror.entry_of((1, "r1", "fact", "t", None, 1, *[None] * 6, "{}", "t", *[None] * 5))
    epoch = rows.epoch
    rows.apply([(1, "r9")])  # a change applied while the row was read
    rows.put([(key, entry)], epoch, 10)
    assert len(rows) == 0
    rows.put([(key, entry)], rows.epoch, 10)
    assert len(rows) == 1
    rows.apply([(2, "r1")])
    assert len(rows) == 0


def test_a_full_mirror_starts_again_and_stays_right(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.db", mirror_rows=7)
    _seed(store)
    assert _agrees(store)
    assert store._mirror is not None and len(store._mirror) <= 7
    store.close()


def test_an_older_database_gets_the_log(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    store = SQLiteStore(path)
    recs = _seed(store)
    store.close()
    raw = sqlite3.connect(path)
    for (name,) in raw.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND sql LIKE '%row_changes%'"
    ).fetchall():
        raw.execute(f"DROP TRIGGER {name}")
    raw.execute("DROP TABLE row_changes")
    raw.execute("PRAGMA user_version = 6")
    raw.commit()
    raw.close()
    store = SQLiteStore(path)
    assert _agrees(store)
    store.add_stats("t", {recs[0].id: {"hits": 1.0}})
    assert _agrees(store)
    store.close()


def test_rows_just_added_are_kept_and_a_disabled_mirror_reads_sql(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "n.db")
    store.insert([MemoryRecord(scope=Scope(tenant="t"), text=f"first {i}") for i in range(10)])
    store.insert([MemoryRecord(scope=Scope(tenant="t"), text=f"second {i}") for i in range(20)])
    assert store._mirror is not None and len(store._mirror) == 20  # the second batch, read once
    assert _agrees(store)
    off = SQLiteStore(tmp_path / "n.db", mirror_rows=0)
    keys = [r[0] for r in store._conn.execute("SELECT rowid FROM records")]
    for q in _queries():  # the same answers as the mirrored store, read from SQLite, nothing kept
        assert off._light_rows(q, keys) == store._light_rows(q, keys)
    assert off._mirror is None
    off.close()
    store.close()


def test_concurrent_reads_and_writes_leave_it_current(pair: Pair) -> None:
    """Readers filling the mirror while writers change what it holds, in threads of this process and
    through a second connection: once all are done, every answer is SQL's (a row read before a change
    and kept after it would show here)."""
    import random
    import threading

    store, other, recs = pair
    keys = [r[0] for r in store._conn.execute("SELECT rowid FROM records")]
    queries = _queries()
    errors: list[BaseException] = []

    def read(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(150):
                store._light_rows(rng.choice(queries), rng.sample(keys, 15))
        except BaseException as exc:  # reported below
            errors.append(exc)

    def write(seed: int, target: SQLiteStore) -> None:
        rng = random.Random(seed)
        try:
            for i in range(60):
                rid = rng.choice(recs[:30]).id
                target.add_stats("t", {rid: {"hits": 1.0}})
                if i == 0:
                    target.delete("t", recs[30 + seed].id)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(s,)) for s in range(3)]
    threads += [threading.Thread(target=write, args=(s, store if s % 2 else other)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _agrees(store)


def test_at_its_bound_the_mirror_drops_the_half_it_took_in_first() -> None:
    """A store larger than ``mirror_rows`` keeps the rows read or added last (it used to start again
    empty); every version's rowid leaves the id's list with it, and a change still drops the rest."""
    from memq.store.base import CandidateRow

    def entry(rid: str) -> mirror.Entry:
        row = CandidateRow(id=rid, kind="fact", text=rid, links=(), valid_from=None, recorded_at=NOW)
        return mirror.Entry(row, "t", None, None, None, None, 0, None, None)

    rows = RowMirror(0)
    rows.put([(1, entry("a")), (2, entry("b")), (3, entry("a")), (4, entry("c"))], rows.epoch, limit=4)
    assert len(rows) == 4
    rows.put([(5, entry("d"))], rows.epoch, limit=4)  # the bound: rowids 1 and 2 go, 5 comes in
    found, missing = rows.lookup([1, 2, 3, 4, 5])
    assert sorted(found) == [3, 4, 5] and missing == [1, 2]
    rows.put([(4, entry("c"))], rows.epoch, limit=4)  # a row it holds is replaced, nothing dropped
    assert len(rows) == 3
    rows.apply([(1, "a")])  # a's other version (rowid 3) goes with the change; b's entry is gone already
    assert sorted(rows.lookup([3, 4, 5])[0]) == [4, 5]


def test_a_store_past_its_mirror_bound_answers_as_sql_does(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "small.db", mirror_rows=8)
    _seed(store)  # 40 records into a mirror of 8 rows
    assert _agrees(store) and len(store._mirror) <= 8
