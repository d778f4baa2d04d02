"""The SQLite store's retrieval log and the feedback transaction."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from functools import partial

import numpy as np

from memq.store import sqlcommon
from memq.store.base import FeedbackPlan, LogEntry, LogRow, PlanFn
from memq.store.sqlcommon import (
    LOG_ROW_COLUMNS,
    RETRIEVAL_COLUMNS,
    RETRIEVAL_HEAD,
    UTILITY_COLUMNS,
    no_retrieval,
    pool_json,
    pool_scores_blob,
    shown_document,
)
from memq.store.sqlite.base import DECODE, SQLiteBase, chunks, marks, to_us, utility_of, write_utilities
from memq.store.sqlite.records import add_stats_tx
from memq.types import LoggedRetrieval, Utility

logged = partial(sqlcommon.logged, decode=DECODE)
head = partial(sqlcommon.logged_head, decode=DECODE)


class SQLiteLog(SQLiteBase):
    """The retrieval log (:class:`memq.store.contract.RetrievalLog`)."""

    def log_retrieval(self, entry: LogEntry) -> None:
        r = entry.retrieval
        qvec = None if entry.query_vector is None else np.asarray(entry.query_vector, np.float32).tobytes()
        feats = None if entry.features is None else np.ascontiguousarray(entry.features, np.float32).tobytes()
        row = (
            r.id,
            r.scope.tenant,
            r.query,
            r.policy,
            r.policy_version,
            r.k,
            json.dumps(shown_document(entry)),
            pool_json(entry.pool),
            pool_scores_blob(entry),
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
                "INSERT INTO retrievals (id, tenant, query, policy, policy_version, k, shown, pool, pool_scores, "
                "query_vector, embedding_model, created_at, learner, window, feature_set, features, shadow) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                row,
            )
        )

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        rows = self._read(
            f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE tenant = ? AND id = ?", (tenant, retrieval_id)
        )
        if not rows:
            raise no_retrieval(tenant, retrieval_id)
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
            f"SELECT {RETRIEVAL_COLUMNS} FROM retrievals WHERE tenant = ? AND created_at >= ?{cond} "
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
                f"SELECT {RETRIEVAL_HEAD} FROM retrievals WHERE tenant = ? AND id = ?", (tenant, retrieval_id)
            ).fetchone()
            if row is None:
                raise no_retrieval(tenant, retrieval_id)
            entry = head(row)
            learner = entry.learner
            ids = [s.id for s in entry.shown]
            current = {rid: Utility() for rid in ids}
            present: set[str] = set()
            if ids:
                for urow in conn.execute(
                    f"SELECT {UTILITY_COLUMNS} FROM utility WHERE tenant = ? AND id IN ({marks(len(ids))})",
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
            # a record purged since the search gets no utility row back
            write_utilities(conn, tenant, ((rid, u) for rid, u in result.utilities.items() if rid in present))
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
        """The newest logged searches with feedback, oldest first (decoded rows kept between fits:
        :class:`memq.store.sqlcommon.TrainingRows`)."""
        heads = self._read(
            "SELECT id, feedback FROM retrievals WHERE tenant = ? AND feedback IS NOT NULL AND created_at >= ? "
            "ORDER BY created_at DESC, id DESC LIMIT ?",
            (tenant, to_us(since) if since else 0, limit),
        )
        fresh, missing = self._training_rows.missing(tenant, heads)
        read = [
            row
            for chunk in chunks(missing, 500)
            for row in self._read(
                f"SELECT {LOG_ROW_COLUMNS} FROM retrievals WHERE tenant = ? AND id IN ({marks(len(chunk))})",
                (tenant, *chunk),
            )
        ]
        return self._training_rows.complete(tenant, heads, fresh, read, DECODE)

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        if deltas:
            self._write(lambda conn: add_stats_tx(conn, tenant, deltas))
