"""The SQLite store's index files against its rows: the check a saved file passes on open
(``SQLiteBase._file_matches``: its watermarks against the database's sequences and its last row, the
"anchor", against the rows, instead of counting them), and ``memq check`` (every row compared)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from memq.store.base import CandidateQuery
from memq.store.sqlite import SQLiteStore
from memq.types import MemoryRecord, Scope

DIM = 16
INDEX_FILES = (".usearch.json", ".usearch.mirror.pack", ".lexical", ".lexical.json")


def _records(seed: int, n: int, word: str) -> list[MemoryRecord]:
    vecs = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return [
        MemoryRecord(
            scope=Scope(tenant="t"),
            text=f"{word} note number {i}",
            embedding=v.tolist(),
            embedding_model="test:random",
        )
        for i, v in enumerate(vecs)
    ]


def _saved_store(path: Path, records: list[MemoryRecord]) -> None:
    store = SQLiteStore(path)
    store.insert(records)
    store.close()  # saves both indexes beside the file
    for suffix in INDEX_FILES:
        assert path.with_name(path.name + suffix).exists()


def _first_hits(store: SQLiteStore, record: MemoryRecord, word: str) -> tuple[str, str]:
    """The first dense hit for the record's vector and the first lexical hit for its text."""
    query = CandidateQuery(scope=Scope(tenant="t"))
    dense = store.dense_candidates(query, np.asarray(record.embedding, dtype=np.float32), 1)
    lexical = store.lexical_candidates(query, f"{word} {record.text.split()[-1]}", 1)
    return dense[0].id, lexical[0].id


def _purged_and_put_back(path: Path, recs: list[MemoryRecord]) -> None:
    """A store of ``recs`` saved with recs[3] purged; then, by plain SQL, a copy of recs[4] with id
    ``back-again`` put under recs[3]'s old rowid (below the saved files' watermarks)."""
    store = SQLiteStore(path)
    store.insert(recs)
    (rowid,) = store._conn.execute("SELECT rowid FROM records WHERE id = ?", (recs[3].id,)).fetchone()
    store.purge("t", [recs[3].id])
    store.close()
    raw = sqlite3.connect(path)
    columns = [r[1] for r in raw.execute("PRAGMA table_info(records)") if r[1] != "rowid"]
    raw.execute(
        f"INSERT INTO records (rowid, {', '.join(columns)}) SELECT ?, "
        + ", ".join("'back-again'" if c == "id" else c for c in columns)
        + " FROM records WHERE id = ?",
        (rowid, recs[4].id),
    )
    raw.commit()
    raw.close()


def _set_anchors(path: Path, anchor: object) -> None:
    """Both sidecars' anchor replaced (``...``: removed, as an older memq wrote them)."""
    for suffix in (".usearch.json", ".lexical.json"):
        side = path.with_name(path.name + suffix)
        meta = json.loads(side.read_text())
        if anchor is ...:
            del meta["anchor"]
        else:
            meta["anchor"] = anchor
        side.write_text(json.dumps(meta))


def _statements(store: SQLiteStore) -> list[str]:
    seen: list[str] = []
    store._conn.set_trace_callback(seen.append)
    return seen


def test_opening_saved_indexes_counts_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    recs = _records(0, 40, "apple")
    _saved_store(path, recs)
    store = SQLiteStore(path)
    seen = _statements(store)
    assert _first_hits(store, recs[5], "apple") == (recs[5].id, recs[5].id)
    assert store._index is not None and store._index.mark.anchor is not None
    assert store._lex is not None and store._lex.mark.anchor is not None
    assert not [s for s in seen if "count(" in s.lower()], seen
    assert store.verify_index() and store.verify_lexical()
    store.close()


