"""The SQLite store's records and versions: writes (each one transaction), reads, history, stats."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from memq.errors import ConflictError, NotFoundError
from memq.store.base import CandidateQuery, EventRow, VersionChange, WriteBatch, merge_stats
from memq.store.sqlcommon import (
    EVENT_COLUMNS,
    RECORD_COLUMNS,
    UTILITY_COLUMNS,
    archived_clause,
    event_of,
    record_values,
    store_stats,
    visibility,
)
from memq.store.sqlite.base import (
    DECODE,
    ENCODE,
    RECORDS,
    SQLiteBase,
    check_or_set_space,
    chunks,
    columns,
    event,
    hydrate,
    marks,
    spaces,
    to_us,
    utility_of,
    write_utilities,
)
from memq.types import HistoryEvent, HistoryOp, MemoryRecord, Page, StoreStats, Utility, utcnow


class SQLiteRecords(SQLiteBase):
    """Records and versions (:class:`memq.store.contract.Records`)."""

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

        used = spaces(records)

        def tx(conn: sqlite3.Connection) -> None:
            for model_id, dim in used:
                check_or_set_space(conn, model_id, dim)
            insert_records(conn, records, op, actor, reason)

        self._write(tx)
        self._index_added(bool(used))

    def write_version(self, change: VersionChange) -> MemoryRecord:
        self._write(lambda conn: write_version_tx(conn, change))
        self._index_added(change.new.embedding is not None)
        return change.new

    def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        if batch.empty:
            return []
        used = spaces(batch.records)

        def tx(conn: sqlite3.Connection) -> list[MemoryRecord]:
            for model_id, dim in used:
                check_or_set_space(conn, model_id, dim)
            for group in batch.inserts:
                insert_records(conn, group.records, group.op, group.actor, group.reason)
            written = [write_version_tx(conn, change) for change in batch.versions]
            add_stats_tx(conn, batch.tenant, batch.stats)
            return written

        # the index follows committed rows only (by rowid watermark): a rolled-back batch leaves it as it was
        written = self._write(tx)
        self._index_added(bool(used))
        return written

    def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if not soft_delete(conn, tenant, record_id, HistoryOp.DELETE, utcnow(), actor, reason):
                raise NotFoundError(f"no current record {record_id} in tenant {tenant!r}")

        self._write(tx)

    def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        ids = list(dict.fromkeys(record_ids))
        if not ids:
            return 0

        def tx(conn: sqlite3.Connection) -> int:
            now = utcnow()
            # an id unknown, deleted or archived meanwhile has nothing to archive
            return sum(soft_delete(conn, tenant, rid, HistoryOp.ARCHIVE, now, actor, reason) for rid in ids)

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
            event(conn, EventRow(tenant, record_id, HistoryOp.RESTORE, row[1] + 1, now, actor, reason))

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

        def tx(conn: sqlite3.Connection) -> tuple[int, bool]:
            found: set[str] = set()
            vectors = False
            for chunk in chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                for rid, has_vec in conn.execute(
                    f"SELECT id, embedding IS NOT NULL FROM records WHERE tenant = ? AND id IN ({marks})",
                    (tenant, *chunk),
                ):
                    found.add(rid)
                    vectors = vectors or bool(has_vec)
                # triggers log each deleted row for the indexes (lex_removed, vec_removed)
                conn.execute(f"DELETE FROM records WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk))
                conn.execute(
                    f"DELETE FROM events WHERE tenant = ? AND record_id IN ({marks})", (tenant, *chunk)
                )
                conn.execute(f"DELETE FROM utility WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk))
                conn.execute(
                    f"DELETE FROM links WHERE tenant = ? AND (src IN ({marks}) OR dst IN ({marks}))",
                    (tenant, *chunk, *chunk),
                )
            # erasure reaches the retrieval log too: drop searches that showed or considered these records
            for chunk in chunks(ids, 500):
                marks = ",".join("?" * len(chunk))
                conn.execute(
                    "DELETE FROM retrievals WHERE tenant = ? AND ("
                    f"EXISTS (SELECT 1 FROM json_each(shown) WHERE json_extract(value, '$.id') IN ({marks})) OR "
                    f"EXISTS (SELECT 1 FROM json_each(pool) WHERE json_extract(value, '$.id') IN ({marks})))",
                    (tenant, *chunk, *chunk),
                )
            return len(found), vectors

        count, vectors = self._write(tx)
        self._index_added(vectors)  # the removals reach the index at once
        return count

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
        found: dict[str, MemoryRecord] = {}
        for chunk in chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            # the latest version of each id
            rows = self._read(
                f"SELECT {columns(with_embedding)} FROM {RECORDS} WHERE r.tenant = ? AND r.id IN ({marks}) "
                "AND r.version = (SELECT max(version) FROM records x WHERE x.id = r.id)",
                (tenant, *chunk),
            )
            for record in hydrate(rows, with_embedding):
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
            f"SELECT {columns(False)} FROM {RECORDS} WHERE {where} ORDER BY r.id LIMIT ?",
            (*params, limit + 1),
        )
        records = hydrate(rows[:limit], False)
        next_cursor = records[-1].id if len(rows) > limit else None
        return Page(records=records, next_cursor=next_cursor)

    def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        events = self._read(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant = ? AND record_id = ? ORDER BY seq",
            (tenant, record_id),
        )
        if not events:
            raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
        rows = self._read(
            f"SELECT {columns(False)} FROM {RECORDS} WHERE r.tenant = ? AND r.id = ? ORDER BY r.version",
            (tenant, record_id),
        )
        versions = {r.version: r for r in hydrate(rows, False)}
        return [event_of(e, DECODE, versions.get(e[2])) for e in events]

    def stats(self, tenant: str | None = None) -> StoreStats:
        cond, params = ("WHERE tenant = ?", [tenant]) if tenant else ("", [])
        counts = self._read(
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
        size = sum(p.stat().st_size for p in self.path.parent.glob(self.path.name + "*") if p.is_file())
        return store_stats(self.backend, self.location, counts, self.embedding_space(), size, kinds)


# -- helpers used inside transactions ----------------------------------------------------------------


def bump(conn: sqlite3.Connection, key: str) -> None:
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, '1') "
        "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1",
        (key,),
    )


def soft_delete(
    conn: sqlite3.Connection,
    tenant: str,
    record_id: str,
    op: HistoryOp,
    now: datetime,
    actor: str | None,
    reason: str | None,
) -> bool:
    """Expire and flag the record's current version, with an ``op`` event; False when it has none."""
    cur = conn.execute(
        "SELECT rowid, version FROM records WHERE id = ? AND tenant = ? AND expired_at IS NULL",
        (record_id, tenant),
    ).fetchone()
    if cur is None:
        return False
    conn.execute("UPDATE records SET expired_at = ?, deleted = 1 WHERE rowid = ?", (to_us(now), cur[0]))
    event(conn, EventRow(tenant, record_id, op, cur[1], now, actor, reason))
    return True


