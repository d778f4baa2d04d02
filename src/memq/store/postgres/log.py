"""The retrieval log and what feedback writes: logging and reading searches, pruning the log, the
feedback transaction, and per-record learner stats (``add_stats``). Operations, see :mod:`.steps`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import numpy as np
from psycopg.types.json import Jsonb

from memq.store.base import FeedbackPlan, LogEntry, LogRow, PlanFn, merge_stats
from memq.store.postgres.rows import (
    DECODE,
    UPSERT_UTILITY,
    fetch_one,
    logged,
    logged_head,
    utility_of,
    utility_row,
    vector_bytes,
)
from memq.store.postgres.steps import Op, Q
from memq.store.sqlcommon import (
    LOG_ROW_COLUMNS,
    RETRIEVAL_COLUMNS,
    RETRIEVAL_HEAD,
    UTILITY_COLUMNS,
    TrainingRows,
    no_retrieval,
    pool_json,
    pool_scores_blob,
    shown_document,
)
from memq.types import LoggedRetrieval, Utility

# missing utility rows of the tenant's existing records, created with the defaults (in id order)
CREATE_UTILITY = (
    "INSERT INTO utility (id, tenant) SELECT DISTINCT id, tenant FROM records "
    "WHERE tenant = %s AND id = ANY(%s) ORDER BY id ON CONFLICT (id) DO NOTHING"
)
LOCK_UTILITY = (
    f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = %s AND id = ANY(%s) ORDER BY id FOR UPDATE"
)


def _encoded(text: str) -> str:
    """``Jsonb``'s dumps for a value that is JSON text already (``pool_json``)."""
    return text


def log_retrieval(entry: LogEntry) -> Op[None]:
    retrieval = entry.retrieval
    features = None if entry.features is None else np.ascontiguousarray(entry.features, dtype="<f4").tobytes()
    # The search's own log line need not wait for the WAL flush (this transaction only): a crash can
    # lose the last few log lines (feedback on them is then refused as unknown), never corrupt anything.
    yield Q("SET LOCAL synchronous_commit TO OFF", (), mode="none")
    yield Q(
        "INSERT INTO retrievals (id, tenant, query, policy, policy_version, k, shown, pool, pool_scores, "
        'query_vector, embedding_model, created_at, learner, "window", feature_set, features, shadow) '
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            retrieval.id,
            retrieval.scope.tenant,
            retrieval.query,
            retrieval.policy,
            retrieval.policy_version,
            retrieval.k,
            Jsonb(shown_document(entry)),
            Jsonb(pool_json(entry.pool), dumps=_encoded),
            pool_scores_blob(entry),
            vector_bytes(entry.query_vector),
            entry.embedding_model,
            retrieval.created_at,
            retrieval.learner,
            Jsonb(list(entry.window)),
            entry.feature_set,
            features,
            None if entry.shadow is None else Jsonb(list(entry.shadow)),
        ),
        mode="none",
    )


def get_retrieval(tenant: str, retrieval_id: str, lock: bool = False) -> Op[LoggedRetrieval]:
    """A logged retrieval, or NotFoundError; ``lock``: its row locked until the transaction ends."""
    row = yield from fetch_one(
        f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE tenant = %s AND id = %s"
        + (" FOR UPDATE" if lock else ""),
        (tenant, retrieval_id),
        no_retrieval(tenant, retrieval_id),
    )
    return logged(row)


def list_retrievals(
    tenant: str, since: datetime | None, limit: int, with_feedback: bool, latest: bool = False
) -> Op[list[LoggedRetrieval]]:
    clause, params = "tenant = %s", [tenant]
    if since is not None:
        clause += " AND created_at >= %s"
        params.append(since)
    if with_feedback:
        clause += " AND feedback IS NOT NULL"
    order = "DESC" if latest else ""
    # ids tie-break bytewise (COLLATE "C"), as in SQLite, whatever the database's collation
    rows = yield Q(
        f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE {clause} "
        f'ORDER BY created_at {order}, id COLLATE "C" {order} LIMIT %s',
        (*params, limit),
    )
    out = [logged(r) for r in rows]
    return out[::-1] if latest else out


