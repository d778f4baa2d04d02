"""The SQL of the PostgreSQL store and the mapping of its rows, shared by the sync and async classes.

Each public function here is an operation (see :mod:`memq.store.postgres.steps`) implementing one
:class:`memq.store.base.Store` method with the semantics of the SQLite reference store: versions
(expire the current row, insert version + 1), soft delete (expire + flag), history events,
purge, links, utility, the retrieval log, export/import and re-embedding. The runners decide the
transaction: writes run in one READ COMMITTED transaction each, reads in one read-only snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from psycopg.types.json import Json, Jsonb

from memq.errors import ConflictError, NotFoundError
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
from memq.store.postgres import schema
from memq.store.postgres.steps import Emit, Op, Q
from memq.store.sqlcommon import archived_clause, query_terms, visibility
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

# the columns a MemoryRecord is built from, in the order _record() reads them
COLUMNS = (
    "r.id, r.version, r.tenant, r.user_id, r.agent_id, r.session_id, r.kind, r.text, r.payload_json, "
    "r.metadata_json, r.source, r.source_message_ids, r.parent_ids, r.valid_from, r.valid_to, "
    "r.recorded_at, r.expired_at, r.deleted, r.embedding_model"
)

INSERT_RECORD = (
    "INSERT INTO records (id, version, tenant, user_id, agent_id, session_id, kind, text, payload_json, "
    "metadata_json, source, source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, "
    "deleted, embedding_model, embedding) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
UTILITY_COLUMNS = "id, q, n_shown, n_used, reward_sum, last_feedback_at, stats"
# the columns a LoggedRetrieval is built from, in the order _logged() reads them
RETRIEVAL_COLUMNS = (
    "id, tenant, query, query_vector, embedding_model, policy, policy_version, k, pool, shown, created_at, "
    "feedback"
)
UPSERT_LEARNER_STATE = (
    "INSERT INTO learner_state (tenant, name, state, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)
INSERT_EVENT = "INSERT INTO events (tenant, record_id, op, version, at, actor, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)"

EXPORT_BATCH = 500
EVENT_BATCH = 5000

_dumps = partial(json.dumps, ensure_ascii=False)


def _identity(value: datetime) -> datetime:
    """PostgreSQL takes datetimes as they are (timestamptz); the filters' time_param."""
    return value


def _where(query: CandidateQuery) -> tuple[str, list[Any]]:
    return visibility(query, "postgres", _identity)


def _columns(with_embedding: bool) -> str:
    # The vector travels as vector_send()'s bytea (big-endian float32s): exact, cheap to decode, and
    # of one result type whatever the column's dimension. Selecting ``r.embedding`` itself would
    # make the result type vector(n), and a statement psycopg prepared on a pooled connection (here
    # or in another process) would fail with "cached plan must not change result type" once a
    # re-embed retypes the column.
    return COLUMNS + (", vector_send(r.embedding)" if with_embedding else "")


# -- writes ---------------------------------------------------------------------------------------------


def set_embedding_space(model_id: str, dim: int) -> Op[None]:
    yield from schema.check_or_set_space(model_id, dim)


def _spaces(records: Iterable[MemoryRecord]) -> list[tuple[str, int]]:
    """The distinct (model, dim) of the records' vectors, in order of first appearance."""
    seen: dict[tuple[str, int], None] = {}
    for r in records:
        if r.embedding is not None:
            seen.setdefault((r.embedding_model or "", len(r.embedding)), None)
    return list(seen)


def insert(records: Sequence[MemoryRecord], op: HistoryOp, actor: str | None, reason: str | None) -> Op[None]:
    if not records:
        return
    for model_id, dim in _spaces(records):  # before touching records: see check_or_set_space
        yield from schema.check_or_set_space(model_id, dim)
    yield from _insert_rows(records, op, actor, reason)


