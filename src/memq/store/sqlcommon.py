"""SQL shared by the SQLite and PostgreSQL stores: the visibility clause, row columns, and the mapping
of rows to memq's types (each backend says how its driver returns times, JSON and vectors: a
:class:`RowDecoder`)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from memq.errors import NotFoundError
from memq.retrieve.filters import Dialect, SqlTarget, compile_filter
from memq.store.base import POOL_SCORES, Candidate, CandidateQuery, CandidateRow, LogEntry, LogRow
from memq.types import (
    FeedbackRecord,
    HistoryEvent,
    HistoryOp,
    Link,
    LoggedRetrieval,
    MemoryRecord,
    PoolEntry,
    Provenance,
    Scope,
    ShownEntry,
    StoreStats,
    Utility,
    utcnow,
)

# filter field -> column of the ``records`` table (aliased ``r`` in every query)
FILTER_COLUMNS = {
    "kind": "r.kind",
    "user": "r.user_id",
    "agent": "r.agent_id",
    "session": "r.session_id",
    "source": "r.source",
    "valid_from": "r.valid_from",
    "valid_to": "r.valid_to",
    "recorded_at": "r.recorded_at",
    "metadata": "r.metadata",
    "payload": "r.payload",
}

RECORD_COLUMNS = (
    "id, version, tenant, user_id, agent_id, session_id, kind, text, payload, metadata, source, "
    "source_message_ids, parent_ids, valid_from, valid_to, recorded_at, expired_at, deleted, embedding_model"
)
# the columns of each table that the decoders below read, in their order ("window" is quoted: a
# keyword in PostgreSQL)
UTILITY_COLUMNS = "id, q, n_shown, n_used, reward_sum, last_feedback_at, stats"
# the utility columns on alias ``u``: what a whole-record read selects after the record's own columns
UTILITY_SELECT = ", ".join("u." + c.strip() for c in UTILITY_COLUMNS.split(","))
_UTILITY_WIDTH = UTILITY_COLUMNS.count(",") + 1
EVENT_COLUMNS = "record_id, op, version, at, actor, reason"
# what the feedback transaction reads of a logged search (no pool, no features) ...
RETRIEVAL_HEAD = "id, tenant, query, policy, policy_version, k, shown, created_at, feedback, learner"
_HEAD_LEN = RETRIEVAL_HEAD.count(",") + 1  # where the head ends in a RETRIEVAL_COLUMNS row
# ... and the whole logged search: the head, then the rest
RETRIEVAL_COLUMNS = (
    f"{RETRIEVAL_HEAD}, query_vector, embedding_model, pool, pool_scores, "
    '"window", feature_set, features, shadow'
)
# what learning reads (memq.store.base.LogRow)
LOG_ROW_COLUMNS = (
    'id, learner, policy, k, "window", features, feature_set, shown, feedback, query_vector, shadow'
)
_FEEDBACK = [c.strip() for c in LOG_ROW_COLUMNS.split(",")].index("feedback")  # its position there


def visibility(
    query: CandidateQuery, dialect: Dialect, time_param: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause (on alias ``r``) selecting the record versions a query may see."""
    ph = _placeholder(dialect)
    parts, params = _scope_clause(query, ph)
    if query.as_of is None:
        parts.append("r.expired_at IS NULL")
    else:
        parts.append(f"r.recorded_at <= {ph} AND (r.expired_at IS NULL OR r.expired_at > {ph})")
        params += [time_param(query.as_of), time_param(query.as_of)]
    if not query.include_invalidated:
        if query.valid_at is None:
            parts.append(f"(r.valid_to IS NULL OR r.valid_to > {ph})")
            params.append(time_param(utcnow()))
        else:
            parts.append(
                f"(r.valid_from IS NULL OR r.valid_from <= {ph}) AND (r.valid_to IS NULL OR r.valid_to > {ph})"
            )
            params += [time_param(query.valid_at), time_param(query.valid_at)]
    return _with_filter(query, dialect, time_param, parts, params)


