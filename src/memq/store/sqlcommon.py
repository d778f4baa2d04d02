"""SQL shared by the SQLite and PostgreSQL stores: the visibility clause and row columns."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from memq.retrieve.filters import Dialect, SqlTarget, compile_filter
from memq.store.base import CandidateQuery
from memq.types import utcnow

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


def visibility(
    query: CandidateQuery, dialect: Dialect, time_param: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause (on alias ``r``) selecting the record versions a query may see."""
    ph = "?" if dialect == "sqlite" else "%s"
    parts: list[str] = [f"r.tenant = {ph}"]
    params: list[Any] = [query.scope.tenant]
    for field, column in (("user", "r.user_id"), ("agent", "r.agent_id"), ("session", "r.session_id")):
        value = getattr(query.scope, field)
        if value is not None:
            parts.append(f"{column} = {ph}")
            params.append(value)
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
    if query.filter is not None:
        sql, fparams = compile_filter(query.filter, SqlTarget(dialect, FILTER_COLUMNS, time_param))
        parts.append(sql)
        params += fparams
    return " AND ".join(parts), params


def archived_clause(
    query: CandidateQuery, dialect: Dialect, time_param: Callable[[datetime], Any]
) -> tuple[str, list[Any]]:
    """The WHERE clause (on alias ``r``) selecting the latest version of each archived record.

    A record is archived when its latest history event is ``archive`` (a user's soft delete is not).
    The scope (tenant, and user/agent/session when set) and the filter apply; ``as_of``/``valid_at``
    are ignored: the archive lists what is archived now.
    """
    ph = "?" if dialect == "sqlite" else "%s"
    parts: list[str] = [f"r.tenant = {ph}"]
    params: list[Any] = [query.scope.tenant]
    for field, column in (("user", "r.user_id"), ("agent", "r.agent_id"), ("session", "r.session_id")):
        value = getattr(query.scope, field)
        if value is not None:
            parts.append(f"{column} = {ph}")
            params.append(value)
    deleted = "r.deleted = 1" if dialect == "sqlite" else "r.deleted"
    parts.append(deleted)
    parts.append("r.version = (SELECT max(x.version) FROM records x WHERE x.id = r.id)")
    parts.append(
        "(SELECT e.op FROM events e WHERE e.tenant = r.tenant AND e.record_id = r.id "
        "ORDER BY e.seq DESC LIMIT 1) = 'archive'"
    )
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


def query_terms(text: str, limit: int = 32) -> list[str]:
    """Lower-cased word tokens of a query for lexical search, stopwords dropped, order kept, deduped."""
    import re

    tokens = list(dict.fromkeys(re.findall(r"\w+", text.lower())))
    terms = [t for t in tokens if t not in _STOPWORDS] or tokens  # a query of stopwords only keeps them
    return terms[:limit]