def _insert_rows(
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
    clash = yield Q("SELECT id FROM records WHERE id = ANY(%s) LIMIT 1", (ids,), mode="one")
    if clash is not None:
        raise ConflictError(f"a record with id {clash[0]} already exists")
    yield Q(INSERT_RECORD, [_record_params(r) for r in records], mode="many")
    yield from _links(records)
    utility = [_utility_params(r) for r in records if not _default_utility(r.utility)]
    if utility:
        yield Q(UPSERT_UTILITY, utility, mode="many")
    yield Q(
        INSERT_EVENT,
        [_event_params(r.scope.tenant, r.id, op, r.version, r.recorded_at, actor, reason) for r in records],
        mode="many",
    )


def write_version(change: VersionChange) -> Op[MemoryRecord]:
    new = change.new
    cur = yield Q(
        "SELECT row_key, version FROM records WHERE tenant = %s AND id = %s AND expired_at IS NULL",
        (change.tenant, change.record_id),
        mode="one",
    )
    if cur is None:
        raise NotFoundError(f"no current record {change.record_id} in tenant {change.tenant!r}")
    if new.version != cur[1] + 1:
        raise ConflictError(
            f"record {change.record_id} changed concurrently (now at version {cur[1]}); reload and retry"
        )
    if new.embedding is not None:
        # after reading records (to keep the SQLite store's error order); the runner retries the
        # rare deadlock this can meet while another transaction sets the first space
        yield from schema.check_or_set_space(new.embedding_model or "", len(new.embedding))
    # ``expired_at IS NULL`` again: a concurrent writer that got here first makes this match nothing
    expired = yield Q(
        "UPDATE records SET expired_at = %s WHERE row_key = %s AND expired_at IS NULL",
        (new.recorded_at, cur[0]),
        mode="rowcount",
    )
    if expired != 1:
        raise ConflictError(f"record {change.record_id} changed concurrently; reload and retry")
    yield Q(INSERT_RECORD, _record_params(new), mode="none")
    yield from _links([new])
    yield Q(
        INSERT_EVENT,
        _event_params(
            change.tenant,
            change.record_id,
            change.op,
            new.version,
            new.recorded_at,
            change.actor,
            change.reason,
        ),
        mode="none",
    )
    return new


def apply_writes(batch: WriteBatch) -> Op[list[MemoryRecord]]:
    """A whole write plan as one operation (so in the runner's one transaction): the spaces of every
    vector first (before touching records: see check_or_set_space), then the insert groups, the
    version changes (each with :func:`write_version`'s checks) and the stats. Any error raised here
    or by the server rolls the transaction back whole."""
    if batch.empty:
        return []
    for model_id, dim in _spaces(batch.records):
        yield from schema.check_or_set_space(model_id, dim)
    for group in batch.inserts:
        if group.records:
            yield from _insert_rows(group.records, group.op, group.actor, group.reason)
    written = []
    for change in batch.versions:
        written.append((yield from write_version(change)))
    yield from add_stats(batch.tenant, batch.stats)
    return written


def delete(tenant: str, record_id: str, actor: str | None, reason: str | None) -> Op[None]:
    cur = yield Q(
        "SELECT row_key, version FROM records WHERE tenant = %s AND id = %s AND expired_at IS NULL",
        (tenant, record_id),
        mode="one",
    )
    if cur is None:
        raise NotFoundError(f"no current record {record_id} in tenant {tenant!r}")
    now = utcnow()
    done = yield Q(
        "UPDATE records SET expired_at = %s, deleted = true WHERE row_key = %s AND expired_at IS NULL",
        (now, cur[0]),
        mode="rowcount",
    )
    if done != 1:
        raise ConflictError(f"record {record_id} changed concurrently; reload and retry")
    yield Q(
        INSERT_EVENT, _event_params(tenant, record_id, HistoryOp.DELETE, cur[1], now, actor, reason), "none"
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
        _event_params(tenant, rid, HistoryOp.ARCHIVE, version[rid], now, actor, reason)
        for rid in ids
        if rid in version
    ]
    if params:
        yield Q(INSERT_EVENT, params, mode="many")
    return len(params)


def restore(tenant: str, record_id: str, actor: str | None, reason: str | None) -> Op[MemoryRecord]:
    last = yield Q(
        "SELECT op FROM events WHERE tenant = %s AND record_id = %s ORDER BY seq DESC LIMIT 1",
        (tenant, record_id),
        mode="one",
    )
    if last is None:
        raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
    if last[0] != HistoryOp.ARCHIVE.value:
        raise ConflictError(f"record {record_id} is not archived (its latest event is {last[0]!r})")
    row = yield Q(
        "SELECT row_key, version FROM records WHERE tenant = %s AND id = %s ORDER BY version DESC LIMIT 1 "
        "FOR UPDATE",
        (tenant, record_id),
        mode="one",
    )
    now = utcnow()
    yield Q(
        "INSERT INTO records (id, version, tenant, user_id, agent_id, session_id, kind, text, payload_json, "
        "metadata_json, source, source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, "
        "deleted, embedding_model, embedding) SELECT id, version + 1, tenant, user_id, agent_id, session_id, "
        "kind, text, payload_json, metadata_json, source, source_message_ids, parent_ids, valid_from, valid_to, "
        "%s, NULL, false, embedding_model, embedding FROM records WHERE row_key = %s",
        (now, row[0]),
        mode="none",
    )
    yield Q(
        INSERT_EVENT,
        _event_params(tenant, record_id, HistoryOp.RESTORE, row[1] + 1, now, actor, reason),
        mode="none",
    )
    rows = yield Q(
        f"SELECT {COLUMNS} FROM records r WHERE r.tenant = %s AND r.id = %s AND r.version = %s",
        (tenant, record_id, row[1] + 1),
    )
    records = yield from hydrate(rows, False)
    return records[0]


def list_archived(query: CandidateQuery, cursor: str | None, limit: int) -> Op[Page]:
    where, params = archived_clause(query, "postgres", _identity)
    return (yield from _page(where, params, cursor, limit))


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


def log_retrieval(
    retrieval: Retrieval,
    pool: Sequence[PoolEntry],
    query_vector: np.ndarray | None,
    embedding_model: str | None,
) -> Op[None]:
    shown = [
        {"id": h.record.id, "rank": h.rank, "score": h.score, "propensity": h.propensity}
        for h in retrieval.hits
    ]
    yield Q(
        "INSERT INTO retrievals (id, tenant, query, policy, policy_version, k, shown, pool, query_vector, "
        "embedding_model, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            retrieval.id,
            retrieval.scope.tenant,
            retrieval.query,
            retrieval.policy,
            retrieval.policy_version,
            retrieval.k,
            Jsonb(shown),
            Jsonb([p.model_dump(exclude_none=True) for p in pool]),
            _vector_bytes(query_vector),
            embedding_model,
            retrieval.created_at,
        ),
        mode="none",
    )


