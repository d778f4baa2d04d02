"""Records and their versions: the embedding space, inserts, new versions, whole write plans, soft delete,
archive / restore, purge, and the reads of records (get, list, history, stats).

Each public function is an operation (see :mod:`.steps`) implementing one
:class:`memq.store.base.Store` method with the semantics of the SQLite reference store: a new version
expires the current row and inserts version + 1; a soft delete expires and flags the row; every change
writes a history event. The runner decides the transaction: writes run in one READ COMMITTED
transaction each, reads in one read-only snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from memq.errors import ConflictError, NotFoundError
from memq.store.base import CandidateQuery, EventRow, VersionChange, WriteBatch
from memq.store.postgres import schema
from memq.store.postgres.log import add_stats
from memq.store.postgres.rows import (
    COPY_EVENTS,
    INSERT_EVENT,
    RECORD_FIELDS,
    RECORDS,
    columns,
    event,
    event_params,
    fetch_one,
    hydrate,
    identity,
    spaces,
    where,
    write_records,
)
from memq.store.postgres.steps import Op, Q
from memq.store.sqlcommon import EVENT_COLUMNS, archived_clause, store_stats
from memq.types import HistoryEvent, HistoryOp, MemoryRecord, Page, StoreStats, utcnow

# -- the embedding space ---------------------------------------------------------------------------------


def embedding_space() -> Op[tuple[str, int] | None]:
    return (yield from schema.read_space())


def set_embedding_space(model_id: str, dim: int) -> Op[None]:
    yield from schema.check_or_set_space(model_id, dim)


# -- writes -------------------------------------------------------------------------------------------------


def insert(records: Sequence[MemoryRecord], op: HistoryOp, actor: str | None, reason: str | None) -> Op[None]:
    if not records:
        return
    for model_id, dim in spaces(records):  # before touching records: see check_or_set_space
        yield from schema.check_or_set_space(model_id, dim)
    yield from insert_rows(records, op, actor, reason)


def insert_rows(
    records: Sequence[MemoryRecord], op: HistoryOp, actor: str | None, reason: str | None
) -> Op[None]:
    """Insert new records with links, utility and an event each (the spaces already checked)."""
    ids = [r.id for r in records]
    seen: set[str] = set()
    for rid in ids:  # a repeated id inside the batch clashes with itself
        if rid in seen:
            raise ConflictError(f"a record with id {rid} already exists")
        seen.add(rid)
    # ids are unique across tenants (the (id, version) key), as in the SQLite store
    # planned for each batch (prepare=False): a generic plan kept from when the table was small scans
    # it whole, more slowly with every batch until the table is next analysed
    clash = yield Q("SELECT id FROM records WHERE id = ANY(%s) LIMIT 1", (ids,), mode="one", prepare=False)
    if clash is not None:
        raise ConflictError(f"a record with id {clash[0]} already exists")
    yield from write_records(records)
    yield Q(
        COPY_EVENTS,
        [
            event_params(EventRow(r.scope.tenant, r.id, op, r.version, r.recorded_at, actor, reason))
            for r in records
        ],
        mode="copy",
    )


def _current(tenant: str, record_id: str) -> Op[tuple[int, int]]:
    """(row key, version) of the record's current version, or NotFoundError."""
    row = yield from fetch_one(
        "SELECT row_key, version FROM records WHERE tenant = %s AND id = %s AND expired_at IS NULL",
        (tenant, record_id),
        NotFoundError(f"no current record {record_id} in tenant {tenant!r}"),
    )
    return int(row[0]), int(row[1])


def write_version(change: VersionChange) -> Op[MemoryRecord]:
    new = change.new
    row_key, version = yield from _current(change.tenant, change.record_id)
    if new.version != version + 1:
        raise ConflictError(
            f"record {change.record_id} changed concurrently (now at version {version}); reload and retry"
        )
    if new.embedding is not None:
        # after reading records (to keep the SQLite store's error order); the runner retries the
        # rare deadlock this can meet while another transaction sets the first space
        yield from schema.check_or_set_space(new.embedding_model or "", len(new.embedding))
    # ``expired_at IS NULL`` again: a concurrent writer that got here first makes this match nothing
    expired = yield Q(
        "UPDATE records SET expired_at = %s WHERE row_key = %s AND expired_at IS NULL",
        (new.recorded_at, row_key),
        mode="rowcount",
    )
    if expired != 1:
        raise ConflictError(f"record {change.record_id} changed concurrently; reload and retry")
    yield from write_records([new], utility=False)
    yield Q(INSERT_EVENT, event_params(change.event), mode="none")
    return new


