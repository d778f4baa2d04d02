"""The SQLite store's lexical candidates: the in-memory BM25 index beside the file, kept current on
every write, saved, reloaded and caught up, rebuilt when its file cannot be trusted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memq.store.base import CandidateQuery, VersionChange
from memq.store.sqlite import SQLiteStore
from memq.types import HistoryOp, MemoryRecord, Scope


def _records(n: int, tenant: str = "t", user: str | None = None, start: int = 0) -> list[MemoryRecord]:
    return [
        MemoryRecord(
            scope=Scope(tenant=tenant, user=user), text=f"note {start + i} about topic{(start + i) % 7}"
        )
        for i in range(n)
    ]


def _ids(store: SQLiteStore, text: str, n: int = 10, **scope: str) -> list[str]:
    scope.setdefault("tenant", "t")
    return [c.id for c in store.lexical_candidates(CandidateQuery(scope=Scope(**scope)), text, n)]


def _fts5_order(texts: dict[str, str], query: str, n: int) -> list[str]:
    """FTS5's own ranking of the same texts (what the store returned before the index)."""
    from memq.store.sqlcommon import query_terms

    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE VIRTUAL TABLE f USING fts5(rid UNINDEXED, x, tokenize='porter unicode61 remove_diacritics 2')"
    )
    db.executemany("INSERT INTO f (rid, x) VALUES (?, ?)", texts.items())
    match = " OR ".join(f'"{t}"' for t in query_terms(query))
    return [
        r for (r,) in db.execute("SELECT rid FROM f WHERE f MATCH ? ORDER BY rank, rowid LIMIT ?", (match, n))
    ]


def test_a_search_right_after_an_add_finds_it_and_ranks_as_fts5(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "a.db")
    recs = _records(200)
    store.insert(recs)
    extra = MemoryRecord(scope=Scope(tenant="t"), text="a rare zanzibar sighting")
    store.insert([extra])
    assert _ids(store, "zanzibar?") == [extra.id]
    texts = {r.id: r.text for r in [*recs, extra]}
    for q in ("topic3 notes", "note 17 topic2", "about zanzibar topic5"):
        got = _ids(store, q, 5)
        want = _fts5_order(texts, q, 5)
        assert got == want
    assert store.verify_lexical()
    store.close()


def test_scope_expired_versions_and_purge(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    alice = _records(30, user="alice")
    bob = _records(30, user="bob", start=30)
    other = _records(30, tenant="other")
    store.insert([*alice, *bob, *other])
    got = _ids(store, "note topic1", 100, tenant="t", user="alice")
    assert got and set(got) <= {r.id for r in alice}
    assert set(_ids(store, "note", 100, tenant="t")) == {r.id for r in [*alice, *bob]}
    # a new version replaces the old one in the results (the old row stays in the index, filtered out)
    old = alice[0]
    new = old.model_copy(
        update={"version": 2, "text": "note renamed to quokka", "recorded_at": old.recorded_at}
    )
    store.write_version(VersionChange(tenant="t", record_id=old.id, new=new, op=HistoryOp.UPDATE))
    assert _ids(store, "quokka", 5, tenant="t") == [old.id]
    # the old version's words no longer find the record: its row is expired
    assert old.id not in _ids(store, "topic0", 100, tenant="t", user="alice")
    assert alice[7].id in _ids(store, "topic0", 100, tenant="t", user="alice")
    # purge: gone from the index and its statistics at once
    assert store.purge("t", [r.id for r in bob[:10]]) == 10
    assert not set(_ids(store, "note", 100, tenant="t")) & {r.id for r in bob[:10]}
    assert store.verify_lexical()
    store.close()


def test_saved_reloaded_and_caught_up_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    store = SQLiteStore(path)
    store.insert(_records(100))
    assert _ids(store, "topic1")
    store.close()
    assert path.with_name("p.db.lexical").exists()
    # another process writes without saving the index (killed): the file on disk is behind now
    writer = SQLiteStore(path)
    late = _records(20, start=100)
    writer.insert(late)
    writer.purge("t", [late[0].id])
    writer._conn.close()
    reader = SQLiteStore(path)
    assert late[1].id in _ids(reader, f"note {101}", 3)
    assert late[0].id not in _ids(reader, "note 100", 50)
    assert reader.verify_lexical()
    # a concurrent writer's rows reach an open reader (PRAGMA data_version)
    other = SQLiteStore(path)
    fresh = MemoryRecord(scope=Scope(tenant="t"), text="wombat crossing")
    other.insert([fresh])
    assert _ids(reader, "wombat") == [fresh.id]
    other.close()
    reader.close()


def test_a_corrupt_index_file_is_rebuilt_from_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = SQLiteStore(path)
    recs = _records(50)
    store.insert(recs)
    before = _ids(store, "note topic4", 20)
    store.close()
    path.with_name("c.db.lexical").write_bytes(b"not an index")
    again = SQLiteStore(path)
    assert _ids(again, "note topic4", 20) == before
    assert again.verify_lexical()
    again.close()


def test_a_database_from_before_the_index_is_migrated_and_indexed(tmp_path: Path) -> None:
    from memq.store.sqlite.schema import MIGRATIONS, _split

    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(MIGRATIONS[:4]):  # the schema with FTS5, before migration 5
        for statement in _split(script):
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {version + 1}")
    db.execute(
        "INSERT INTO records (id, version, tenant, kind, text, payload, metadata, source_message_ids, "
        "parent_ids, recorded_at) VALUES ('r1', 1, 't', 'episode', 'an old platypus note', '{}', '{}', '[]', '[]', 0)"
    )
    db.close()
    store = SQLiteStore(path)
    assert _ids(store, "platypus") == ["r1"]
    tables = {r[0] for r in store._conn.execute("SELECT name FROM sqlite_master")}
    assert "records_fts" not in tables and "lex_removed" in tables
    store.purge("t", ["r1"])
    assert _ids(store, "platypus") == [] and store.verify_lexical()
    store.close()