def prune_retrievals(before: datetime, tenant: str | None) -> Op[int]:
    if tenant is None:
        return (yield Q("DELETE FROM retrievals WHERE created_at < %s", (before,), mode="rowcount"))
    return (
        yield Q(
            "DELETE FROM retrievals WHERE tenant = %s AND created_at < %s", (tenant, before), mode="rowcount"
        )
    )


def apply_feedback(
    tenant: str,
    retrieval_id: str,
    plan: PlanFn,
    learner: str | None = None,
    known_stamp: datetime | None = None,
) -> Op[FeedbackPlan]:
    """Feedback on one logged retrieval, as one transaction (the runner's).

    The retrieval row is locked first (``FOR UPDATE``), so concurrent feedbacks on one retrieval
    run one after the other and the second sees the first's feedback (the plan then refuses it
    unless accumulating). The shown records' utility rows are locked next, in id order; missing
    rows of records that still exist are first inserted with the defaults, so two feedbacks on
    different retrievals that showed one record never both start from "no row" and lose an update.
    With ``learner``, that learner's state row is locked last (``FOR UPDATE``), so feedbacks from
    any instance update it one after the other; its JSON is read only when ``updated_at`` is not
    ``known_stamp``. ``plan`` runs between the reads and the writes; anything it raises rolls
    everything back.
    """
    row = yield Q(
        f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE tenant = %s AND id = %s FOR UPDATE",
        (tenant, retrieval_id),
        mode="one",
    )
    if row is None:
        raise _no_retrieval(tenant, retrieval_id)
    logged = _logged(row)
    ids = sorted({s.id for s in logged.shown})
    current = {s.id: Utility() for s in logged.shown}
    present: set[str] = set()
    if ids:
        yield Q(
            "INSERT INTO utility (id, tenant) SELECT DISTINCT id, tenant FROM records "
            "WHERE tenant = %s AND id = ANY(%s) ORDER BY id ON CONFLICT (id) DO NOTHING",
            (tenant, ids),
            mode="none",
        )
        rows = yield Q(
            f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
            (tenant, ids),
        )
        for r in rows:
            current[r[0]] = _utility(r)
    stored = None
    if learner is not None:
        got = yield Q(
            "SELECT updated_at, CASE WHEN updated_at IS DISTINCT FROM %s::timestamptz THEN state END "
            "FROM learner_state WHERE tenant = %s AND name = %s FOR UPDATE",
            (known_stamp, tenant, learner),
            mode="one",
        )
        if got is not None:
            stored = StoredLearnerState(state=got[1], updated_at=got[0])
    result = plan(logged, current, stored)
    if ids:
        found = yield Q("SELECT DISTINCT id FROM records WHERE tenant = %s AND id = ANY(%s)", (tenant, ids))
        present = {r[0] for r in found}
    # a record purged since the search gets no utility row back
    params = [_utility_row(tenant, rid, u) for rid, u in result.utilities.items() if rid in present]
    if params:
        yield Q(UPSERT_UTILITY, params, mode="many")
    yield Q(
        "UPDATE retrievals SET feedback = %s WHERE tenant = %s AND id = %s",
        (Jsonb(result.feedback.model_dump(mode="json")), tenant, retrieval_id),
        mode="none",
    )
    if result.learner_state is not None:
        name, state = result.learner_state
        after = stored.updated_at if stored is not None and name == learner else None
        stamp = yield from save_learner_state(tenant, name, state, after=after)
        if name == learner:
            result.learner_stamp = stamp
    elif learner is not None:
        result.learner_stamp = None if stored is None else stored.updated_at
    return result