def training_log(tenant: str, limit: int, since: datetime | None, kept: TrainingRows) -> Op[list[LogRow]]:
    """The newest ``limit`` searches with feedback (since ``since``), oldest first, as LogRows: ids and
    feedback first, then the rows ``kept`` does not hold decoded with that feedback."""
    clause, params = "tenant = %s AND feedback IS NOT NULL", [tenant]
    if since is not None:
        clause += " AND created_at >= %s"
        params.append(since)
    heads = yield Q(
        f"SELECT id, feedback FROM retrievals WHERE {clause} "
        'ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT %s',
        (*params, limit),
    )
    fresh, missing = kept.missing(tenant, heads)
    read = (
        (
            yield Q(
                f"SELECT {LOG_ROW_COLUMNS} FROM retrievals WHERE tenant = %s AND id = ANY(%s)",
                (tenant, missing),
            )
        )
        if missing
        else []
    )
    return kept.complete(tenant, heads, fresh, read, DECODE)


def prune_retrievals(before: datetime, tenant: str | None) -> Op[int]:
    if tenant is None:
        return (yield Q("DELETE FROM retrievals WHERE created_at < %s", (before,), mode="rowcount"))
    return (
        yield Q(
            "DELETE FROM retrievals WHERE tenant = %s AND created_at < %s", (tenant, before), mode="rowcount"
        )
    )


def apply_feedback(tenant: str, retrieval_id: str, plan: PlanFn) -> Op[FeedbackPlan]:
    """Feedback on one logged retrieval, as one transaction (the runner's).

    The retrieval row is locked first (``FOR UPDATE``), so concurrent feedbacks on one retrieval
    run one after the other and the second sees the first's feedback (the plan then refuses it
    unless accumulating). The shown records' utility rows are locked next, in id order; missing
    rows of records that still exist are first inserted with the defaults, so two feedbacks on
    different retrievals that showed one record never both start from "no row" and lose an update.
    ``plan`` runs between the reads and the writes; anything it raises rolls everything back. When
    the search trained a learner, that learner's feedback count goes up (the row created if needed).
    """
    row = yield from fetch_one(
        f"SELECT {RETRIEVAL_HEAD} FROM retrievals WHERE tenant = %s AND id = %s FOR UPDATE",
        (tenant, retrieval_id),
        no_retrieval(tenant, retrieval_id),
    )
    retrieval = logged_head(row)
    ids = sorted({s.id for s in retrieval.shown})
    current = {s.id: Utility() for s in retrieval.shown}
    present: set[str] = set()
    if ids:
        yield Q(CREATE_UTILITY, (tenant, ids), mode="none")
        for r in (yield Q(LOCK_UTILITY, (tenant, ids))):
            current[r[0]] = utility_of(r)
    result = plan(retrieval, current)
    if ids:
        found = yield Q("SELECT DISTINCT id FROM records WHERE tenant = %s AND id = ANY(%s)", (tenant, ids))
        present = {r[0] for r in found}
    # a record purged since the search gets no utility row back
    params = [utility_row(tenant, rid, u) for rid, u in result.utilities.items() if rid in present]
    if params:
        yield Q(UPSERT_UTILITY, params, mode="many")
    yield Q(
        "UPDATE retrievals SET feedback = %s WHERE tenant = %s AND id = %s",
        (Jsonb(result.feedback.model_dump(mode="json")), tenant, retrieval_id),
        mode="none",
    )
    result.learner = retrieval.learner
    if retrieval.learner is not None:
        counted = yield Q(
            "INSERT INTO learner_state AS s (tenant, name, state, updated_at, version, feedbacks) "
            "VALUES (%s, %s, '{}', %s, 0, 1) ON CONFLICT (tenant, name) DO UPDATE SET feedbacks = s.feedbacks + 1 "
            "RETURNING feedbacks",
            (tenant, retrieval.learner, result.feedback.at),
            mode="one",
        )
        result.learner_feedbacks = int(counted[0])
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
    yield Q(CREATE_UTILITY, (tenant, ids), mode="none")
    rows = yield Q(LOCK_UTILITY, (tenant, ids))
    params = []
    for r in rows:
        u = utility_of(r)
        params.append(
            utility_row(tenant, r[0], u.model_copy(update={"stats": merge_stats(u.stats, deltas[r[0]])}))
        )
    if params:
        yield Q(UPSERT_UTILITY, params, mode="many")