def archived_clause(
    query: CandidateQuery, dialect: Dialect, time_param: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause (on alias ``r``) selecting the latest version of each archived record.

    A record is archived when its latest history event is ``archive`` (a user's soft delete is not).
    The scope (tenant, and user/agent/session when set) and the filter apply; ``as_of``/``valid_at``
    are ignored: the archive lists what is archived now.
    """
    parts, params = _scope_clause(query, _placeholder(dialect))
    parts.append("r.deleted = 1" if dialect == "sqlite" else "r.deleted")
    parts.append("r.version = (SELECT max(x.version) FROM records x WHERE x.id = r.id)")
    parts.append(
        "(SELECT e.op FROM events e WHERE e.tenant = r.tenant AND e.record_id = r.id "
        "ORDER BY e.seq DESC LIMIT 1) = 'archive'"
    )
    return _with_filter(query, dialect, time_param, parts, params)


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect == "sqlite" else "%s"


def _scope_clause(query: CandidateQuery, ph: str) -> tuple[list[str], list[Any]]:
    """The conditions (and parameters) of the query's scope: its tenant, and user/agent/session when set."""
    parts: list[str] = [f"r.tenant = {ph}"]
    params: list[Any] = [query.scope.tenant]
    for field, column in (("user", "r.user_id"), ("agent", "r.agent_id"), ("session", "r.session_id")):
        value = getattr(query.scope, field)
        if value is not None:
            parts.append(f"{column} = {ph}")
            params.append(value)
    return parts, params


def _with_filter(
    query: CandidateQuery,
    dialect: Dialect,
    time_param: Callable[[datetime], Any],
    parts: list[str],
    params: list[Any],
) -> tuple[str, list[Any]]:
    """``parts`` and the query's filter (if any), joined by AND, with their parameters."""
    if query.filter is not None:
        sql, fparams = compile_filter(query.filter, SqlTarget(dialect, FILTER_COLUMNS, time_param))
        parts.append(sql)
        params += fparams
    return " AND ".join(parts), params


_STOPWORDS = frozenset(
    "a an and are as at be been but by did do does for from had has have he her his how i if in into is it its "
    "me my of on or our she so than that the their them then there these they this to was we were what when "
    "where which who whom why will with you your".split()
)


def dedupe(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates with each id once (its first, best, occurrence kept)."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        if c.id not in seen:
            seen.add(c.id)
            out.append(c)
    return out


def query_terms(text: str, limit: int = 32) -> list[str]:
    """Lower-cased word tokens of a query for lexical search, stopwords dropped, order kept, deduped."""
    import re

    tokens = list(dict.fromkeys(re.findall(r"\w+", text.lower())))
    terms = [t for t in tokens if t not in _STOPWORDS] or tokens  # a query of stopwords only keeps them
    return terms[:limit]


# -- rows to memq types -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowDecoder:
    """How a backend's driver returns what memq wrote: ``time`` turns a stored time (or None) into an
    aware UTC datetime, ``json`` a stored JSON document into its value (PostgreSQL's driver parses
    json/jsonb itself), ``vector`` a stored embedding into its floats. Float32 arrays memq writes as
    bytes (query vectors, features) are little-endian on both backends."""

    time: Callable[[Any], datetime | None]
    json: Callable[[Any], Any]
    vector: Callable[[Any], list[float]]


def _floats(data: Any) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype="<f4")


def record_of(
    r: Sequence[Any], decode: RowDecoder, links: list[Link], utility: Utility | None, with_embedding: bool
) -> MemoryRecord:
    """A MemoryRecord from a row of ``RECORD_COLUMNS`` (then the embedding, with ``with_embedding``)."""
    return MemoryRecord.model_construct(
        id=r[0],
        version=r[1],
        scope=Scope(tenant=r[2], user=r[3], agent=r[4], session=r[5]),
        kind=r[6],
        text=r[7],
        payload=decode.json(r[8]),
        metadata=decode.json(r[9]),
        provenance=Provenance(
            source=r[10], source_message_ids=decode.json(r[11]), parent_ids=decode.json(r[12])
        ),
        links=links,
        valid_from=decode.time(r[13]),
        valid_to=decode.time(r[14]),
        recorded_at=decode.time(r[15]),
        expired_at=decode.time(r[16]),
        deleted=bool(r[17]),
        embedding_model=r[18],
        embedding=decode.vector(r[19]) if with_embedding and r[19] is not None else None,
        utility=utility or Utility(),
    )


def whole_records(
    rows: Sequence[Sequence[Any]],
    decode: RowDecoder,
    links_of: Callable[[Any], list[Link]],
    with_embedding: bool,
) -> list[MemoryRecord]:
    """MemoryRecords from rows of a whole-record read: the record's ``RECORD_COLUMNS`` (then its
    vector, with ``with_embedding``), its ``UTILITY_SELECT`` (NULLs without a utility row), then one
    column of links that ``links_of`` decodes (each backend aggregates them its own way)."""
    out = []
    for row in rows:
        width = len(row) - _UTILITY_WIDTH - 1
        util = row[width : width + _UTILITY_WIDTH]
        utility = None if util[0] is None else utility_of(util, decode)
        out.append(record_of(row[:width], decode, links_of(row[-1]), utility, with_embedding))
    return out


def utility_of(row: Sequence[Any], decode: RowDecoder) -> Utility:
    """A Utility from a ``UTILITY_COLUMNS`` row."""
    _, q, n_shown, n_used, reward_sum, last, stats = row
    return Utility(
        q=q,
        n_shown=n_shown,
        n_used=n_used,
        reward_sum=reward_sum,
        last_feedback_at=decode.time(last),
        stats=decode.json(stats),
    )


def candidate_row_of(row: Sequence[Any], decode: RowDecoder, links: Sequence[str]) -> CandidateRow:
    """A CandidateRow from ``id, kind, text, valid_from, recorded_at, q, n_shown, n_used, reward_sum,
    stats`` (the utility columns NULL without a utility row), then its link targets and raw metadata."""
    rid, kind, text, valid_from, recorded_at, q, shown, used, rsum, stats = row[:10]
    return CandidateRow(
        id=rid,
        kind=kind,
        text=text,
        links=tuple(links),
        valid_from=decode.time(valid_from),
        recorded_at=decode.time(recorded_at),  # type: ignore[arg-type]
        q=q,
        n_shown=shown or 0,
        n_used=used or 0,
        reward_sum=rsum or 0.0,
        stats=decode.json(stats) if stats else {},
        metadata=row[11],
    )


def event_of(
    row: Sequence[Any], decode: RowDecoder, version_record: MemoryRecord | None = None
) -> HistoryEvent:
    """A HistoryEvent from an ``EVENT_COLUMNS`` row, with the version it produced when given."""
    record_id, op, version, at, actor, reason = row
    return HistoryEvent(
        record_id=record_id,
        op=HistoryOp(op),
        version=version,
        at=decode.time(at),
        actor=actor,
        reason=reason,
        record=version_record,
    )


def learner_of(learner: str | None, policy: str) -> str | None:
    """The learner a logged search trained (a search logged before the column: its learner policy)."""
    from memq.learn import LEARNERS

    return learner if learner is not None else (policy if policy in LEARNERS else None)


def _head(row: Sequence[Any], decode: RowDecoder) -> dict[str, Any]:
    """The fields of a LoggedRetrieval in a ``RETRIEVAL_HEAD`` row."""
    rid, tenant, query, policy, version, k, shown, created, feedback, learner = row
    return {
        "id": rid,
        "tenant": tenant,
        "query": query,
        "policy": policy,
        "policy_version": version,
        "k": k,
        "shown": [ShownEntry.model_construct(**x) for x in decode.json(shown)],
        "created_at": decode.time(created),
        "feedback": None if feedback is None else FeedbackRecord.model_validate(decode.json(feedback)),
        "learner": learner_of(learner, policy),
    }


def logged_head(row: Sequence[Any], decode: RowDecoder) -> LoggedRetrieval:
    """A LoggedRetrieval from a ``RETRIEVAL_HEAD`` row: no pool, no window (what feedback reads)."""
    # every field given: model_construct fills a missing one from its default_factory after
    # inspecting the factory's signature, 10x the cost of the whole call (pydantic 2.14)
    return LoggedRetrieval.model_construct(
        **_head(row, decode),
        query_vector=None,
        embedding_model=None,
        pool=[],
        window=[],
        feature_set=None,
        features=None,
        shadow=None,
    )


def shown_document(entry: LogEntry) -> list[dict[str, Any]]:
    """The ``shown`` column of a logged search: each hit's id, rank, score and propensity."""
    return [
        {"id": h.record.id, "rank": h.rank, "score": h.score, "propensity": h.propensity}
        | ({"explored": True} if h.explored else {})
        for h in entry.retrieval.hits
    ]


def pool_json(ids: Sequence[str]) -> str:
    """The ``pool`` column of a logged search: each candidate's id, the JSON the erasure query
    searches. ``json.dumps([{"id": i} for i in ids])``, byte for byte, at a third of the cost (a search
    logs about a hundred): the ids are encoded as one list, then each element is wrapped. Safe because an
    encoded string escapes every quote inside it, so ``", "`` occurs only between elements."""
    if not ids:
        return "[]"
    return '[{"id": "' + json.dumps(list(ids))[2:-2].replace('", "', '"}, {"id": "') + '"}]'


def pool_scores_blob(entry: LogEntry) -> bytes | None:
    """The ``pool_scores`` column: the pool's scores, float32 little-endian (formatting a hundred
    floats as JSON text cost more than the rest of the log line)."""
    if entry.pool_scores is None or not entry.pool:
        return None
    return np.ascontiguousarray(entry.pool_scores, dtype="<f4").tobytes()


def pool_entries(ids: Sequence[dict[str, Any]], scores: Any) -> list[PoolEntry]:
    """The pool of a logged search from its two columns (an older line kept its scores in the JSON)."""
    if scores is None:
        return [PoolEntry.model_construct(**p) for p in ids]
    values = _floats(scores).reshape(len(ids), len(POOL_SCORES)).tolist()
    return [
        PoolEntry.model_construct(
            id=p["id"], **{name: (None if v != v else v) for name, v in zip(POOL_SCORES, row, strict=True)}
        )
        for p, row in zip(ids, values, strict=True)
    ]


def logged(row: Sequence[Any], decode: RowDecoder) -> LoggedRetrieval:
    """A LoggedRetrieval from a ``RETRIEVAL_COLUMNS`` row."""
    qvec, model, pool, pool_scores, window, feature_set, feats, shadow = row[_HEAD_LEN:]
    window_ids = list(decode.json(window)) if window else []
    features = None
    if feats is not None and window_ids:
        features = _floats(feats).reshape(len(window_ids), -1).tolist()
    return LoggedRetrieval.model_construct(
        **_head(row[:_HEAD_LEN], decode),
        query_vector=None if qvec is None else _floats(qvec).tolist(),
        embedding_model=model,
        pool=pool_entries(decode.json(pool), pool_scores),
        window=window_ids,
        feature_set=feature_set,
        features=features,
        shadow=None if shadow is None else list(decode.json(shadow)),
    )


def log_row(row: Sequence[Any], decode: RowDecoder) -> LogRow:
    """A ``LOG_ROW_COLUMNS`` row as the LogRow learning reads."""
    rid, learner, policy, k, window, feats, feature_set, shown, feedback, qvec, shadow = row
    ids = tuple(decode.json(window)) if window else ()
    fb = decode.json(feedback)
    return LogRow(
        id=rid,
        learner=learner_of(learner, policy),
        k=k,
        window=ids,
        features=None if feats is None or not ids else _floats(feats).reshape(len(ids), -1),
        feature_set=feature_set,
        shown=tuple(
            (x["id"], float(x.get("propensity", 1.0)), bool(x.get("explored", False)))
            for x in decode.json(shown)
        ),
        credits=fb.get("credits") or {},
        reward=float(fb["reward"]),
        query_vector=None if qvec is None else _floats(qvec),
        shadow=None if shadow is None else tuple(decode.json(shadow)),
    )


class TrainingRows:
    """Decoded training rows kept between fits, for the latest few tenants.

    A learner refits every ``fit_every`` feedbacks on the newest logged searches with feedback, mostly
    the same rows as last time; decoding them was most of a fit's read. A store reads ``(id,
    feedback)`` of the rows first (:meth:`missing`), then the whole row only of those it does not
    hold with that same feedback — the only column of a logged search that changes — and
    :meth:`complete` decodes them. At most ``rows`` rows a tenant are kept (a replay reading a whole
    log keeps nothing)."""

    def __init__(self, tenants: int = 8, rows: int = 5_000) -> None:
        self.tenants, self.rows = tenants, rows
        self._kept: OrderedDict[str, dict[str, tuple[Any, LogRow]]] = OrderedDict()
        self._lock = threading.Lock()

    def missing(
        self, tenant: str, heads: Sequence[Sequence[Any]]
    ) -> tuple[dict[str, tuple[Any, LogRow]], list[str]]:
        """The kept rows still current for ``heads`` (``(id, feedback)``, newest first), and the ids to read."""
        with self._lock:
            known = self._kept.pop(tenant, {})
        fresh = {rid: known[rid] for rid, feedback in heads if rid in known and known[rid][0] == feedback}
        return fresh, [rid for rid, _ in heads if rid not in fresh]

    def complete(
        self,
        tenant: str,
        heads: Sequence[Sequence[Any]],
        fresh: dict[str, tuple[Any, LogRow]],
        read: Sequence[Sequence[Any]],
        decode: RowDecoder,
    ) -> list[LogRow]:
        """The LogRows of ``heads``, oldest first: ``fresh`` plus the ``read`` rows (``LOG_ROW_COLUMNS``)
        decoded; a row pruned between the two reads is left out."""
        for row in read:
            fresh[row[0]] = (row[_FEEDBACK], log_row(row, decode))
        if len(fresh) <= self.rows:
            with self._lock:
                self._kept[tenant] = fresh
                while len(self._kept) > self.tenants:
                    self._kept.popitem(last=False)
        return [fresh[rid][1] for rid, _ in reversed(heads) if rid in fresh]


def store_stats(
    backend: str,
    location: str,
    counts: Sequence[int | None],
    space: tuple[str, int] | None,
    size: int,
    kinds: dict[str, int],
) -> StoreStats:
    """``Records.stats`` from (versions, distinct ids, deleted, invalidated, tenants) counts (SQL's
    ``sum`` of no rows is NULL: 0), the embedding space, the bytes stored and the current kinds."""
    versions, records, deleted, invalidated, tenants = counts
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
        bytes=size,
        kinds=kinds,
    )


def no_retrieval(tenant: str, retrieval_id: str) -> NotFoundError:
    return NotFoundError(
        f"no retrieval {retrieval_id} in tenant {tenant!r} (unknown, or pruned from the log)"
    )


# -- memq types to rows -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowEncoder:
    """How a backend's driver takes what memq writes: ``time`` a datetime (or None), ``document`` a
    record's payload or metadata, ``ids`` a list of ids, ``vector`` an embedding (or None)."""

    time: Callable[[datetime | None], Any]
    document: Callable[[Any], Any]
    ids: Callable[[list[str]], Any]
    vector: Callable[[Any], Any]


def record_values(r: MemoryRecord, encode: RowEncoder) -> tuple[Any, ...]:
    """The values of ``RECORD_COLUMNS`` (in the backend's column names), then the embedding, of one
    record version."""
    return (
        r.id,
        r.version,
        r.scope.tenant,
        r.scope.user,
        r.scope.agent,
        r.scope.session,
        r.kind,
        r.text,
        encode.document(r.payload),
        encode.document(r.metadata),
        r.provenance.source,
        encode.ids(r.provenance.source_message_ids),
        encode.ids(r.provenance.parent_ids),
        encode.time(r.valid_from),
        encode.time(r.valid_to),
        encode.time(r.recorded_at),
        encode.time(r.expired_at),
        r.deleted,
        r.embedding_model,
        encode.vector(r.embedding),
    )