def add_stats(tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> Op[None]:
    """Add ``deltas`` to the stats of the tenant's existing records, as one transaction (the runner's).

    As in :func:`apply_feedback`, missing utility rows of existing records are inserted with the
    defaults first, then the rows are locked in id order (``FOR UPDATE``): concurrent calls on one
    record run one after the other, each adding to what the last committed. Ids with no record in
    the tenant get no row (the insert selects from ``records``, the lock finds nothing).
    """
    ids = sorted(deltas)
    if not ids:
        return
    yield Q(
        "INSERT INTO utility (id, tenant) SELECT DISTINCT id, tenant FROM records "
        "WHERE tenant = %s AND id = ANY(%s) ORDER BY id ON CONFLICT (id) DO NOTHING",
        (tenant, ids),
        mode="none",
    )
    rows = yield Q(
        f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = %s AND id = ANY(%s) ORDER BY id FOR UPDATE",
        (tenant, ids),
    )
    params = []
    for r in rows:
        u = _utility(r)
        params.append(
            _utility_row(tenant, r[0], u.model_copy(update={"stats": merge_stats(u.stats, deltas[r[0]])}))
        )
    if params:
        yield Q(UPSERT_UTILITY, params, mode="many")


def save_learner_state(
    tenant: str, name: str, state: dict[str, Any], after: datetime | None = None
) -> Op[datetime]:
    """Upsert the learner's state; returns its new ``updated_at`` (now, but later than ``after``)."""
    stamp = utcnow()
    if after is not None and stamp <= after:
        stamp = after + timedelta(microseconds=1)  # a new state never keeps the stamp of the old one
    yield Q(UPSERT_LEARNER_STATE, (tenant, name, Jsonb(state), stamp), mode="none")
    return stamp


def import_rows(rows: Sequence[MemoryRecord | HistoryEvent]) -> Op[int]:
    records = [r for r in rows if isinstance(r, MemoryRecord)]
    events = [r for r in rows if isinstance(r, HistoryEvent)]
    for model_id, dim in _spaces(records):
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
        yield Q(INSERT_RECORD, [_record_params(r) for r in records], mode="many")
        yield from _links(records)
        utility = [_utility_params(r) for r in records if not _default_utility(r.utility)]
        if utility:
            yield Q(UPSERT_UTILITY, utility, mode="many")
    tenant_of = {r.id: r.scope.tenant for r in records}
    unknown = [e.record_id for e in events if e.record_id not in tenant_of]
    if unknown:
        found = yield Q(
            "SELECT DISTINCT ON (id) id, tenant FROM records WHERE id = ANY(%s)",
            (list(dict.fromkeys(unknown)),),
        )
        tenant_of.update(dict(found))
    params = []
    for event in events:
        tenant = tenant_of.get(event.record_id)
        if tenant is None:
            raise NotFoundError(f"history event for unknown record {event.record_id}")
        params.append(
            _event_params(
                tenant, event.record_id, event.op, event.version, event.at, event.actor, event.reason
            )
        )
    if params:
        yield Q(INSERT_EVENT, params, mode="many")
    return len(records)


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
            [(np.asarray(v, dtype=np.float32), model_id, int(key)) for key, v in rows],
            mode="many",
        )
    if last:
        yield from schema.ensure_vector_index()