def test_index_files_of_another_database_are_rebuilt(tmp_path: Path) -> None:
    """Same number of rows, same watermarks, other records: counting the rows cannot tell the files
    apart; the anchor (the last row's record id) can."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    _saved_store(a, _records(1, 30, "apple"))
    theirs = _records(2, 30, "banana")
    _saved_store(b, theirs)
    for suffix in INDEX_FILES:
        shutil.copyfile(a.with_name(a.name + suffix), b.with_name(b.name + suffix))
    store = SQLiteStore(b)
    assert _first_hits(store, theirs[7], "banana") == (theirs[7].id, theirs[7].id)
    assert store.verify_index() and store.verify_lexical()
    store.close()
    anchor = json.loads(b.with_name("b.db.lexical.json").read_text())["anchor"]
    assert anchor[1] == theirs[-1].id  # rebuilt and saved anew at once


def test_index_files_newer_than_the_database_are_rebuilt(tmp_path: Path) -> None:
    """A database restored from a backup beside index files saved later: they have seen rows the
    database never had (watermark past its sequence)."""
    path = tmp_path / "r.db"
    first = _records(3, 25, "cherry")
    _saved_store(path, first)
    shutil.copyfile(path, tmp_path / "backup.db")
    store = SQLiteStore(path)
    store.insert(_records(4, 10, "damson"))
    store.close()
    shutil.copyfile(tmp_path / "backup.db", path)
    for stale in ("r.db-wal", "r.db-shm"):
        (tmp_path / stale).unlink(missing_ok=True)
    store = SQLiteStore(path)
    assert _first_hits(store, first[4], "cherry") == (first[4].id, first[4].id)
    assert len(store._sync_index() or []) == 25
    assert store.verify_index() and store.verify_lexical()
    store.close()


def test_a_row_deleted_outside_memq_leaves_both_indexes(tmp_path: Path) -> None:
    """A plain SQL delete is logged for both indexes by trigger (vec_removed since schema 9), so a
    store with its indexes open drops the row, and the saved files still match on the next open."""
    path = tmp_path / "d.db"
    recs = _records(5, 30, "elder")
    _saved_store(path, recs)
    store = SQLiteStore(path)
    assert _first_hits(store, recs[9], "elder") == (recs[9].id, recs[9].id)
    raw = sqlite3.connect(path)
    raw.execute("DELETE FROM records WHERE id = ?", (recs[9].id,))
    raw.commit()
    raw.close()
    dense, lexical = _first_hits(store, recs[9], "elder")
    assert recs[9].id not in (dense, lexical)
    assert store.verify_index() and store.verify_lexical()
    store.close()
    again = SQLiteStore(path)
    seen = _statements(again)
    assert recs[9].id not in _first_hits(again, recs[9], "elder")
    assert not [s for s in seen if "count(" in s.lower()], seen
    again.close()


@pytest.mark.parametrize("disagree", [False, True])
def test_an_older_memqs_files_are_checked_by_counting_the_rows(tmp_path: Path, disagree: bool) -> None:
    """Files saved without an anchor fall back to the row count: kept when it agrees, rebuilt when
    it does not (here a row put back by plain SQL under a purged row's rowid, below the watermark)."""
    path = tmp_path / "o.db"
    recs = _records(6, 30, "fig")
    if disagree:
        _purged_and_put_back(path, recs)
    else:
        _saved_store(path, recs)
    _set_anchors(path, ...)
    store = SQLiteStore(path)
    seen = _statements(store)
    assert _first_hits(store, recs[8], "fig") == (recs[8].id, recs[8].id)
    assert len([s for s in seen if "count(" in s.lower()]) == 2  # one check per index
    assert store.verify_index() and store.verify_lexical()
    ids = {c.id for c in store.lexical_candidates(CandidateQuery(scope=Scope(tenant="t")), "fig note", 40)}
    assert ("back-again" in ids) is disagree
    store.close()


@pytest.mark.parametrize("anchor", [["not a rowid", 1], [1], "garbage", [True, "x"]])
def test_a_sidecar_with_a_malformed_anchor_is_rebuilt(tmp_path: Path, anchor: object) -> None:
    path = tmp_path / "m.db"
    recs = _records(7, 20, "grape")
    _saved_store(path, recs)
    _set_anchors(path, anchor)
    store = SQLiteStore(path)
    assert _first_hits(store, recs[2], "grape") == (recs[2].id, recs[2].id)
    store.close()
    for side in ("m.db.usearch.json", "m.db.lexical.json"):  # rebuilt and saved with a good anchor
        meta = json.loads((tmp_path / side).read_text())
        assert meta["anchor"] == [meta["rows"], recs[-1].id]


def test_memq_check_finds_what_the_open_check_cannot_and_rebuild_mends_it(tmp_path: Path) -> None:
    """A row put back by plain SQL under a purged rowid, below the saved files' watermarks: the files
    still match on open (their anchor is intact), so only a comparison with the rows finds it."""
    from typer.testing import CliRunner

    from memq.cli import app

    path = tmp_path / "k.db"
    recs = _records(8, 30, "kiwi")
    _purged_and_put_back(path, recs)
    runner = CliRunner()
    args = ["--db", str(path), "--tenant", "t", "--embedder", "hashing", "--json", "check"]
    found = runner.invoke(app, args)
    assert found.exit_code == 1, found.output
    report = json.loads(found.output)
    assert report["ok"] is False
    assert report["indexes"]["lexical"] == {"rows": 30, "indexed": 29, "ok": False}
    assert report["indexes"]["vector"] == {"rows": 30, "indexed": 29, "ok": False}
    mended = runner.invoke(app, [*args, "--rebuild"])
    assert mended.exit_code == 0, mended.output
    assert json.loads(mended.output)["indexes"]["vector"] == {"rows": 30, "indexed": 30, "ok": True}
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    store = SQLiteStore(path)
    ids = {c.id for c in store.lexical_candidates(CandidateQuery(scope=Scope(tenant="t")), "kiwi note", 40)}
    assert "back-again" in ids
    store.close()


def test_memq_check_on_postgresql_says_there_is_nothing_to_check(pg_url: str) -> None:
    from typer.testing import CliRunner

    from memq.cli import app

    result = CliRunner().invoke(app, ["--db", pg_url, "--embedder", "hashing", "--json", "check"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] is True and report["indexes"] == {} and "PostgreSQL" in report["note"]
