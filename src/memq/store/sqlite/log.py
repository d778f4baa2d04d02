"""The SQLite store's retrieval log and the feedback transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from memq.errors import NotFoundError
from memq.learn import LEARNERS
from memq.store.base import FeedbackPlan, LogEntry, LogRow, PlanFn
from memq.store.sqlite.base import UTILITY_COLS, SQLiteBase, from_us, marks, to_us, utility_of, write_utility
from memq.store.sqlite.records import add_stats_tx
from memq.types import FeedbackRecord, LoggedRetrieval, PoolEntry, ShownEntry, Utility

_COLS = (
    "id, tenant, query, query_vector, embedding_model, policy, policy_version, k, pool, shown, created_at, "
    "feedback, learner, window, feature_set, features, shadow"
)


class SQLiteLog(SQLiteBase):
    """The retrieval log (:class:`memq.store.contract.RetrievalLog`)."""

    def log_retrieval(self, entry: LogEntry) -> None:
        r = entry.retrieval
        shown = [
            {"id": h.record.id, "rank": h.rank, "score": h.score, "propensity": h.propensity}
            | ({"explored": True} if h.explored else {})
            for h in r.hits
        ]
        qvec = None if entry.query_vector is None else np.asarray(entry.query_vector, np.float32).tobytes()
        feats = None if entry.features is None else np.ascontiguousarray(entry.features, np.float32).tobytes()
        row = (
            r.id,
            r.scope.tenant,
            r.query,
            r.policy,
            r.policy_version,
            r.k,
            json.dumps(shown),
            json.dumps([p.model_dump(exclude_none=True) for p in entry.pool]),
            qvec,
            entry.embedding_model,
            to_us(r.created_at),
            r.learner,
            json.dumps(list(entry.window)),
            entry.feature_set,
            feats,
            None if entry.shadow is None else json.dumps(list(entry.shadow)),
        )
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO retrievals (id, tenant, query, policy, policy_version, k, shown, pool, query_vector, "
                "embedding_model, created_at, learner, window, feature_set, features, shadow) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
        )

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        rows = self._read(
            f"SELECT {_COLS} FROM retrievals WHERE tenant = ? AND id = ?", (tenant, retrieval_id)
        )
        if not rows:
            raise _missing(tenant, retrieval_id)
        return logged(rows[0])

    def list_retrievals(
        self,
        tenant: str,
        *,
        since: datetime | None = None,
        limit: int = 1000,
        with_feedback: bool = False,
        latest: bool = False,
    ) -> list[LoggedRetrieval]:
        cond = " AND feedback IS NOT NULL" if with_feedback else ""
        order = "DESC" if latest else ""
        rows = self._read(
            f"SELECT {_COLS} FROM retrievals WHERE tenant = ? AND created_at >= ?{cond} "
            f"ORDER BY created_at {order}, id {order} LIMIT ?",
            (tenant, to_us(since) if since else 0, limit),
        )
        out = [logged(r) for r in rows]
        return out[::-1] if latest else out

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        def tx(conn: sqlite3.Connection) -> int:
            if tenant is None:
                return conn.execute("DELETE FROM retrievals WHERE created_at < ?", (to_us(before),)).rowcount
            return conn.execute(
                "DELETE FROM retrievals WHERE tenant = ? AND created_at < ?", (tenant, to_us(before))
            ).rowcount

        return self._write(tx)

    def apply_feedback(self, tenant: str, retrieval_id: str, plan: PlanFn) -> FeedbackPlan:
        def tx(conn: sqlite3.Connection) -> FeedbackPlan:
            row = conn.execute(
                f"SELECT {_HEAD} FROM retrievals WHERE tenant = ? AND id = ?", (tenant, retrieval_id)
            ).fetchone()
            if row is None:
                raise _missing(tenant, retrieval_id)
            entry = head(row)
            learner = entry.learner
            ids = [s.id for s in entry.shown]
            current = {rid: Utility() for rid in ids}
            present: set[str] = set()
            if ids:
                for urow in conn.execute(
                    f"SELECT {UTILITY_COLS} FROM utility WHERE tenant = ? AND id IN ({marks(len(ids))})",
                    (tenant, *ids),
                ):
                    current[urow[0]] = utility_of(urow)
                present = {
                    r[0]
                    for r in conn.execute(
                        f"SELECT DISTINCT id FROM records WHERE tenant = ? AND id IN ({marks(len(ids))})",
                        (tenant, *ids),
                    )
                }
            result = plan(entry, current)
            for rid, u in result.utilities.items():
                if rid in present:  # a record purged since the search gets no utility row back
                    write_utility(conn, tenant, rid, u)
            conn.execute(
                "UPDATE retrievals SET feedback = ? WHERE id = ?",
                (result.feedback.model_dump_json(), retrieval_id),
            )
            result.learner = learner
            if learner is not None:
                conn.execute(
                    "INSERT INTO learner_state (tenant, name, state, updated_at, version, feedbacks) "
                    "VALUES (?, ?, '{}', ?, 0, 1) ON CONFLICT (tenant, name) DO UPDATE SET feedbacks = feedbacks + 1",
                    (tenant, learner, to_us(result.feedback.at)),
                )
                (result.learner_feedbacks,) = conn.execute(
                    "SELECT feedbacks FROM learner_state WHERE tenant = ? AND name = ?", (tenant, learner)
                ).fetchone()
            return result

        return self._write(tx)

    def training_log(self, tenant: str, *, limit: int, since: datetime | None = None) -> list[LogRow]:
        rows = self._read(
            "SELECT id, learner, policy, k, window, features, feature_set, shown, feedback, query_vector, shadow "
            "FROM retrievals WHERE tenant = ? AND feedback IS NOT NULL AND created_at >= ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (tenant, to_us(since) if since else 0, limit),
        )
        return [log_row(r) for r in reversed(rows)]

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        if deltas:
            self._write(lambda conn: add_stats_tx(conn, tenant, deltas))


def _missing(tenant: str, retrieval_id: str) -> NotFoundError:
    return NotFoundError(
        f"no retrieval {retrieval_id} in tenant {tenant!r} (unknown, or pruned from the log)"
    )


_HEAD = "id, tenant, query, policy, policy_version, k, shown, created_at, feedback, learner"


def head(row: Sequence[Any]) -> LoggedRetrieval:
    """A row of ``_HEAD`` as a LoggedRetrieval without its pool and window (what feedback reads)."""
    rid, tenant, query, policy, version, k, shown, created, feedback, learner = row
    return LoggedRetrieval.model_construct(
        id=rid,
        tenant=tenant,
        query=query,
        query_vector=None,
        embedding_model=None,
        policy=policy,
        policy_version=version,
        k=k,
        pool=[],
        shown=[ShownEntry.model_construct(**x) for x in json.loads(shown)],
        created_at=from_us(created),
        feedback=None if feedback is None else FeedbackRecord.model_validate_json(feedback),
        learner=learner if learner is not None else (policy if policy in LEARNERS else None),
    )


def log_row(row: Sequence[Any]) -> LogRow:
    """A row of :meth:`SQLiteLog.training_log`'s columns as a LogRow."""
    rid, learner, policy, k, window, feats, feature_set, shown, feedback, qvec, shadow = row
    ids = tuple(json.loads(window)) if window else ()
    fb = json.loads(feedback)
    return LogRow(
        id=rid,
        learner=learner if learner is not None else (policy if policy in LEARNERS else None),
        k=k,
        window=ids,
        features=None
        if feats is None or not ids
        else np.frombuffer(feats, dtype=np.float32).reshape(len(ids), -1),
        feature_set=feature_set,
        shown=tuple(
            (x["id"], float(x.get("propensity", 1.0)), bool(x.get("explored", False)))
            for x in json.loads(shown)
        ),
        credits=fb.get("credits") or {},
        reward=float(fb["reward"]),
        query_vector=None if qvec is None else np.frombuffer(qvec, dtype=np.float32),
        shadow=None if shadow is None else tuple(json.loads(shadow)),
    )


def logged(row: Sequence[Any]) -> LoggedRetrieval:
    """A row of ``_COLS`` as a LoggedRetrieval."""
    (rid, tenant, query, qvec, model, policy, version, k, pool, shown, created, feedback, learner, window,
     feature_set, feats, shadow) = row  # fmt: skip
    window_ids = json.loads(window) if window else []
    features = None
    if feats is not None and window_ids:
        features = np.frombuffer(feats, dtype=np.float32).reshape(len(window_ids), -1).tolist()
    return LoggedRetrieval.model_construct(
        id=rid,
        tenant=tenant,
        query=query,
        query_vector=None if qvec is None else np.frombuffer(qvec, dtype=np.float32).tolist(),
        embedding_model=model,
        policy=policy,
        policy_version=version,
        k=k,
        pool=[PoolEntry.model_construct(**p) for p in json.loads(pool)],
        shown=[ShownEntry.model_construct(**x) for x in json.loads(shown)],
        created_at=from_us(created),
        feedback=None if feedback is None else FeedbackRecord.model_validate_json(feedback),
        learner=learner if learner is not None else (policy if policy in LEARNERS else None),
        window=window_ids,
        feature_set=feature_set,
        features=features,
        shadow=None if shadow is None else json.loads(shadow),
    )