def apply_writes(batch: WriteBatch) -> Op[list[MemoryRecord]]:
    """A whole write plan as one operation (so in the runner's one transaction): the spaces of every
    vector first (before touching records: see check_or_set_space), then the insert groups, the
    version changes (each with :func:`write_version`'s checks) and the stats. Any error raised here
    or by the server rolls the transaction back whole."""
    if batch.empty:
        return []
    for model_id, dim in spaces(batch.records):
        yield from schema.check_or_set_space(model_id, dim)
    for group in batch.inserts:
        if group.records:
            yield from insert_rows(group.records, group.op, group.actor, group.reason)
    written = []
    for change in batch.versions:
        written.append((yield from write_version(change)))
    yield from add_stats(batch.tenant, batch.stats)
    return written


def delete(tenant: str, record_id: str, actor: str | None, reason: str | None) -> Op[None]:
    row_key, version = yield from _current(tenant, record_id)
    now = utcnow()
    done = yield Q(
        "UPDATE records SET expired_at = %s, deleted = true WHERE row_key = %s AND expired_at IS NULL",
        (now, row_key),
        mode="rowcount",
    )
    if done != 1:
        raise ConflictError(f"record {record_id} changed concurrently; reload and retry")
    yield Q(
        INSERT_EVENT,
        event_params(EventRow(tenant, record_id, HistoryOp.DELETE, version, now, actor, reason)),
        "none",
    )


def archive(tenant: str, record_ids: Sequence[str], reason: str | None, actor: str | None) -> Op[int]:
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        return 0
    now = utcnow()
    # ids with no current version (unknown, deleted or archived meanwhile) are skipped
    rows = yield Q(
        "UPDATE records SET expired_at = %s, deleted = true "
        "WHERE tenant = %s AND id = ANY(%s) AND expired_at IS NULL RETURNING id, version",
        (now, tenant, ids),
    )
    version = {rid: v for rid, v in rows}
    params = [
        event_params(EventRow(tenant, rid, HistoryOp.ARCHIVE, version[rid], now, actor, reason))
        for rid in ids
        if rid in version
    ]
    if params:
        yield Q(COPY_EVENTS, params, mode="copy")
    return len(params)


def restore(tenant: str, record_id: str, actor: str | None, reason: str | None) -> Op[MemoryRecord]:
    last = yield from fetch_one(
        "SELECT op FROM events WHERE tenant = %s AND record_id = %s ORDER BY seq DESC LIMIT 1",
        (tenant, record_id),
        NotFoundError(f"no record {record_id} in tenant {tenant!r}"),
    )
    if last[0] != HistoryOp.ARCHIVE.value:
        raise ConflictError(f"record {record_id} is not archived (its latest event is {last[0]!r})")
    row = yield Q(
        "SELECT row_key, version FROM records WHERE tenant = %s AND id = %s ORDER BY version DESC LIMIT 1 "
        "FOR UPDATE",
        (tenant, record_id),
        mode="one",
    )
    now = utcnow()
    # the archived version copied as it is, as version + 1: current again, with a new recorded_at
    copied = RECORD_FIELDS.replace("version,", "version + 1,").replace(
        "recorded_at, expired_at, deleted,", "%s, NULL, false,"
    )
    yield Q(
        f"INSERT INTO records ({RECORD_FIELDS}) SELECT {copied} FROM records WHERE row_key = %s",
        (now, row[0]),
        mode="none",
    )
    yield Q(
        INSERT_EVENT,
        event_params(EventRow(tenant, record_id, HistoryOp.RESTORE, row[1] + 1, now, actor, reason)),
        mode="none",
    )
    rows = yield Q(
        f"SELECT {columns(False)} FROM {RECORDS} WHERE r.tenant = %s AND r.id = %s AND r.version = %s",
        (tenant, record_id, row[1] + 1),
    )
    return hydrate(rows, False)[0]


