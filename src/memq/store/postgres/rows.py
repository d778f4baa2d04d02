"""What every PostgreSQL operation shares: the statements that write rows, and the mapping of rows to
memq's types and back (records, utility, history events, logged retrievals, vectors, times).

The operation modules (:mod:`.records`, :mod:`.candidates`, :mod:`.log`, :mod:`.learners`,
:mod:`.transfer`) build on these; nothing here runs a statement except :func:`write_links`, an
operation itself (see :mod:`.steps`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
from psycopg.types.json import Json, Jsonb

from memq.store import sqlcommon
from memq.store.base import CandidateQuery, EventRow
from memq.store.postgres import hnsw
from memq.store.postgres.steps import Op, Q
from memq.store.sqlcommon import EVENT_COLUMNS as EVENT_COLUMNS  # transfer.py reads it here
from memq.store.sqlcommon import UTILITY_SELECT, RowDecoder, RowEncoder, record_values, visibility
from memq.types import HistoryEvent, HistoryOp, Link, MemoryRecord, Utility

# the columns a MemoryRecord is built from (memq.store.sqlcommon.record_of reads them in this order)
COLUMNS = (
    "r.id, r.version, r.tenant, r.user_id, r.agent_id, r.session_id, r.kind, r.text, r.payload_json, "
    "r.metadata_json, r.source, r.source_message_ids, r.parent_ids, r.valid_from, r.valid_to, "
    "r.recorded_at, r.expired_at, r.deleted, r.embedding_model"
)
# the columns memq.store.sqlcommon.record_values fills, in its order
RECORD_FIELDS = (
    "id, version, tenant, user_id, agent_id, session_id, kind, text, payload_json, metadata_json, source, "
    "source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, deleted, embedding_model, "
    "embedding"
)
# new rows go in by COPY: one statement per batch, however many rows (the lexicon trigger fires once),
# in binary (vectors travel as float32 bytes, not as decimal text)
COPY_RECORDS = f"COPY records ({RECORD_FIELDS}, deferred) FROM STDIN (FORMAT BINARY)"
COPY_RECORD_TYPES = (
    *["text", "int4"],
    *["text"] * 6,
    *["json", "json", "text", "jsonb", "jsonb"],
    *["timestamptz"] * 4,
    *["bool", "text", "vector", "bool"],
)
INSERT_LINK = (
    "INSERT INTO links (tenant, src, dst, type, created_at) VALUES (%s, %s, %s, %s, %s) "
    "ON CONFLICT (src, type, dst) DO NOTHING"
)
UPSERT_UTILITY = (
    "INSERT INTO utility (id, tenant, q, n_shown, n_used, reward_sum, last_feedback_at, stats) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET q = excluded.q, n_shown = excluded.n_shown, n_used = excluded.n_used, "
    "reward_sum = excluded.reward_sum, last_feedback_at = excluded.last_feedback_at, stats = excluded.stats"
)
EVENT_FIELDS = "tenant, record_id, op, version, at, actor, reason"  # event_params() fills them
INSERT_EVENT = f"INSERT INTO events ({EVENT_FIELDS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"
COPY_EVENTS = f"COPY events ({EVENT_FIELDS}) FROM STDIN"  # the events of a batch, in one statement

_dumps = partial(json.dumps, ensure_ascii=False)


def identity(value: datetime) -> datetime:
    """PostgreSQL takes datetimes as they are (timestamptz); the filters' time_param."""
    return value


def where(query: CandidateQuery) -> tuple[str, list[Any]]:
    """The visibility clause of ``query`` on alias ``r``, with its parameters."""
    return visibility(query, "postgres", identity)


# what :func:`columns` adds after a record's own columns: its utility row (from the join in
# ``RECORDS``, NULLs without one) and its links, so one statement reads whole records
_EXTRAS = (
    f", {UTILITY_SELECT}, "
    "(SELECT array_agg(ARRAY[l.dst, l.type] ORDER BY l.created_at, l.dst) FROM links l "
    "WHERE l.tenant = r.tenant AND l.src = r.id)"
)
# the FROM clause of a statement that selects ``columns(...)``
RECORDS = "records r LEFT JOIN utility u ON u.id = r.id AND u.tenant = r.tenant"


def columns(with_embedding: bool) -> str:
    """The select list :func:`hydrate` builds records from (``FROM {RECORDS}``): the record's columns,
    its vector with ``with_embedding``, then its utility and links."""
    # The vector travels as vector_send()'s bytea (big-endian float32s): exact, cheap to decode, and
    # of one result type whatever the column's dimension. Selecting ``r.embedding`` itself would
    # make the result type vector(n), and a statement psycopg prepared on a pooled connection (here
    # or in another process) would fail with "cached plan must not change result type" once a
    # re-embed retypes the column.
    return COLUMNS + (", vector_send(r.embedding)" if with_embedding else "") + _EXTRAS


def spaces(records: Iterable[MemoryRecord]) -> list[tuple[str, int]]:
    """The distinct (model, dim) of the records' vectors, in order of first appearance."""
    seen: dict[tuple[str, int], None] = {}
    for r in records:
        if r.embedding is not None:
            seen.setdefault((r.embedding_model or "", len(r.embedding)), None)
    return list(seen)


