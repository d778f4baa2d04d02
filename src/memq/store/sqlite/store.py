"""The embedded SQLite store: one database file (WAL) plus a rebuildable vector index beside it.

* Writes run in ``BEGIN IMMEDIATE`` transactions; a busy database is retried with backoff until
  ``lock_timeout`` seconds have passed, so several processes can share one file and callers never
  see "database is locked" unless the file stays locked that long (then: :class:`StoreError`).
* Lexical search is FTS5 with BM25; dense search is exact below ``exact_threshold`` vectors and
  HNSW (usearch) above it, with over-fetching so filters cannot starve the result.
"""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from memq.errors import ConflictError, DimensionMismatchError, NotFoundError, StoreError
from memq.store.base import (
    Candidate,
    CandidateQuery,
    FeedbackPlan,
    PlanFn,
    StoredLearnerState,
    VersionChange,
    WriteBatch,
    merge_stats,
)
from memq.store.sqlcommon import RECORD_COLUMNS, archived_clause, query_terms, visibility
from memq.store.sqlite.schema import migrate
from memq.store.sqlite.vectors import VectorIndex
from memq.types import (
    FeedbackRecord,
    HistoryEvent,
    HistoryOp,
    Link,
    LoggedRetrieval,
    MemoryRecord,
    Page,
    PoolEntry,
    Provenance,
    Retrieval,
    Scope,
    ShownEntry,
    StoreStats,
    Utility,
    utcnow,
)

T = TypeVar("T")

EXACT_THRESHOLD = 20_000  # below this many vectors, dense search is exact
ANN_MAX_FETCH = 8192  # past this over-fetch, a selective filter falls back to exact search