# -- reads ----------------------------------------------------------------------------------------------


def embedding_space() -> Op[tuple[str, int] | None]:
    return (yield from schema.read_space())


def get(
    tenant: str, ids: Sequence[str], include_deleted: bool, with_embedding: bool
) -> Op[list[MemoryRecord]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return []
    # the latest version of each id
    rows = yield Q(
        f"SELECT DISTINCT ON (r.id) {_columns(with_embedding)} FROM records r "
        "WHERE r.tenant = %s AND r.id = ANY(%s) ORDER BY r.id, r.version DESC",
        (tenant, ids),
    )
    records = yield from hydrate(rows, with_embedding)
    found = {r.id: r for r in records if include_deleted or not r.deleted}
    return [found[i] for i in ids if i in found]


def list_page(query: CandidateQuery, cursor: str | None, limit: int) -> Op[Page]:
    where, params = _where(query)
    return (yield from _page(where, params, cursor, limit))


def _page(where: str, params: list[Any], cursor: str | None, limit: int) -> Op[Page]:
    """Records matching ``where`` in id order after ``cursor``: one page and the next cursor."""
    if cursor is not None:
        where += " AND r.id > %s"
        params.append(cursor)
    rows = yield Q(
        f"SELECT {COLUMNS} FROM records r WHERE {where} ORDER BY r.id LIMIT %s", (*params, limit + 1)
    )
    records = yield from hydrate(rows[:limit], False)
    next_cursor = records[-1].id if len(rows) > limit else None
    return Page(records=records, next_cursor=next_cursor)


def visible(query: CandidateQuery, ids: Sequence[str], with_embedding: bool) -> Op[dict[str, MemoryRecord]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    where, params = _where(query)
    rows = yield Q(
        f"SELECT {_columns(with_embedding)} FROM records r WHERE r.id = ANY(%s) AND {where} ORDER BY r.version",
        (ids, *params),
    )
    records = yield from hydrate(rows, with_embedding)
    return {r.id: r for r in records}


def get_retrieval(tenant: str, retrieval_id: str) -> Op[LoggedRetrieval]:
    row = yield Q(
        f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE tenant = %s AND id = %s",
        (tenant, retrieval_id),
        mode="one",
    )
    if row is None:
        raise _no_retrieval(tenant, retrieval_id)
    return _logged(row)


def list_retrievals(
    tenant: str, since: datetime | None, limit: int, with_feedback: bool
) -> Op[list[LoggedRetrieval]]:
    where, params = "tenant = %s", [tenant]
    if since is not None:
        where += " AND created_at >= %s"
        params.append(since)
    if with_feedback:
        where += " AND feedback IS NOT NULL"
    # ids tie-break bytewise (COLLATE "C"), as in SQLite, whatever the database's collation
    rows = yield Q(
        f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE {where} "
        'ORDER BY created_at, id COLLATE "C" LIMIT %s',
        (*params, limit),
    )
    return [_logged(r) for r in rows]


def learner_state(tenant: str, name: str) -> Op[dict[str, Any] | None]:
    row = yield Q(
        "SELECT state FROM learner_state WHERE tenant = %s AND name = %s", (tenant, name), mode="one"
    )
    return None if row is None else row[0]  # type: ignore[no-any-return]


def learner_state_stamped(tenant: str, name: str) -> Op[tuple[dict[str, Any], datetime] | None]:
    row = yield Q(
        "SELECT state, updated_at FROM learner_state WHERE tenant = %s AND name = %s",
        (tenant, name),
        mode="one",
    )
    return None if row is None else (row[0], row[1])


def history(tenant: str, record_id: str) -> Op[list[HistoryEvent]]:
    events = yield Q(
        "SELECT op, version, at, actor, reason FROM events WHERE tenant = %s AND record_id = %s ORDER BY seq",
        (tenant, record_id),
    )
    if not events:
        raise NotFoundError(f"no record {record_id} in tenant {tenant!r}")
    rows = yield Q(
        f"SELECT {COLUMNS} FROM records r WHERE r.tenant = %s AND r.id = %s ORDER BY r.version",
        (tenant, record_id),
    )
    records = yield from hydrate(rows, False)
    versions = {r.version: r for r in records}
    return [
        HistoryEvent(
            record_id=record_id,
            op=HistoryOp(op),
            version=version,
            at=_utc(at),
            actor=actor,
            reason=reason,
            record=versions.get(version),
        )
        for op, version, at, actor, reason in events
    ]


def dense_candidates(query: CandidateQuery, vector: np.ndarray, n: int) -> Op[list[Candidate]]:
    """Up to ``n`` visible records nearest to ``vector`` by cosine distance.

    pgvector 0.6 filters *after* the HNSW scan, which stops at ``hnsw.ef_search`` candidates: with a
    selective filter (a small tenant in a big table, a narrow metadata filter, an as-of time) the
    index can return fewer than ``n`` rows although more visible rows exist. So ef_search is raised
    for the query (``SET LOCAL``: this transaction only), and when the result is short while the
    visible rows with vectors are more, the query is re-run exactly: ordering by
    ``(embedding <=> q) + 0`` is an expression the index cannot serve, so the planner scans the
    visible rows (through the tenant index) and sorts them. Both queries see one snapshot.
    """
    if n <= 0:
        return []
    where, params = _where(query)
    vec = np.asarray(vector, dtype=np.float32)
    yield Q(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * int(n)))}", mode="none")
    rows = yield Q(
        f"SELECT r.id, r.embedding <=> %s AS d FROM records r WHERE {where} AND r.embedding IS NOT NULL "
        "ORDER BY d LIMIT %s",
        (vec, *params, n),
    )
    if len(rows) < n:
        row = yield Q(
            f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {where} AND r.embedding IS NOT NULL "
            "LIMIT %s) AS v",
            (*params, n),
            mode="one",
        )
        if row[0] > len(rows):
            rows = yield Q(
                f"SELECT r.id, (r.embedding <=> %s) + 0 AS d FROM records r "
                f"WHERE {where} AND r.embedding IS NOT NULL ORDER BY d LIMIT %s",
                (vec, *params, n),
            )
    return _dedupe([Candidate(rid, 1.0 - float(d)) for rid, d in rows if d is not None])