# -- rows to memq types -----------------------------------------------------------------------------


def hydrate(rows: Sequence[Sequence[Any]], with_embedding: bool) -> list[MemoryRecord]:
    """MemoryRecords from rows of ``columns(with_embedding)`` read ``FROM records r`` joined as
    ``RECORDS`` says (the record's utility and links come in the same row)."""
    return sqlcommon.whole_records(rows, DECODE, _links, with_embedding)


def _links(pairs: Sequence[Sequence[str]] | None) -> list[Link]:
    """A record's links from its array of [target, type] pairs (already in the order they were made)."""
    return [Link(target=dst, type=typ) for dst, typ in pairs or ()]


def vector_from_send(data: bytes) -> list[float]:
    """Decode vector_send() output (int16 dim, int16 unused, dim big-endian float32) to exact floats."""
    dim = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32).tolist()


def utc(value: datetime | None) -> datetime | None:
    """Aware UTC with ``datetime.UTC`` as tzinfo, as the SQLite store returns (psycopg gives ZoneInfo)."""
    return None if value is None else value.astimezone(UTC)


def _parsed(value: Any) -> Any:
    return value  # psycopg parses json and jsonb columns itself


# how psycopg returns what this store wrote (see memq.store.sqlcommon for the row decoders)
DECODE = RowDecoder(time=utc, json=_parsed, vector=vector_from_send)
utility_of = partial(sqlcommon.utility_of, decode=DECODE)
logged = partial(sqlcommon.logged, decode=DECODE)
logged_head = partial(sqlcommon.logged_head, decode=DECODE)


def event(row: Sequence[Any], version_record: MemoryRecord | None = None) -> HistoryEvent:
    """A HistoryEvent from an ``EVENT_COLUMNS`` row."""
    return sqlcommon.event_of(row, DECODE, version_record)


# -- memq types to rows -----------------------------------------------------------------------------


def vector_param(embedding: Sequence[float] | np.ndarray | None) -> np.ndarray | None:
    """A vector as pgvector's adapter takes it (exact float32)."""
    return None if embedding is None else np.asarray(embedding, dtype=np.float32)


# how psycopg takes what this store writes: the values of ``RECORD_FIELDS`` come from
# memq.store.sqlcommon.record_values
ENCODE = RowEncoder(time=identity, document=partial(Json, dumps=_dumps), ids=Jsonb, vector=vector_param)


def fetch_one(sql: str, params: Sequence[Any], missing: Exception) -> Op[Sequence[Any]]:
    """The first row of a query, or raise ``missing`` when there is none."""
    row = yield Q(sql, params, mode="one")
    if row is None:
        raise missing
    return row  # type: ignore[no-any-return]


def write_records(records: Sequence[MemoryRecord], *, utility: bool = True) -> Op[None]:
    """Insert record versions as they are, with their links and (with ``utility``) their non-default
    utility rows. A new version of an existing record passes ``utility=False``: the record's utility
    row is the feedback's, and writing the copy read before the update could undo a feedback.

    Vectors go into the HNSW graph at once or wait for the next build, as :func:`hnsw.defer` decides
    for the batch."""
    deferred = yield from hnsw.defer(sum(r.embedding is not None for r in records))
    yield Q(
        COPY_RECORDS,
        [(*record_values(r, ENCODE), deferred and r.embedding is not None) for r in records],
        mode="copy",
        types=COPY_RECORD_TYPES,
    )
    yield from write_links(records)
    rows = [utility_params(r) for r in records if utility and not default_utility(r.utility)]
    if rows:
        yield Q(UPSERT_UTILITY, rows, mode="many")


def write_links(records: Iterable[MemoryRecord]) -> Op[None]:
    params = [
        (r.scope.tenant, r.id, link.target, link.type, r.recorded_at) for r in records for link in r.links
    ]
    if params:
        yield Q(INSERT_LINK, params, mode="many")


def default_utility(u: Utility) -> bool:
    return u == Utility()


def utility_params(r: MemoryRecord) -> tuple[Any, ...]:
    return utility_row(r.scope.tenant, r.id, r.utility)


def utility_row(tenant: str, rid: str, u: Utility) -> tuple[Any, ...]:
    # stats go to a ``json`` column as the text json.dumps writes: key order survives (see schema)
    return (
        rid,
        tenant,
        u.q,
        u.n_shown,
        u.n_used,
        u.reward_sum,
        u.last_feedback_at,
        Json(u.stats, dumps=_dumps),
    )


def vector_bytes(vector: np.ndarray | None) -> bytes | None:
    """A query vector as little-endian float32 bytes (exact; the layout SQLite stores)."""
    return None if vector is None else np.asarray(vector, dtype="<f4").tobytes()


def event_params(e: EventRow) -> tuple[Any, ...]:
    """The ``EVENT_FIELDS`` values of an event (the op as its text)."""
    return (e.tenant, e.record_id, HistoryOp(e.op).value, e.version, e.at, e.actor, e.reason)