def purge(tenant: str, record_ids: Sequence[str]) -> Op[int]:
    ids = list(dict.fromkeys(record_ids))
    if not ids:
        return 0
    rows = yield Q("DELETE FROM records WHERE tenant = %s AND id = ANY(%s) RETURNING id", (tenant, ids))
    yield Q("DELETE FROM events WHERE tenant = %s AND record_id = ANY(%s)", (tenant, ids), mode="none")
    yield Q("DELETE FROM utility WHERE tenant = %s AND id = ANY(%s)", (tenant, ids), mode="none")
    yield Q(
        "DELETE FROM links WHERE tenant = %s AND (src = ANY(%s) OR dst = ANY(%s))",
        (tenant, ids, ids),
        mode="none",
    )
    # erasure reaches the retrieval log too: drop searches that showed or considered these records
    yield Q(
        "DELETE FROM retrievals WHERE tenant = %s AND ("
        "EXISTS (SELECT 1 FROM jsonb_array_elements(shown) AS e WHERE e->>'id' = ANY(%s)) OR "
        "EXISTS (SELECT 1 FROM jsonb_array_elements(pool) AS e WHERE e->>'id' = ANY(%s)))",
        (tenant, ids, ids),
        mode="none",
    )
    return len({r[0] for r in rows})


# -- reads --------------------------------------------------------------------------------------------------


def get(
    tenant: str, ids: Sequence[str], include_deleted: bool, with_embedding: bool
) -> Op[list[MemoryRecord]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    # the latest version of each id
    rows = yield Q(
        f"SELECT DISTINCT ON (r.id) {columns(with_embedding)} FROM {RECORDS} "
        "WHERE r.tenant = %s AND r.id = ANY(%s) ORDER BY r.id, r.version DESC",
        (tenant, ids),
    )
    found = {r.id: r for r in hydrate(rows, with_embedding) if include_deleted or not r.deleted}
    return [found[i] for i in ids if i in found]


def list_page(query: CandidateQuery, cursor: str | None, limit: int) -> Op[Page]:
    clause, params = where(query)
    return (yield from _page(clause, params, cursor, limit))


def list_archived(query: CandidateQuery, cursor: str | None, limit: int) -> Op[Page]:
    clause, params = archived_clause(query, "postgres", identity)
    return (yield from _page(clause, params, cursor, limit))


def _page(clause: str, params: list[Any], cursor: str | None, limit: int) -> Op[Page]:
    """Records matching ``clause`` in id order after ``cursor``: one page and the next cursor."""
    if cursor is not None:
        clause += " AND r.id > %s"
        params.append(cursor)
    rows = yield Q(
        f"SELECT {columns(False)} FROM {RECORDS} WHERE {clause} ORDER BY r.id LIMIT %s", (*params, limit + 1)
    )
    records = hydrate(rows[:limit], False)
    next_cursor = records[-1].id if len(rows) > limit else None
    return Page(records=records, next_cursor=next_cursor)


def history(tenant: str, record_id: str) -> Op[list[HistoryEvent]]:
    events = yield Q(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE tenant = %s AND record_id = %s ORDER BY seq",
        (tenant, record_id),
    )
    if not events:
        raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
    rows = yield Q(
        f"SELECT {columns(False)} FROM {RECORDS} WHERE r.tenant = %s AND r.id = %s ORDER BY r.version",
        (tenant, record_id),
    )
    versions = {r.version: r for r in hydrate(rows, False)}
    return [event(e, versions.get(e[2])) for e in events]


def stats(tenant: str | None, backend: str, location: str) -> Op[StoreStats]:
    cond, params = ("WHERE tenant = %s", [tenant]) if tenant else ("", [])
    counts = yield Q(
        "SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE deleted), "
        "count(*) FILTER (WHERE expired_at IS NULL AND valid_to IS NOT NULL), "
        f"count(DISTINCT tenant) FROM records {cond}",
        params,
        mode="one",
    )
    kinds = yield Q(
        f"SELECT kind, count(*) FROM records {cond} {'AND' if cond else 'WHERE'} expired_at IS NULL "
        "GROUP BY kind ORDER BY kind",
        params,
    )
    space = yield from schema.read_space()
    size = yield Q(
        "SELECT sum(pg_total_relation_size(to_regclass(t))) FROM unnest(%s::text[]) AS t",
        (list(schema.TABLES),),
        mode="one",
    )
    return store_stats(backend, location, counts, space, int(size[0] or 0), {k: int(c) for k, c in kinds})