def insert_records(
    conn: sqlite3.Connection,
    records: Sequence[MemoryRecord],
    op: HistoryOp,
    actor: str | None,
    reason: str | None,
) -> None:
    """Insert new records with their links, utility and one history event each (space checked); the
    rows and events of the batch go in with one ``executemany`` each."""
    ids = [r.id for r in records]
    seen: set[str] = set()
    for rid in ids:
        if rid in seen:
            raise ConflictError(f"a record with id {rid} already exists")
        seen.add(rid)
    for chunk in chunks(ids, 500):
        found = conn.execute(
            f"SELECT id FROM records WHERE id IN ({marks(len(chunk))}) LIMIT 1", chunk
        ).fetchone()
        if found:
            raise ConflictError(f"a record with id {found[0]} already exists")
    conn.executemany(INSERT_VERSION, [record_values(r, ENCODE) for r in records])
    insert_links(conn, records)
    upsert_utilities(conn, records)
    kind = HistoryOp(op).value
    conn.executemany(
        "INSERT INTO events (tenant, record_id, op, version, at, actor, reason) VALUES (?,?,?,?,?,?,?)",
        [(r.scope.tenant, r.id, kind, r.version, to_us(r.recorded_at), actor, reason) for r in records],
    )


def write_version_tx(conn: sqlite3.Connection, change: VersionChange) -> MemoryRecord:
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
        check_or_set_space(conn, new.embedding_model or "", len(new.embedding))
    conn.execute("UPDATE records SET expired_at = ? WHERE rowid = ?", (to_us(new.recorded_at), cur[0]))
    insert_version(conn, new)
    insert_links(conn, [new])
    event(conn, change.event)
    return new


def add_stats_tx(conn: sqlite3.Connection, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
    """Add ``deltas`` to the stats of the tenant's existing records (unknown ids skipped).

    The IMMEDIATE transaction holds the write lock from the read to the write: no lost update.
    """
    ids = sorted(deltas)
    current: dict[str, Utility] = {}
    for chunk in chunks(ids, 500):
        marks = ",".join("?" * len(chunk))
        for (rid,) in conn.execute(
            f"SELECT DISTINCT id FROM records WHERE tenant = ? AND id IN ({marks})", (tenant, *chunk)
        ):
            current[rid] = Utility()
        for row in conn.execute(
            f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = ? AND id IN ({marks})",
            (tenant, *chunk),
        ):
            if row[0] in current:
                current[row[0]] = utility_of(row)
    write_utilities(
        conn,
        tenant,
        (
            (rid, current[rid].model_copy(update={"stats": merge_stats(current[rid].stats, deltas[rid])}))
            for rid in sorted(current)
        ),
    )


INSERT_VERSION = f"INSERT INTO records ({RECORD_COLUMNS}, embedding) VALUES ({','.join('?' * 20)})"


def insert_version(conn: sqlite3.Connection, r: MemoryRecord) -> None:
    conn.execute(INSERT_VERSION, record_values(r, ENCODE))


def insert_links(conn: sqlite3.Connection, records: Sequence[MemoryRecord]) -> None:
    """The links of ``records``, in one ``executemany``."""
    rows = [
        (r.scope.tenant, r.id, link.target, link.type, to_us(r.recorded_at))
        for r in records
        for link in r.links
    ]
    if rows:
        conn.executemany(
            "INSERT OR IGNORE INTO links (tenant, src, dst, type, created_at) VALUES (?,?,?,?,?)", rows
        )


def upsert_utilities(conn: sqlite3.Connection, records: Sequence[MemoryRecord]) -> None:
    """The utility rows of ``records`` that carry one (a default ``Utility`` has no row), one
    ``executemany`` per tenant."""
    blank = Utility()
    by_tenant: dict[str, list[tuple[str, Utility]]] = {}
    for r in records:
        if r.utility != blank:
            by_tenant.setdefault(r.scope.tenant, []).append((r.id, r.utility))
    for tenant, rows in by_tenant.items():
        write_utilities(conn, tenant, rows)