def to_us(value: datetime | None) -> int | None:
    """A datetime as integer microseconds since the Unix epoch (how SQLite keeps time)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(value: int | None) -> datetime | None:
    if value is None:
        return None
    from datetime import timedelta

    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


class SQLiteStore:
    backend = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        lock_timeout: float = 60.0,
        exact_threshold: int = EXACT_THRESHOLD,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.lock_timeout = lock_timeout
        self.exact_threshold = exact_threshold
        self._lock = threading.RLock()
        self._index: VectorIndex | None = None
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
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------------
    @property
    def index_path(self) -> Path:
        return self.path.with_name(self.path.name + ".usearch")

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

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()

        return self._retry(run)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            if self._index is not None:
                try:
                    self._sync_index()
                    self._index.save(self.index_path)
                except (OSError, RuntimeError, StoreError):
                    pass  # the index is a cache; it is rebuilt on open if stale
            self._conn.close()
            self._closed = True

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- embedding space ----------------------------------------------------------------------
    def embedding_space(self) -> tuple[str, int] | None:
        rows = dict(
            self._read("SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim')")
        )
        if "embedding_model" not in rows:
            return None
        return rows["embedding_model"], int(rows["embedding_dim"])

    def set_embedding_space(self, model_id: str, dim: int) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            _check_or_set_space(conn, model_id, dim)

        self._write(tx)

    # -- writes --------------------------------------------------------------------------------
    def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        if not records:
            return

        spaces = _spaces(records)

        def tx(conn: sqlite3.Connection) -> None:
            for model_id, dim in spaces:
                _check_or_set_space(conn, model_id, dim)
            _insert_records(conn, records, op, actor, reason)

        self._write(tx)
        self._index_added(bool(spaces))

    def write_version(self, change: VersionChange) -> MemoryRecord:
        self._write(lambda conn: _write_version(conn, change))
        self._index_added(change.new.embedding is not None)
        return change.new

    def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        if batch.empty:
            return []
        spaces = _spaces(batch.records)

        def tx(conn: sqlite3.Connection) -> list[MemoryRecord]:
            for model_id, dim in spaces:
                _check_or_set_space(conn, model_id, dim)
            for group in batch.inserts:
                _insert_records(conn, group.records, group.op, group.actor, group.reason)
            written = [_write_version(conn, change) for change in batch.versions]
            _add_stats(conn, batch.tenant, batch.stats)
            return written

        # the index follows committed rows only (by rowid watermark): a rolled-back batch leaves it as it was
        written = self._write(tx)
        self._index_added(bool(spaces))
        return written

    def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "SELECT rowid, version FROM records WHERE id = ? AND tenant = ? AND expired_at IS NULL",
                (record_id, tenant),
            ).fetchone()
            if cur is None:
                raise NotFoundError(f"no current record {record_id} in tenant {tenant!r}")
            now = utcnow()
            conn.execute(
                "UPDATE records SET expired_at = ?, deleted = 1 WHERE rowid = ?", (to_us(now), cur[0])
            )
            _event(conn, tenant, record_id, HistoryOp.DELETE, cur[1], now, actor, reason)

        self._write(tx)

    def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            now = utcnow()
            count = 0
            for rid in ids:
                cur = conn.execute(
                    "SELECT rowid, version FROM records WHERE id = ? AND tenant = ? AND expired_at IS NULL",
                    (rid, tenant),
                ).fetchone()
                if cur is None:
                    continue  # unknown, deleted or archived meanwhile: nothing to archive
                conn.execute(
                    "UPDATE records SET expired_at = ?, deleted = 1 WHERE rowid = ?", (to_us(now), cur[0])
                )
                _event(conn, tenant, rid, HistoryOp.ARCHIVE, cur[1], now, actor, reason)
                count += 1
            return count

        return self._write(tx)

    def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        def tx(conn: sqlite3.Connection) -> None:
            last = conn.execute(
                "SELECT op FROM events WHERE tenant = ? AND record_id = ? ORDER BY seq DESC LIMIT 1",
                (tenant, record_id),
            ).fetchone()
            if last is None:
                raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
            if last[0] != HistoryOp.ARCHIVE.value:
                raise ConflictError(f"record {record_id} is not archived (its latest event is {last[0]!r})")
            row = conn.execute(
                "SELECT rowid, version FROM records WHERE tenant = ? AND id = ? ORDER BY version DESC LIMIT 1",
                (tenant, record_id),
            ).fetchone()
            now = utcnow()
            conn.execute(
                "INSERT INTO records (id, version, tenant, user_id, agent_id, session_id, kind, text, payload, "
                "metadata, source, source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, "
                "deleted, embedding_model, embedding) SELECT id, version + 1, tenant, user_id, agent_id, "
                "session_id, kind, text, payload, metadata, source, source_message_ids, parent_ids, valid_from, "
                "valid_to, ?, NULL, 0, embedding_model, embedding FROM records WHERE rowid = ?",
                (to_us(now), row[0]),
            )
            _event(conn, tenant, record_id, HistoryOp.RESTORE, row[1] + 1, now, actor, reason)

        self._write(tx)
        self._index_added(True)
        return self.get(tenant, [record_id])[0]

    def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        where, params = archived_clause(query, "sqlite", to_us)
        return self._page(where, params, cursor, limit)

    def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return 0

        def tx(conn: sqlite3.Connection) -> tuple[int, list[int]]:
            found: set[str] = set()
            rows: list[int] = []
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for rowid, rid, has_vec in conn.execute(
                    f"SELECT rowid, id, embedding IS NOT NULL FROM records WHERE tenant = ? AND id IN ({marks})",
                    (tenant, *chunk),
                ):
                    found.add(rid)
                    if has_vec:
                        rows.append(rowid)
                conn.execute(f"DELETE FROM records WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk))
                conn.execute(
                    f"DELETE FROM events WHERE tenant = ? AND record_id IN ({marks})", (tenant, *chunk)
                )
                conn.execute(f"DELETE FROM utility WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk))
                conn.execute(
                    f"DELETE FROM links WHERE tenant = ? AND (src IN ({marks}) OR dst IN ({marks}))",
                    (tenant, *chunk, *chunk),
                )
            conn.executemany("INSERT INTO vec_removed (row) VALUES (?)", [(r,) for r in rows])
            # erasure reaches the retrieval log too: drop searches that showed or considered these records
            for chunk in _chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "DELETE FROM retrievals WHERE tenant = ? AND ("
                    f"EXISTS (SELECT 1 FROM json_each(shown) WHERE json_extract(value, '$.id') IN ({marks})) OR "
                    f"EXISTS (SELECT 1 FROM json_each(pool) WHERE json_extract(value, '$.id') IN ({marks})))",
                    (tenant, *chunk, *chunk),
                )
            return len(found), rows

        count, rows = self._write(tx)
        if rows:
            with self._lock:
                self._sync_index()
        return count

    def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None:
        shown = [
            {"id": h.record.id, "rank": h.rank, "score": h.score, "propensity": h.propensity}
            for h in retrieval.hits
        ]
        blob = None if query_vector is None else np.asarray(query_vector, dtype=np.float32).tobytes()

        def tx(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO retrievals (id, tenant, query, policy, policy_version, k, shown, pool, query_vector, "
                "embedding_model, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    retrieval.id,
                    retrieval.scope.tenant,
                    retrieval.query,
                    retrieval.policy,
                    retrieval.policy_version,
                    retrieval.k,
                    json.dumps(shown),
                    json.dumps([p.model_dump(exclude_none=True) for p in pool]),
                    blob,
                    embedding_model,
                    to_us(retrieval.created_at),
                ),
            )

        self._write(tx)

    _RETRIEVAL_COLS = "id, tenant, query, query_vector, embedding_model, policy, policy_version, k, pool, shown, created_at, feedback"

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        rows = self._read(
            f"SELECT {self._RETRIEVAL_COLS} FROM retrievals WHERE tenant = ? AND id = ?",
            (tenant, retrieval_id),
        )
        if not rows:
            raise NotFoundError(
                f"no retrieval {retrieval_id} in tenant {tenant!r} (unknown, or pruned from the log)"
            )
        return _logged(rows[0])

    def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]:
        cond = " AND feedback IS NOT NULL" if with_feedback else ""
        rows = self._read(
            f"SELECT {self._RETRIEVAL_COLS} FROM retrievals WHERE tenant = ? AND created_at >= ?{cond} "
            "ORDER BY created_at, id LIMIT ?",
            (tenant, to_us(since) if since else 0, limit),
        )
        return [_logged(r) for r in rows]

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            if tenant is None:
                return conn.execute("DELETE FROM retrievals WHERE created_at < ?", (to_us(before),)).rowcount
            return conn.execute(
                "DELETE FROM retrievals WHERE tenant = ? AND created_at < ?", (tenant, to_us(before))
            ).rowcount

        return self._write(tx)

    def apply_feedback(
        self,
        tenant: str,
        retrieval_id: str,
        plan: PlanFn,
        *,
        learner: str | None = None,
        known_stamp: datetime | None = None,
    ) -> FeedbackPlan:
        def tx(conn: sqlite3.Connection) -> FeedbackPlan:
            row = conn.execute(
                f"SELECT {self._RETRIEVAL_COLS} FROM retrievals WHERE tenant = ? AND id = ?",
                (tenant, retrieval_id),
            ).fetchone()
            if row is None:
                raise NotFoundError(
                    f"no retrieval {retrieval_id} in tenant {tenant!r} (unknown, or pruned from the log)"
                )
            logged = _logged(row)
            ids = [s.id for s in logged.shown]
            current = {rid: Utility() for rid in ids}
            if ids:
                marks = ",".join("?" * len(ids))
                for row in conn.execute(
                    f"SELECT {_UTILITY_COLS} FROM utility WHERE tenant = ? AND id IN ({marks})",
                    (tenant, *ids),
                ):
                    current[row[0]] = _utility(row)
            # the IMMEDIATE transaction already holds the write lock: the learner row cannot change
            stored = None
            if learner is not None:
                got = conn.execute(
                    "SELECT updated_at FROM learner_state WHERE tenant = ? AND name = ?", (tenant, learner)
                ).fetchone()
                if got is not None:
                    state = None
                    if got[0] != to_us(known_stamp):
                        (raw,) = conn.execute(
                            "SELECT state FROM learner_state WHERE tenant = ? AND name = ?", (tenant, learner)
                        ).fetchone()
                        state = json.loads(raw)
                    stored = StoredLearnerState(state=state, updated_at=from_us(got[0]))
            result = plan(logged, current, stored)
            present = (
                {
                    r[0]
                    for r in conn.execute(
                        f"SELECT DISTINCT id FROM records WHERE tenant = ? AND id IN ({','.join('?' * len(ids))})",
                        (tenant, *ids),
                    )
                }
                if ids
                else set()
            )
            for rid, u in result.utilities.items():
                if rid in present:  # a record purged since the search gets no utility row back
                    _write_utility(conn, tenant, rid, u)
            conn.execute(
                "UPDATE retrievals SET feedback = ? WHERE id = ?",
                (result.feedback.model_dump_json(), retrieval_id),
            )
            if result.learner_state is not None:
                name, state = result.learner_state
                after = stored.updated_at if stored is not None and name == learner else None
                stamp = _save_state(conn, tenant, name, state, after=after)
                if name == learner:
                    result.learner_stamp = stamp
            elif learner is not None:
                result.learner_stamp = None if stored is None else stored.updated_at
            return result

        return self._write(tx)

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        if not deltas:
            return
        self._write(lambda conn: _add_stats(conn, tenant, deltas))

    def learner_state(self, tenant: str, name: str) -> dict | None:
        got = self.learner_state_stamped(tenant, name)
        return None if got is None else got[0]

    def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict, datetime] | None:
        rows = self._read(
            "SELECT state, updated_at FROM learner_state WHERE tenant = ? AND name = ?", (tenant, name)
        )
        if not rows:
            return None
        stamp = from_us(rows[0][1])
        assert stamp is not None
        return json.loads(rows[0][0]), stamp

    def save_learner_state(self, tenant: str, name: str, state: dict) -> datetime:
        return self._write(lambda conn: _save_state(conn, tenant, name, state))

    # -- reads ---------------------------------------------------------------------------------
    def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> list[MemoryRecord]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return []
        cols = RECORD_COLUMNS + (", embedding" if with_embedding else "")
        found: dict[str, MemoryRecord] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            # the latest version of each id
            rows = self._read(
                f"SELECT {cols} FROM records r WHERE r.tenant = ? AND r.id IN ({marks}) AND r.version = "
                "(SELECT max(version) FROM records x WHERE x.id = r.id)",
                (tenant, *chunk),
            )
            for record in self._hydrate(rows, with_embedding):
                if include_deleted or not record.deleted:
                    found[record.id] = record
        return [found[i] for i in ids if i in found]

    def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        where, params = visibility(query, "sqlite", to_us)
        return self._page(where, params, cursor, limit)

    def _page(self, where: str, params: list[Any], cursor: str | None, limit: int) -> Page:
        """Records matching ``where`` in id order after ``cursor``: one page and the next cursor."""
        if cursor is not None:
            where += " AND r.id > ?"
            params.append(cursor)
        rows = self._read(
            f"SELECT {RECORD_COLUMNS} FROM records r WHERE {where} ORDER BY r.id LIMIT ?",
            (*params, limit + 1),
        )
        records = self._hydrate(rows[:limit], False)
        next_cursor = records[-1].id if len(rows) > limit else None
        return Page(records=records, next_cursor=next_cursor)

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        ids = list(dict.fromkeys(ids))
        where, params = visibility(query, "sqlite", to_us)
        cols = RECORD_COLUMNS + (", embedding" if with_embedding else "")
        out: dict[str, MemoryRecord] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self._read(
                # look the candidates up by id (their rowids), never by walking the tenant's visibility index
                f"SELECT {cols} FROM records r NOT INDEXED WHERE r.rowid IN "
                f"(SELECT rowid FROM records WHERE id IN ({marks})) AND {where}",
                (*chunk, *params),
            )
            out.update((r.id, r) for r in self._hydrate(rows, with_embedding))
        return out

    def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        events = self._read(
            "SELECT op, version, at, actor, reason FROM events WHERE tenant = ? AND record_id = ? ORDER BY seq",
            (tenant, record_id),
        )
        if not events:
            raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
        rows = self._read(
            f"SELECT {RECORD_COLUMNS} FROM records r WHERE r.tenant = ? AND r.id = ? ORDER BY r.version",
            (tenant, record_id),
        )
        versions = {r.version: r for r in self._hydrate(rows, False)}
        return [
            HistoryEvent(
                record_id=record_id,
                op=HistoryOp(op),
                version=version,
                at=from_us(at),
                actor=actor,
                reason=reason,
                record=versions.get(version),
            )
            for op, version, at, actor, reason in events
        ]

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        with self._lock:
            index = self._sync_index()
            if index is None or len(index) == 0 or n <= 0:
                return []
            total = len(index)
            where, params = visibility(query, "sqlite", to_us)
            if total > self.exact_threshold:
                fetch = max(4 * n, 64)
                while True:
                    keys, sims = index.search(vector, fetch)
                    hits = self._visible_rows(keys, where, params)
                    result = [
                        Candidate(hits[int(k)], float(s))
                        for k, s in zip(keys, sims, strict=True)
                        if int(k) in hits
                    ]
                    result = _dedupe(result)
                    if len(result) >= n or fetch >= total:
                        return result[:n]
                    if fetch >= ANN_MAX_FETCH:
                        break  # the filter is selective: exact search over the few rows it keeps
                    fetch *= 4
            # rows without a vector are simply absent from the index; ids are looked up for the top only
            cur = self._conn.execute(f"SELECT r.rowid FROM records r WHERE {where}", params)
            rowids = np.array([r[0] for r in cur.fetchall()], dtype=np.int64)
            if len(rowids) == 0:
                return []
            keys, mat = index.vectors(rowids)
            sims = mat @ np.asarray(vector, dtype=np.float32)
            top = top_k_desc(sims, n)
            id_of = (
                dict(
                    self._conn.execute(
                        f"SELECT rowid, id FROM records WHERE rowid IN ({','.join('?' * len(top))})",
                        [int(keys[i]) for i in top],
                    ).fetchall()
                )
                if len(top)
                else {}
            )
            return _dedupe([Candidate(id_of[int(keys[i])], float(sims[i])) for i in top])[:n]

    def _visible_rows(self, keys: np.ndarray, where: str, params: list[Any]) -> dict[int, str]:
        out: dict[int, str] = {}
        for chunk in _chunks([int(k) for k in keys], 900):
            marks = ",".join("?" * len(chunk))
            for rowid, rid in self._conn.execute(
                f"SELECT r.rowid, r.id FROM records r NOT INDEXED WHERE r.rowid IN ({marks}) AND {where}",
                (*chunk, *params),
            ):
                out[rowid] = rid
        return out

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        terms = query_terms(text)
        if not terms or n <= 0:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        where, params = visibility(query, "sqlite", to_us)
        rows = self._read(
            "SELECT r.id, bm25(records_fts) AS s FROM records_fts JOIN records r ON r.rowid = records_fts.rowid "
            f"WHERE records_fts MATCH ? AND {where} ORDER BY s LIMIT ?",
            (match, *params, n),
        )
        return _dedupe([Candidate(rid, -float(score)) for rid, score in rows])

    def stats(self, tenant: str | None = None) -> StoreStats:
        cond, params = ("WHERE tenant = ?", [tenant]) if tenant else ("", [])
        (versions, records, deleted, invalidated, tenants) = self._read(
            "SELECT count(*), count(DISTINCT id), "
            "sum(CASE WHEN deleted = 1 THEN 1 ELSE 0 END), "
            "sum(CASE WHEN expired_at IS NULL AND valid_to IS NOT NULL THEN 1 ELSE 0 END), "
            f"count(DISTINCT tenant) FROM records {cond}",
            params,
        )[0]
        kinds = dict(
            self._read(
                f"SELECT kind, count(*) FROM records {cond} {'AND' if cond else 'WHERE'} expired_at IS NULL "
                "GROUP BY kind",
                params,
            )
        )
        space = self.embedding_space()
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return StoreStats(
            backend=self.backend,
            location=self.location,
            records=records or 0,
            versions=versions or 0,
            deleted=deleted or 0,
            invalidated=invalidated or 0,
            tenants=tenants or 0,
            embedding_model=space[0] if space else None,
            embedding_dim=space[1] if space else None,
            bytes=size,
            kinds=kinds,
        )

    # -- export / import / re-embed ---------------------------------------------------------------
    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        cond, params = ("WHERE tenant = ?", [tenant]) if tenant else ("", [])
        last = 0
        while True:
            rows = self._read(
                f"SELECT rowid, {RECORD_COLUMNS}, embedding FROM records {cond} "
                f"{'AND' if cond else 'WHERE'} rowid > ? ORDER BY rowid LIMIT 500",
                (*params, last),
            )
            if not rows:
                break
            last = rows[-1][0]
            yield from self._hydrate([r[1:] for r in rows], True)
        for tenant_, rid, op, version, at, actor, reason in self._read(
            f"SELECT tenant, record_id, op, version, at, actor, reason FROM events {cond} ORDER BY seq",
            params,
        ):
            yield HistoryEvent(
                record_id=rid, op=HistoryOp(op), version=version, at=from_us(at), actor=actor, reason=reason
            )
            del tenant_

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        records = [r for r in rows if isinstance(r, MemoryRecord)]
        events = [r for r in rows if isinstance(r, HistoryEvent)]
        tenant_of = {r.id: r.scope.tenant for r in records}

        spaces = _spaces(records)

        def tx(conn: sqlite3.Connection) -> None:
            for model_id, dim in spaces:
                _check_or_set_space(conn, model_id, dim)
            for record in records:
                if conn.execute(
                    "SELECT 1 FROM records WHERE id = ? AND version = ?", (record.id, record.version)
                ).fetchone():
                    raise ConflictError(f"record {record.id} version {record.version} already exists")
                _insert_version(conn, record)
                _insert_links(conn, record)
                _upsert_utility(conn, record)
            for event in events:
                tenant = tenant_of.get(event.record_id)
                if tenant is None:
                    row = conn.execute(
                        "SELECT tenant FROM records WHERE id = ? LIMIT 1", (event.record_id,)
                    ).fetchone()
                    if row is None:
                        raise NotFoundError(f"history event for unknown record {event.record_id}")
                    tenant = row[0]
                _event(
                    conn,
                    tenant,
                    event.record_id,
                    event.op,
                    event.version,
                    event.at,
                    event.actor,
                    event.reason,
                )

        self._write(tx)
        self._index_added(bool(spaces))
        return len(records)

    def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions with a key above ``after``, in key order."""
        rows = self._read("SELECT rowid, text FROM records WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit))
        return [(int(r), t) for r, t in rows]

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if first:
                conn.execute("DELETE FROM meta WHERE key IN ('embedding_model', 'embedding_dim')")
                conn.execute("UPDATE records SET embedding = NULL, embedding_model = NULL")
                _check_or_set_space(conn, model_id, dim)
                _bump(conn, "vec_epoch")
            conn.executemany(
                "UPDATE records SET embedding = ?, embedding_model = ? WHERE rowid = ?",
                [(np.asarray(v, dtype=np.float32).tobytes(), model_id, key) for key, v in rows],
            )

        self._write(tx)
        if last:
            with self._lock:
                self._index = None
                self.index_path.unlink(missing_ok=True)
                self._sync_index()

    # -- the vector index ------------------------------------------------------------------------
    def _space_tag(self) -> tuple[str, int] | None:
        rows = dict(
            self._conn.execute(
                "SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim', 'vec_epoch')"
            ).fetchall()
        )
        if "embedding_model" not in rows:
            return None
        return f"{rows['embedding_model']}|{rows['embedding_dim']}|{rows.get('vec_epoch', '0')}", int(
            rows["embedding_dim"]
        )

    def _sync_index(self) -> VectorIndex | None:
        """Load, build or catch up the in-memory index so it matches the committed rows (lock held)."""
        tag = self._retry(self._space_tag)
        if tag is None:
            self._index = None
            return None
        space, dim = tag
        if self._index is None or self._index.mark.space != space:
            self._index = VectorIndex.load(self.index_path, dim, space) or _fresh(dim, space)
            self._catch_up(self._index)
            expected = self._retry(
                lambda: self._conn.execute(
                    "SELECT count(*) FROM records WHERE embedding IS NOT NULL"
                ).fetchone()[0]
            )
            if len(self._index) != expected:  # the saved file disagrees with the rows: rebuild
                self._index = _fresh(dim, space)
                self._catch_up(self._index)
                self._index.save(self.index_path)
            return self._index
        self._catch_up(self._index)
        return self._index

    def _catch_up(self, index: VectorIndex) -> None:
        def read() -> tuple[list[tuple[int, int]], int]:
            removed = self._conn.execute(
                "SELECT seq, row FROM vec_removed WHERE seq > ? ORDER BY seq", (index.mark.removed,)
            ).fetchall()
            top = self._conn.execute("SELECT coalesce(max(rowid), 0) FROM records").fetchone()[0]
            return removed, top

        removed, top = self._retry(read)
        if removed:
            index.remove(np.array([r for _, r in removed], dtype=np.int64))
            index.mark.removed = removed[-1][0]
        while index.mark.rows < top:
            rows = self._retry(
                lambda: self._conn.execute(
                    "SELECT rowid, embedding FROM records WHERE rowid > ? AND rowid <= ? AND embedding IS NOT NULL "
                    "ORDER BY rowid LIMIT 20000",
                    (index.mark.rows, top),
                ).fetchall()
            )
            if not rows:
                index.mark.rows = top
                break
            keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
            index.add(keys, vecs)
            index.mark.rows = int(keys[-1]) if len(rows) == 20000 else top

    def _index_added(self, wrote_vectors: bool) -> None:
        """After a commit that wrote vectors: bring a loaded index level (it reads them back)."""
        if not wrote_vectors:
            return
        with self._lock:
            if self._index is not None:
                self._sync_index()

    def verify_index(self) -> bool:
        """True when the vector index holds exactly the rows that have vectors (used by tests)."""
        with self._lock:
            index = self._sync_index()
            rows = {r[0] for r in self._read("SELECT rowid FROM records WHERE embedding IS NOT NULL")}
            keys = set() if index is None else {int(k) for k in index.all_keys()}
            return rows == keys

    # -- row mapping ----------------------------------------------------------------------------
    def _hydrate(self, rows: Sequence[tuple[Any, ...]], with_embedding: bool) -> list[MemoryRecord]:
        if not rows:
            return []
        ids = list({r[0] for r in rows})
        links: dict[str, list[Link]] = {}
        utility: dict[str, Utility] = {}
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for src, dst, typ in self._read(
                f"SELECT src, dst, type FROM links WHERE src IN ({marks}) ORDER BY created_at, dst", chunk
            ):
                links.setdefault(src, []).append(Link(target=dst, type=typ))
            for row in self._read(f"SELECT {_UTILITY_COLS} FROM utility WHERE id IN ({marks})", chunk):
                utility[row[0]] = _utility(row)
        out = []
        for r in rows:
            embedding = None
            if with_embedding and r[19] is not None:
                embedding = np.frombuffer(r[19], dtype=np.float32).tolist()
            out.append(
                MemoryRecord.model_construct(
                    id=r[0],
                    version=r[1],
                    scope=Scope(tenant=r[2], user=r[3], agent=r[4], session=r[5]),
                    kind=r[6],
                    text=r[7],
                    payload=json.loads(r[8]),
                    metadata=json.loads(r[9]),
                    provenance=Provenance(
                        source=r[10], source_message_ids=json.loads(r[11]), parent_ids=json.loads(r[12])
                    ),
                    links=links.get(r[0], []),
                    valid_from=from_us(r[13]),
                    valid_to=from_us(r[14]),
                    recorded_at=from_us(r[15]),
                    expired_at=from_us(r[16]),
                    deleted=bool(r[17]),
                    embedding_model=r[18],
                    embedding=embedding,
                    utility=utility.get(r[0], Utility()),
                )
            )
        return out


# -- helpers used inside transactions --------------------------------------------------------------


def _fresh(dim: int, space: str) -> VectorIndex:
    index = VectorIndex(dim)
    index.mark.space = space
    return index


def _spaces(records: Sequence[MemoryRecord]) -> list[tuple[str, int]]:
    """The distinct (model id, dimension) pairs of the records that carry vectors."""
    return sorted({(r.embedding_model or "", len(r.embedding)) for r in records if r.embedding is not None})


def _check_or_set_space(conn: sqlite3.Connection, model_id: str, dim: int) -> None:
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


def _bump(conn: sqlite3.Connection, key: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (key,),
    )


def _insert_records(
    conn: sqlite3.Connection,
    records: Sequence[MemoryRecord],
    op: HistoryOp,
    actor: str | None,
    reason: str | None,
) -> None:
    """Insert new records with their links, utility and one history event each (space checked)."""
    for record in records:
        exists = conn.execute("SELECT 1 FROM records WHERE id = ? LIMIT 1", (record.id,)).fetchone()
        if exists:
            raise ConflictError(f"a record with id {record.id} already exists")
        _insert_version(conn, record)
        _insert_links(conn, record)
        _upsert_utility(conn, record)
        _event(conn, record.scope.tenant, record.id, op, record.version, record.recorded_at, actor, reason)


def _write_version(conn: sqlite3.Connection, change: VersionChange) -> MemoryRecord:
    """Expire the current version and insert ``change.new`` as the next one, with its event."""
    new = change.new
    cur = conn.execute(
        "SELECT rowid, version FROM records WHERE id = ? AND tenant = ? AND expired_at IS NULL",
        (change.record_id, change.tenant),
    ).fetchone()
    if cur is None:
        raise NotFoundError(f"no current record {change.record_id} in tenant {change.tenant!r}")
    if new.version != cur[1] + 1:
        raise ConflictError(
            f"record {change.record_id} changed concurrently (now at version {cur[1]}); reload and retry"
        )
    if new.embedding is not None:
        _check_or_set_space(conn, new.embedding_model or "", len(new.embedding))
    conn.execute("UPDATE records SET expired_at = ? WHERE rowid = ?", (to_us(new.recorded_at), cur[0]))
    _insert_version(conn, new)
    _insert_links(conn, new)
    _event(
        conn,
        change.tenant,
        change.record_id,
        change.op,
        new.version,
        new.recorded_at,
        change.actor,
        change.reason,
    )
    return new


def _add_stats(conn: sqlite3.Connection, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
    """Add ``deltas`` to the stats of the tenant's existing records (unknown ids skipped).

    The IMMEDIATE transaction holds the write lock from the read to the write: no lost update.
    """
    ids = sorted(deltas)
    current: dict[str, Utility] = {}
    for chunk in _chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for (rid,) in conn.execute(
            f"SELECT DISTINCT id FROM records WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk)
        ):
            current[rid] = Utility()
        for row in conn.execute(
            f"SELECT {_UTILITY_COLS} FROM utility WHERE tenant = ? AND id IN ({marks})",
            (tenant, *chunk),
        ):
            if row[0] in current:
                current[row[0]] = _utility(row)
    for rid in sorted(current):
        u = current[rid]
        _write_utility(conn, tenant, rid, u.model_copy(update={"stats": merge_stats(u.stats, deltas[rid])}))


def _insert_version(conn: sqlite3.Connection, r: MemoryRecord) -> None:
    blob = None if r.embedding is None else np.asarray(r.embedding, dtype=np.float32).tobytes()
    conn.execute(
        "INSERT INTO records (id, version, tenant, user_id, agent_id, session_id, kind, text, payload, metadata, "
        "source, source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, deleted, "
        "embedding_model, embedding) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            r.id,
            r.version,
            r.scope.tenant,
            r.scope.user,
            r.scope.agent,
            r.scope.session,
            r.kind,
            r.text,
            json.dumps(r.payload, ensure_ascii=False),
            json.dumps(r.metadata, ensure_ascii=False),
            r.provenance.source,
            json.dumps(r.provenance.source_message_ids),
            json.dumps(r.provenance.parent_ids),
            to_us(r.valid_from),
            to_us(r.valid_to),
            to_us(r.recorded_at),
            to_us(r.expired_at),
            1 if r.deleted else 0,
            r.embedding_model,
            blob,
        ),
    )


def _insert_links(conn: sqlite3.Connection, r: MemoryRecord) -> None:
    if r.links:
        conn.executemany(
            "INSERT OR IGNORE INTO links (tenant, src, dst, type, created_at) VALUES (?,?,?,?,?)",
            [(r.scope.tenant, r.id, link.target, link.type, to_us(r.recorded_at)) for link in r.links],
        )


def _upsert_utility(conn: sqlite3.Connection, r: MemoryRecord) -> None:
    u = r.utility
    if u == Utility():
        return
    _write_utility(conn, r.scope.tenant, r.id, u)


_UTILITY_COLS = "id, q, n_shown, n_used, reward_sum, last_feedback_at, stats"


def _utility(row: Sequence[Any]) -> Utility:
    """A utility row (columns of _UTILITY_COLS) as a Utility."""
    _, q, n_shown, n_used, reward_sum, last, stats = row
    return Utility(
        q=q,
        n_shown=n_shown,
        n_used=n_used,
        reward_sum=reward_sum,
        last_feedback_at=from_us(last),
        stats=json.loads(stats),
    )


def _write_utility(conn: sqlite3.Connection, tenant: str, rid: str, u: Utility) -> None:
    conn.execute(
        "INSERT INTO utility (id, tenant, q, n_shown, n_used, reward_sum, last_feedback_at, stats) "
        "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET q = excluded.q, n_shown = excluded.n_shown, "
        "n_used = excluded.n_used, reward_sum = excluded.reward_sum, last_feedback_at = excluded.last_feedback_at, "
        "stats = excluded.stats",
        (rid, tenant, u.q, u.n_shown, u.n_used, u.reward_sum, to_us(u.last_feedback_at), json.dumps(u.stats)),
    )


def _save_state(
    conn: sqlite3.Connection, tenant: str, name: str, state: dict, *, after: datetime | None = None
) -> datetime:
    """Upsert the learner's state; returns its new ``updated_at`` (now, but later than ``after``)."""
    stamp = utcnow()
    if after is not None and stamp <= after:
        stamp = after + timedelta(microseconds=1)  # a new state never keeps the stamp of the old one
    conn.execute(
        "INSERT INTO learner_state (tenant, name, state, updated_at) VALUES (?,?,?,?) "
        "ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
        (tenant, name, json.dumps(state), to_us(stamp)),
    )
    return stamp


def _logged(row: Sequence[Any]) -> LoggedRetrieval:
    rid, tenant, query, qvec, model, policy, version, k, pool, shown, created, feedback = row
    return LoggedRetrieval(
        id=rid,
        tenant=tenant,
        query=query,
        query_vector=None if qvec is None else np.frombuffer(qvec, dtype=np.float32).tolist(),
        embedding_model=model,
        policy=policy,
        policy_version=version,
        k=k,
        pool=[PoolEntry.model_validate(p) for p in json.loads(pool)],
        shown=[ShownEntry.model_validate(x) for x in json.loads(shown)],
        created_at=from_us(created),
        feedback=None if feedback is None else FeedbackRecord.model_validate_json(feedback),
    )


def _event(
    conn: sqlite3.Connection,
    tenant: str,
    record_id: str,
    op: HistoryOp,
    version: int,
    at: datetime,
    actor: str | None,
    reason: str | None,
) -> None:
    conn.execute(
        "INSERT INTO events (tenant, record_id, op, version, at, actor, reason) VALUES (?,?,?,?,?,?,?)",
        (tenant, record_id, HistoryOp(op).value, version, to_us(at), actor, reason),
    )


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def top_k_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first (stable among ties)."""
    if k >= len(scores):
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    part.sort()
    return part[np.argsort(-scores[part], kind="stable")]


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out
