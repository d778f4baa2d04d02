"""Moving rows in and out: export (paged, or streamed from one snapshot), import, and re-embedding.
Operations, see :mod:`.steps`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memq.errors import ConflictError, NotFoundError
from memq.store.base import EventRow
from memq.store.contract import EXPORT_EVENTS_PAGE, EXPORT_RECORDS_PAGE
from memq.store.postgres import schema
from memq.store.postgres.rows import (
    COPY_EVENTS,
    EVENT_COLUMNS,
    RECORDS,
    columns,
    event,
    event_params,
    hydrate,
    spaces,
    vector_param,
    write_records,
)
from memq.store.postgres.steps import Emit, Op, Q
from memq.types import HistoryEvent, MemoryRecord


def export_records(tenant: str | None, after: int, limit: int) -> Op[list[tuple[int, MemoryRecord]]]:
    """(row key, version with its vector) of up to ``limit`` versions with a key above ``after``, in key
    order (insertion order): one page of an export."""
    cond, params = ("r.tenant = %s AND ", [tenant]) if tenant else ("", [])
    rows = yield Q(
        f"SELECT r.row_key, {columns(True)} FROM {RECORDS} WHERE {cond}r.row_key > %s "
        "ORDER BY r.row_key LIMIT %s",
        (*params, after, limit),
    )
    records = hydrate([r[1:] for r in rows], True)
    return [(int(r[0]), rec) for r, rec in zip(rows, records, strict=True)]


def export_events(tenant: str | None, after: int, limit: int) -> Op[list[tuple[int, HistoryEvent]]]:
    """(sequence number, event) of up to ``limit`` history events numbered above ``after``, in order."""
    cond, params = ("tenant = %s AND ", [tenant]) if tenant else ("", [])
    rows = yield Q(
        f"SELECT seq, {EVENT_COLUMNS} FROM events WHERE {cond}seq > %s ORDER BY seq LIMIT %s",
        (*params, after, limit),
    )
    return [(int(r[0]), event(r[1:])) for r in rows]


def export_rows(tenant: str | None) -> Op[None]:
    """Emit every version (with its vector) in insertion order, then every history event."""
    for page_of, size in ((export_records, EXPORT_RECORDS_PAGE), (export_events, EXPORT_EVENTS_PAGE)):
        last = 0
        while page := (yield from page_of(tenant, last, size)):
            last = page[-1][0]
            yield Emit([item for _, item in page])


def import_rows(rows: Sequence[MemoryRecord | HistoryEvent]) -> Op[int]:
    records = [r for r in rows if isinstance(r, MemoryRecord)]
    events = [r for r in rows if isinstance(r, HistoryEvent)]
    for model_id, dim in spaces(records):
        yield from schema.check_or_set_space(model_id, dim)
    if records:
        keys = [r.id for r in records]
        versions = [r.version for r in records]
        clash = yield Q(
            "SELECT r.id, r.version FROM records r "
            "JOIN unnest(%s::text[], %s::int[]) AS k(id, version) ON r.id = k.id AND r.version = k.version "
            "LIMIT 1",
            (keys, versions),
            mode="one",
        )
        if clash is not None:
            raise ConflictError(f"record {clash[0]} version {clash[1]} already exists")
        yield from write_records(records)
    tenant_of = {r.id: r.scope.tenant for r in records}
    unknown = [e.record_id for e in events if e.record_id not in tenant_of]
    if unknown:
        found = yield Q(
            "SELECT DISTINCT ON (id) id, tenant FROM records WHERE id = ANY(%s)",
            (list(dict.fromkeys(unknown)),),
        )
        tenant_of.update(dict(found))
    params = []
    for e in events:
        tenant = tenant_of.get(e.record_id)
        if tenant is None:
            raise NotFoundError(f"history event for unknown record {e.record_id}")
        params.append(event_params(EventRow(tenant, e.record_id, e.op, e.version, e.at, e.actor, e.reason)))
    if params:
        yield Q(COPY_EVENTS, params, mode="copy")
    return len(records)


def embeddable(after: int, limit: int) -> Op[list[tuple[int, str]]]:
    """(row key, text) of the next ``limit`` versions after row key ``after`` (whole store)."""
    rows = yield Q(
        "SELECT row_key, text FROM records WHERE row_key > %s ORDER BY row_key LIMIT %s", (after, limit)
    )
    return [(int(k), t) for k, t in rows]


def replace_embeddings(
    model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], first: bool, last: bool
) -> Op[None]:
    if first:
        yield from schema.reset_space(model_id, dim)
    else:
        yield from schema.check_or_set_space(model_id, dim)
    if rows:
        yield Q(
            "UPDATE records SET embedding = %s, embedding_model = %s WHERE row_key = %s",
            [(vector_param(v), model_id, int(key)) for key, v in rows],
            mode="many",
        )
    if last:
        yield from schema.ensure_vector_index()
