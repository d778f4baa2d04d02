"""What every part of the SQLite store shares: the connection, transactions, time and row mapping.

* Writes run in ``BEGIN IMMEDIATE`` transactions; a busy database is retried with backoff until
  ``lock_timeout`` seconds have passed, so several processes can share one file and callers never
  see "database is locked" unless the file stays locked that long (then: :class:`StoreError`).
* One writer connection, behind one lock, runs this process's transactions and keeps the in-memory
  indexes; reads run on a small pool of reader connections (WAL mode: readers never wait for the
  writer, and threads read in parallel).
"""

from __future__ import annotations

import json
import queue
import random
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from memq.errors import ConflictError, DimensionMismatchError, StoreError
from memq.store import sqlcommon
from memq.store.base import EventRow
from memq.store.sqlcommon import (
    RECORD_COLUMNS,
    UTILITY_SELECT,
    RowDecoder,
    RowEncoder,
    TrainingRows,
)
from memq.store.sqlite.lexical import LexicalIndex
from memq.store.sqlite.schema import migrate
from memq.store.sqlite.vectors import VectorIndex
from memq.types import HistoryOp, Link, MemoryRecord, Utility

T = TypeVar("T")

EXACT_THRESHOLD = 20_000  # from this many vectors on, an HNSW graph picks dense candidates
# light rows of candidates kept in memory for search (memq.store.sqlite.mirror): ~1.2 KB each on the
# store benchmark's corpus (benchmarks/mirror_ab.py), so at most ~250 MB
MIRROR_ROWS = 200_000
READERS = 4  # reader connections kept per store (more threads share them)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(value: datetime | None) -> int | None:
    """A datetime as integer microseconds since the Unix epoch (how SQLite keeps time)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _vector(blob: bytes) -> list[float]:
    return np.frombuffer(blob, dtype=np.float32).tolist()


def _blob(embedding: Sequence[float] | None) -> bytes | None:
    """float32 bytes of an embedding; a list (what records hold) packed by struct, three times faster
    than through numpy, which takes what struct refuses (a value beyond float32's range: inf)."""
    if embedding is None:
        return None
    if isinstance(embedding, list):
        try:
            return struct.pack(f"={len(embedding)}f", *embedding)
        except (struct.error, OverflowError, TypeError):
            pass
    with np.errstate(over="ignore"):  # beyond float32's range is inf, as documented: no warning
        return np.asarray(embedding, dtype=np.float32).tobytes()


def _json(text: str) -> Any:
    """A stored JSON document's value; the empty object and list (most metadata, payloads and id
    lists) without the parser."""
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _dumps(value: Any, *, ensure_ascii: bool = True) -> str:
    """A document's JSON text; the empty object and list (most metadata, payloads and id lists)
    without the encoder."""
    if not value and isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(value, ensure_ascii=ensure_ascii)


# how sqlite3 returns what this store wrote, and takes what it writes (memq.store.sqlcommon maps the
# rows): times as integer microseconds, JSON as text, vectors as float32 blobs
DECODE = RowDecoder(time=from_us, json=_json, vector=_vector)
ENCODE = RowEncoder(time=to_us, document=partial(_dumps, ensure_ascii=False), ids=_dumps, vector=_blob)
utility_of = partial(sqlcommon.utility_of, decode=DECODE)


# -- whole records, one statement ---------------------------------------------------------------------

# what :func:`columns` adds after a record's own columns: its utility row (from the join in
# ``RECORDS``, NULLs without one) and its links as a JSON array of [target, type, created_at], so one
# statement reads whole records, in one snapshot
_EXTRAS = (
    f", {UTILITY_SELECT}, "
    "(SELECT json_group_array(json_array(l.dst, l.type, l.created_at)) FROM links l WHERE l.src = r.id)"
)
_COLUMNS = ", ".join("r." + c.strip() for c in RECORD_COLUMNS.split(","))
# the FROM clause of a statement that selects ``columns(...)``; ``RECORDS_BY_ROWID`` for a statement
# that finds its rows by rowid and must not walk an index of records to do it
RECORDS = "records r LEFT JOIN utility u ON u.id = r.id"
RECORDS_BY_ROWID = "records r NOT INDEXED LEFT JOIN utility u ON u.id = r.id"


def columns(with_embedding: bool) -> str:
    """The select list :func:`hydrate` builds records from (``FROM {RECORDS}``): the record's columns,
    its vector with ``with_embedding``, then its utility and links."""
    return _COLUMNS + (", r.embedding" if with_embedding else "") + _EXTRAS


def _links(doc: str) -> list[Link]:
    """A record's links from its JSON array of [target, type, created_at], oldest first (then by
    target), as they were made."""
    if doc == "[]":
        return []
    return [Link(target=dst, type=typ) for dst, typ, _ in sorted(json.loads(doc), key=lambda x: (x[2], x[0]))]


def hydrate(rows: Sequence[Sequence[Any]], with_embedding: bool) -> list[MemoryRecord]:
    """MemoryRecords from rows of ``columns(with_embedding)`` read ``FROM {RECORDS}`` (the record's
    utility and links come in the same row)."""
    return sqlcommon.whole_records(rows, DECODE, _links, with_embedding)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def marks(n: int) -> str:
    return ",".join("?" * n)


class SavedMark(Protocol):
    """What a loaded index file says of itself: its watermarks and anchor (``vectors.Watermark``,
    ``lexical.LexWatermark``)."""

    rows: int
    removed: int
    anchor: tuple[int, str] | None


class SavedIndex(Protocol):
    """An index kept beside the file (``VectorIndex``, ``LexicalIndex``), as :meth:`SQLiteBase._adopt`
    sees it."""

    mark: SavedMark

    def __len__(self) -> int: ...


IndexT = TypeVar("IndexT", bound=SavedIndex)


class SQLiteBase:
    """The connection and its transactions (the parts of :class:`SQLiteStore` build on it)."""

    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout: float = 60.0,
        exact_threshold: int = EXACT_THRESHOLD,
        mirror_rows: int = MIRROR_ROWS,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.lock_timeout = lock_timeout
        self.exact_threshold = exact_threshold
        self.mirror_rows = mirror_rows  # light rows kept in memory for search (mirror.py); 0: none
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
        self._data_version: int | None = None  # PRAGMA data_version when the index last caught up
        self._unsaved = 0  # rows added to the index since it was last saved
        self._lex: LexicalIndex | None = None  # the lexical index (memq.store.sqlite.lexical)
        self._lex_version: int | None = None  # PRAGMA data_version when it last caught up
        self._lex_unsaved = 0  # rows it took in since it was last saved
        self._training_rows = TrainingRows()  # decoded training rows kept between fits
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._conn.execute("PRAGMA busy_timeout = 5000")
        self._retry(lambda: self._conn.execute("PRAGMA journal_mode = WAL"))
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._retry(lambda: migrate(self._conn))
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._reader_count = 0
        self._closed = False

    @property
    def index_path(self) -> Path:
        return self.path.with_name(self.path.name + ".usearch")

    @property
    def lexical_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lexical")

    def _retry(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.005
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                msg = str(exc).lower()
                if ("locked" not in msg and "busy" not in msg) or time.monotonic() > deadline:
                    raise StoreError(f"SQLite error on {self.path}: {exc}") from exc
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.25)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one IMMEDIATE transaction, retried whole while the database is busy."""

        def attempt() -> T:
            with self._lock:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(self._conn)
                    self._conn.execute("COMMIT")
                    return result
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise

        try:
            return self._retry(attempt)
        except sqlite3.IntegrityError as exc:
            raise ConflictError(f"write rejected by a constraint: {exc}") from exc

    def _reader(self) -> sqlite3.Connection:
        """A reader connection from the pool (opened on demand, at most ``READERS`` kept)."""
        try:
            return self._readers.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._closed:
                raise StoreError(f"the store {self.path} is closed")
            self._reader_count += 1
        try:
            conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = 1")
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        if self._closed or self._readers.qsize() >= READERS:
            conn.close()
        else:
            self._readers.put(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One query on a reader connection: it sees every committed write, and waits for no writer."""
        conn = self._reader()
        try:
            return self._retry(lambda: conn.execute(sql, params).fetchall())
        finally:
            self._release(conn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._index is not None and self._unsaved:
                try:
                    self._sync_index()
                    self._save_index()
                except (OSError, RuntimeError, StoreError):
                    pass  # the index is a cache; it is rebuilt on open if stale
            if self._lex is not None and self._lex_unsaved:
                try:
                    self._sync_lexical()
                    self._save_lexical()
                except (OSError, StoreError):
                    pass  # a cache too: caught up from its watermarks on open
            self._conn.close()
            self._closed = True
            while not self._readers.empty():
                self._readers.get_nowait().close()

    def __enter__(self) -> SQLiteBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # the candidates part (memq.store.sqlite.candidates) keeps the vector index
    def _sync_index(self) -> VectorIndex | None:
        raise NotImplementedError

    # -- the indexes' files ------------------------------------------------------------------------
    def _save_index(self) -> None:
        """Save the vector index beside the file, anchored at its last row (lock held)."""
        if self._index is not None:
            self._index.save(self.index_path, self._anchor(self._index.last_row()))
            self._unsaved = 0

    def _save_lexical(self) -> None:
        """Save the lexical index beside the file, anchored at its last row (lock held)."""
        if self._lex is not None:
            self._lex.save(self.lexical_path, anchor=self._anchor(self._lex.last_row()))
            self._lex_unsaved = 0

    def _anchor(self, rowid: int | None) -> tuple[int, str] | None:
        """(rowid, record id) of a row: what a saved index file keeps of its last row (None: no row)."""
        if rowid is None:
            return None
        found = self._retry(
            lambda: self._conn.execute("SELECT id FROM records WHERE rowid = ?", (rowid,)).fetchone()
        )
        return None if found is None else (rowid, found[0])

    def _adopt(
        self,
        saved: IndexT | None,
        log: str,
        fresh: Callable[[], IndexT],
        catch_up: Callable[[IndexT], None],
        rows: Callable[[], int],
    ) -> tuple[IndexT, bool]:
        """The index to use on open (lock held): the one loaded from its file (``saved``) when the file
        matches the rows (:meth:`_file_matches`, ``log`` its removal log), else ``fresh()``; caught up
        either way. A file without an anchor (an older memq's) is checked by its entry count against
        ``rows()`` after the catch-up. True with the index when it was rebuilt because the file did
        not match (the caller saves it; a missing or unreadable file is simply built)."""
        fits = None if saved is None else self._file_matches(saved.mark, log)
        index = fresh() if saved is None or fits is False else saved
        catch_up(index)
        if saved is not None and fits is None and len(index) != rows():
            fits, index = False, fresh()
            catch_up(index)
        return index, fits is False

    def _file_matches(self, mark: SavedMark, log: str) -> bool | None:
        """Whether a saved index file (its watermarks and anchor, ``mark``) describes this database's
        rows (lock held). Rowids are never reused (AUTOINCREMENT) and every removal is logged (``log``,
        by trigger), so a file matches when the database's sequences have reached its watermarks and
        its last row is still there with the same record id, or was removed after the file's removal
        watermark: a few primary-key lookups, where counting the rows reads a whole index of the
        table. None: the file has no anchor (an empty index, or an older memq's file): the caller
        counts the rows instead."""
        seqs = dict(
            self._retry(
                lambda: self._conn.execute(
                    "SELECT name, seq FROM sqlite_sequence WHERE name IN ('records', ?)", (log,)
                ).fetchall()
            )
        )
        if mark.rows > seqs.get("records", 0) or mark.removed > seqs.get(log, 0):
            return False  # the file saw rows or removals this database has not
        if mark.anchor is None:
            return None
        rowid = mark.anchor[0]
        found = self._anchor(rowid)
        if found is not None:
            return found == mark.anchor
        gone = self._retry(
            lambda: self._conn.execute(
                f"SELECT 1 FROM {log} WHERE seq > ? AND row = ? LIMIT 1", (mark.removed, rowid)
            ).fetchone()
        )
        return gone is not None

    def _index_added(self, wrote_vectors: bool) -> None:
        raise NotImplementedError

    def _sync_lexical(self) -> LexicalIndex:
        raise NotImplementedError

    # -- embedding space ----------------------------------------------------------------------------
    def embedding_space(self) -> tuple[str, int] | None:
        rows = dict(
            self._read("SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim')")
        )
        if "embedding_model" not in rows:
            return None
        return rows["embedding_model"], int(rows["embedding_dim"])

    def set_embedding_space(self, model_id: str, dim: int) -> None:
        self._write(lambda conn: check_or_set_space(conn, model_id, dim))


# -- helpers used inside transactions ---------------------------------------------------------------


def write_utilities(conn: sqlite3.Connection, tenant: str, utilities: Iterable[tuple[str, Utility]]) -> None:
    """Insert or replace the utility rows of (record id, utility) pairs, in one ``executemany``."""
    conn.executemany(
        "INSERT INTO utility (id, tenant, q, n_shown, n_used, reward_sum, last_feedback_at, stats) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET q = excluded.q, n_shown = excluded.n_shown, "
        "n_used = excluded.n_used, reward_sum = excluded.reward_sum, last_feedback_at = excluded.last_feedback_at, "
        "stats = excluded.stats",
        [(rid, tenant, *_utility_values(u)) for rid, u in utilities],
    )


def _utility_values(u: Utility) -> tuple[Any, ...]:
    return u.q, u.n_shown, u.n_used, u.reward_sum, to_us(u.last_feedback_at), json.dumps(u.stats)


def check_or_set_space(conn: sqlite3.Connection, model_id: str, dim: int) -> None:
    rows = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim')"
        ).fetchall()
    )
    if not rows:
        conn.execute("INSERT INTO meta (key, value) VALUES ('embedding_model', ?)", (model_id,))
        conn.execute("INSERT INTO meta (key, value) VALUES ('embedding_dim', ?)", (str(dim),))
        return
    if rows["embedding_model"] != model_id or int(rows["embedding_dim"]) != dim:
        raise DimensionMismatchError(
            f"this store holds vectors of {rows['embedding_model']!r} ({rows['embedding_dim']}-d); "
            f"the embedder is {model_id!r} ({dim}-d). Use the same embedder, or re-embed the store "
            "with `memq reembed` / Memory.reembed()"
        )


def spaces(records: Sequence[MemoryRecord]) -> list[tuple[str, int]]:
    """The distinct (model id, dimension) pairs of the records that carry vectors."""
    return sorted({(r.embedding_model or "", len(r.embedding)) for r in records if r.embedding is not None})


def event(conn: sqlite3.Connection, e: EventRow) -> None:
    conn.execute(
        "INSERT INTO events (tenant, record_id, op, version, at, actor, reason) VALUES (?,?,?,?,?,?,?)",
        (e.tenant, e.record_id, HistoryOp(e.op).value, e.version, to_us(e.at), e.actor, e.reason),
    )