def lexical_candidates(query: CandidateQuery, text: str, n: int) -> Op[list[Candidate]]:
    """Full-text candidates: ``ts_rank_cd`` over the generated ``tsv`` column, any term matching.

    Each query term goes through ``plainto_tsquery`` as a bind parameter and the parts are OR-ed
    with ``||``, so no user text is ever parsed as tsquery syntax.
    """
    terms = query_terms(text)
    if not terms or n <= 0:
        return []
    tsq = "(" + " || ".join(["plainto_tsquery('english', %s)"] * len(terms)) + ")"
    where, params = _where(query)
    rows = yield Q(
        f"SELECT r.id, ts_rank_cd(r.tsv, {tsq}) AS s FROM records r WHERE r.tsv @@ {tsq} AND {where} "
        "ORDER BY s DESC, r.row_key LIMIT %s",
        (*terms, *terms, *params, n),
    )
    return _dedupe([Candidate(rid, float(score)) for rid, score in rows])


def stats(tenant: str | None, backend: str, location: str) -> Op[StoreStats]:
    cond, params = ("WHERE tenant = %s", [tenant]) if tenant else ("", [])
    versions, records, deleted, invalidated, tenants = yield Q(
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
    return StoreStats(
        backend=backend,
        location=location,
        records=records or 0,
        versions=versions or 0,
        deleted=deleted or 0,
        invalidated=invalidated or 0,
        tenants=tenants or 0,
        embedding_model=space[0] if space else None,
        embedding_dim=space[1] if space else None,
        bytes=int(size[0] or 0),
        kinds={k: int(c) for k, c in kinds},
    )


def export_rows(tenant: str | None) -> Op[None]:
    """Emit every version (with its vector) in insertion order, then every history event."""
    cond, params = ("r.tenant = %s AND ", [tenant]) if tenant else ("", [])
    last = 0
    while True:
        rows = yield Q(
            f"SELECT r.row_key, {_columns(True)} FROM records r WHERE {cond}r.row_key > %s "
            f"ORDER BY r.row_key LIMIT {EXPORT_BATCH}",
            (*params, last),
        )
        if not rows:
            break
        last = rows[-1][0]
        records = yield from hydrate([r[1:] for r in rows], True)
        yield Emit(records)
    econd = "tenant = %s AND " if tenant else ""
    last = 0
    while True:
        rows = yield Q(
            f"SELECT seq, record_id, op, version, at, actor, reason FROM events WHERE {econd}seq > %s "
            f"ORDER BY seq LIMIT {EVENT_BATCH}",
            (*params, last),
        )
        if not rows:
            break
        last = rows[-1][0]
        yield Emit(
            [
                HistoryEvent(
                    record_id=rid, op=HistoryOp(op), version=version, at=_utc(at), actor=actor, reason=reason
                )
                for _, rid, op, version, at, actor, reason in rows
            ]
        )


def embeddable(after: int, batch: int) -> Op[list[tuple[int, str]]]:
    """(row key, text) of the next ``batch`` versions after row key ``after`` (whole store)."""
    rows = yield Q(
        "SELECT row_key, text FROM records WHERE row_key > %s ORDER BY row_key LIMIT %s", (after, batch)
    )
    return [(int(k), t) for k, t in rows]


# -- row mapping ----------------------------------------------------------------------------------------


def hydrate(rows: Sequence[Sequence[Any]], with_embedding: bool) -> Op[list[MemoryRecord]]:
    """Build MemoryRecords from ``COLUMNS`` rows, fetching their links and utility (per tenant)."""
    if not rows:
        return []
    by_tenant: dict[str, list[str]] = {}
    for r in rows:
        by_tenant.setdefault(r[2], []).append(r[0])
    links: dict[str, list[Link]] = {}
    utility: dict[str, Utility] = {}
    for tenant, ids in by_tenant.items():
        ids = list(dict.fromkeys(ids))
        link_rows = yield Q(
            "SELECT src, dst, type FROM links WHERE tenant = %s AND src = ANY(%s) ORDER BY created_at, dst",
            (tenant, ids),
        )
        for src, dst, typ in link_rows:
            links.setdefault(src, []).append(Link(target=dst, type=typ))
        utility_rows = yield Q(
            f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = %s AND id = ANY(%s)", (tenant, ids)
        )
        for r in utility_rows:
            utility[r[0]] = _utility(r)
    return [_record(r, with_embedding, links.get(r[0], []), utility.get(r[0])) for r in rows]


def _record(
    r: Sequence[Any], with_embedding: bool, links: list[Link], utility: Utility | None
) -> MemoryRecord:
    embedding = None
    if with_embedding and r[19] is not None:
        embedding = _vector_from_send(r[19])
    return MemoryRecord.model_construct(
        id=r[0],
        version=r[1],
        scope=Scope(tenant=r[2], user=r[3], agent=r[4], session=r[5]),
        kind=r[6],
        text=r[7],
        payload=r[8],
        metadata=r[9],
        provenance=Provenance(source=r[10], source_message_ids=r[11], parent_ids=r[12]),
        links=links,
        valid_from=_utc(r[13]),
        valid_to=_utc(r[14]),
        recorded_at=_utc(r[15]),
        expired_at=_utc(r[16]),
        deleted=bool(r[17]),
        embedding_model=r[18],
        embedding=embedding,
        utility=utility or Utility(),
    )


def _vector_from_send(data: bytes) -> list[float]:
    """Decode vector_send() output (int16 dim, int16 unused, dim big-endian float32) to exact floats."""
    dim = int.from_bytes(data[:2], "big")
    return np.frombuffer(data, dtype=">f4", count=dim, offset=4).astype(np.float32).tolist()


def _utc(value: datetime | None) -> datetime | None:
    """Aware UTC with ``datetime.UTC`` as tzinfo, as the SQLite store returns (psycopg gives ZoneInfo)."""
    return None if value is None else value.astimezone(UTC)


def _record_params(r: MemoryRecord) -> tuple[Any, ...]:
    return (
        r.id,
        r.version,
        r.scope.tenant,
        r.scope.user,
        r.scope.agent,
        r.scope.session,
        r.kind,
        r.text,
        Json(r.payload, dumps=_dumps),
        Json(r.metadata, dumps=_dumps),
        r.provenance.source,
        Jsonb(r.provenance.source_message_ids),
        Jsonb(r.provenance.parent_ids),
        r.valid_from,
        r.valid_to,
        r.recorded_at,
        r.expired_at,
        r.deleted,
        r.embedding_model,
        None if r.embedding is None else np.asarray(r.embedding, dtype=np.float32),
    )


def _links(records: Iterable[MemoryRecord]) -> Op[None]:
    params = [
        (r.scope.tenant, r.id, link.target, link.type, r.recorded_at) for r in records for link in r.links
    ]
    if params:
        yield Q(INSERT_LINK, params, mode="many")


def _default_utility(u: Utility) -> bool:
    return u == Utility()


def _utility_params(r: MemoryRecord) -> tuple[Any, ...]:
    return _utility_row(r.scope.tenant, r.id, r.utility)


def _utility_row(tenant: str, rid: str, u: Utility) -> tuple[Any, ...]:
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


def _utility(r: Sequence[Any]) -> Utility:
    """A Utility from a ``UTILITY_COLUMNS`` row."""
    _, q, n_shown, n_used, reward_sum, last, stats = r
    return Utility(
        q=q,
        n_shown=n_shown,
        n_used=n_used,
        reward_sum=reward_sum,
        last_feedback_at=_utc(last),
        stats=stats,
    )


def _vector_bytes(vector: np.ndarray | None) -> bytes | None:
    """A query vector as little-endian float32 bytes (exact; the layout SQLite stores)."""
    return None if vector is None else np.asarray(vector, dtype="<f4").tobytes()


def _no_retrieval(tenant: str, retrieval_id: str) -> NotFoundError:
    return NotFoundError(
        f"no retrieval {retrieval_id} in tenant {tenant!r} (unknown, or pruned from the log)"
    )


def _logged(row: Sequence[Any]) -> LoggedRetrieval:
    """A LoggedRetrieval from a ``RETRIEVAL_COLUMNS`` row (jsonb arrives parsed)."""
    rid, tenant, query, qvec, model, policy, version, k, pool, shown, created, feedback = row
    return LoggedRetrieval(
        id=rid,
        tenant=tenant,
        query=query,
        query_vector=None if qvec is None else np.frombuffer(bytes(qvec), dtype="<f4").tolist(),
        embedding_model=model,
        policy=policy,
        policy_version=version,
        k=k,
        pool=[PoolEntry.model_validate(p) for p in pool],
        shown=[ShownEntry.model_validate(x) for x in shown],
        created_at=_utc(created),
        feedback=None if feedback is None else FeedbackRecord.model_validate(feedback),
    )


def _event_params(
    tenant: str,
    record_id: str,
    op: HistoryOp,
    version: int,
    at: datetime,
    actor: str | None,
    reason: str | None,
) -> tuple[Any, ...]:
    return (tenant, record_id, HistoryOp(op).value, version, at, actor, reason)


def _dedupe(candidates: list[Candidate]) -> list[Candidate]:
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out
