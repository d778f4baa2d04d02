"""The SQLite store's export, import and re-embedding."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

import numpy as np

from memq.errors import ConflictError, NotFoundError
from memq.store.base import EventRow
from memq.store.contract import paged_export
from memq.store.sqlcommon import EVENT_COLUMNS, event_of
from memq.store.sqlite.base import DECODE, RECORDS, check_or_set_space, columns, event, hydrate, spaces
from memq.store.sqlite.records import SQLiteRecords, bump, insert_links, insert_version, upsert_utilities
from memq.types import HistoryEvent, MemoryRecord


class SQLiteTransfer(SQLiteRecords):
    """Moving rows in and out (part of :class:`memq.store.contract.Records`)."""

    def export_records(self, tenant: str | None, after: int, limit: int) -> list[tuple[int, MemoryRecord]]:
        """One page of an export: (row key, version with its vector) of up to ``limit`` versions with a
        key above ``after``, in key order (insertion order)."""
        cond, params = ("r.tenant = ? AND ", [tenant]) if tenant else ("", [])
        rows = self._read(
            f"SELECT r.rowid, {columns(True)} FROM {RECORDS} WHERE {cond}r.rowid > ? ORDER BY r.rowid LIMIT ?",
            (*params, after, limit),
        )
        records = hydrate([r[1:] for r in rows], True)
        return [(int(r[0]), rec) for r, rec in zip(rows, records, strict=True)]

    def export_events(self, tenant: str | None, after: int, limit: int) -> list[tuple[int, HistoryEvent]]:
        """(sequence number, event) of up to ``limit`` history events numbered above ``after``, in order."""
        cond, params = ("tenant = ? AND ", [tenant]) if tenant else ("", [])
        rows = self._read(
            f"SELECT seq, {EVENT_COLUMNS} FROM events WHERE {cond}seq > ? ORDER BY seq LIMIT ?",
            (*params, after, limit),
        )
        return [(int(row[0]), event_of(row[1:], DECODE)) for row in rows]

    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        """Every version (with its vector), then every event, read a page at a time
        (:meth:`export_records`, :meth:`export_events`): memory stays bounded by a page."""
        yield from paged_export(self, tenant)

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        records = [r for r in rows if isinstance(r, MemoryRecord)]
        events = [r for r in rows if isinstance(r, HistoryEvent)]
        tenant_of = {r.id: r.scope.tenant for r in records}

        used = spaces(records)

        def tx(conn: sqlite3.Connection) -> None:
            for model_id, dim in used:
                check_or_set_space(conn, model_id, dim)
            for record in records:
                if conn.execute(
                    "SELECT 1 FROM records WHERE id = ? AND version = ?", (record.id, record.version)
                ).fetchone():
                    raise ConflictError(f"record {record.id} version {record.version} already exists")
                insert_version(conn, record)
            insert_links(conn, records)
            upsert_utilities(conn, records)
            for ev in events:
                tenant = tenant_of.get(ev.record_id)
                if tenant is None:
                    row = conn.execute(
                        "SELECT tenant FROM records WHERE id = ? LIMIT 1", (ev.record_id,)
                    ).fetchone()
                    if row is None:
                        raise NotFoundError(f"history event for unknown record {ev.record_id}")
                    tenant = row[0]
                event(conn, EventRow(tenant, ev.record_id, ev.op, ev.version, ev.at, ev.actor, ev.reason))

        self._write(tx)
        self._index_added(bool(used))
        return len(records)

    def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions with a key above ``after``, in key order."""
        rows = self._read(
            "SELECT rowid, text FROM records WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit)
        )
        return [(int(r), t) for r, t in rows]

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            if first:
                conn.execute("DELETE FROM meta WHERE key IN ('embedding_model', 'embedding_dim')")
                conn.execute("UPDATE records SET embedding = NULL, embedding_model = NULL")
                check_or_set_space(conn, model_id, dim)
                bump(conn, "vec_epoch")
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
