"""The blocking PostgreSQL store: a psycopg connection pool running the shared operations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from memq.store.base import (
    Candidate,
    CandidateQuery,
    FeedbackPlan,
    PlanFn,
    StoredLearnerState,
    VersionChange,
    WriteBatch,
)
from memq.store.postgres import schema, sql
from memq.store.postgres.steps import (
    READ_SNAPSHOT,
    RETRYABLE,
    SESSION_SETUP,
    WRITE_ATTEMPTS,
    Op,
    backoff,
    complete,
    drive,
    mask_dsn,
    translate,
)
from memq.types import (
    HistoryEvent,
    HistoryOp,
    LoggedRetrieval,
    MemoryRecord,
    Page,
    PoolEntry,
    Retrieval,
    StoreStats,
    Utility,
)

T = TypeVar("T")


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Per pooled connection: the pgvector adapters (exact float32 in and out) and UTC session time."""
    register_vector(conn)
    conn.execute(SESSION_SETUP)


class PostgresStore:
    """memq's store on PostgreSQL + pgvector (see :class:`memq.store.base.Store` for the contract).

    ``dsn`` is a libpq URL or key=value string. The pool holds ``min_size`` to ``max_size``
    connections, each in autocommit mode with explicit transactions, so a connection is never
    left idle inside a transaction. ``dim``, when given, is the embedding dimension this
    deployment uses: opening refuses a store of another dimension, and an empty store gets its
    typed vector column and HNSW index at once rather than on the first insert.

    Every write is one transaction (a deadlock victim is retried whole); reads see one snapshot.
    """

    backend = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, dim: int | None = None) -> None:
        self.location = mask_dsn(dsn)
        self._closed = False
        # migrate on a plain connection first: the pool's configure step needs the vector type
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(SESSION_SETUP)
                with conn.transaction(), conn.cursor() as cur:
                    complete(cur, schema.migrate(dim))
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            kwargs={"autocommit": True},
            configure=_configure,
            check=ConnectionPool.check_connection,
            open=False,
            name=f"memq {self.location}",
        )
        try:
            self._pool.open(wait=True)
        except psycopg.Error as exc:
            self._pool.close()
            raise translate(exc, self.location) from exc

    # -- plumbing ------------------------------------------------------------------------------------
    def _write(self, make: Callable[[], Op[T]], retry: Callable[[], bool] | None = None) -> T:
        """Run a fresh operation from ``make`` in one READ COMMITTED transaction; retry deadlocks.

        ``retry``, when given, is asked before each retry: False gives up (with the store error).
        """
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    return complete(cur, make())
            except RETRYABLE as exc:
                if attempt + 1 == WRITE_ATTEMPTS or (retry is not None and not retry()):
                    raise translate(exc, self.location) from exc
                time.sleep(backoff(attempt))
            except psycopg.Error as exc:
                raise translate(exc, self.location) from exc
        raise AssertionError("unreachable")

    def _read(self, op: Op[T]) -> T:
        """Run an operation in one read-only snapshot."""
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(READ_SNAPSHOT)
                return complete(cur, op)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- embedding space -------------------------------------------------------------------------------
    def embedding_space(self) -> tuple[str, int] | None:
        return self._read(sql.embedding_space())

    def set_embedding_space(self, model_id: str, dim: int) -> None:
        self._write(lambda: sql.set_embedding_space(model_id, dim))

    # -- writes ----------------------------------------------------------------------------------------
    def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        self._write(lambda: sql.insert(records, op, actor, reason))

    def write_version(self, change: VersionChange) -> MemoryRecord:
        return self._write(lambda: sql.write_version(change))

    def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """The whole batch in one READ COMMITTED transaction (a deadlock victim is retried whole)."""
        if batch.empty:
            return []
        return self._write(lambda: sql.apply_writes(batch))

    def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        self._write(lambda: sql.delete(tenant, record_id, actor, reason))

    def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        return self._write(lambda: sql.archive(tenant, record_ids, reason, actor))

    def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        return self._write(lambda: sql.restore(tenant, record_id, actor, reason))

    def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        return self._write(lambda: sql.purge(tenant, record_ids))

    def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None:
        self._write(lambda: sql.log_retrieval(retrieval, pool, query_vector, embedding_model))

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        return self._write(lambda: sql.prune_retrievals(before, tenant))

    def apply_feedback(
        self,
        tenant: str,
        retrieval_id: str,
        plan: PlanFn,
        *,
        learner: str | None = None,
        known_stamp: datetime | None = None,
    ) -> FeedbackPlan:
        """One transaction: lock the retrieval and its shown records' utility, call ``plan``, write.

        A deadlock before ``plan`` ran is retried as any write; after it ran it is not (the plan may
        have updated a learner in memory, and running it twice would teach it the reward twice).
        """
        planned = False

        def once(
            logged: LoggedRetrieval, current: dict[str, Utility], stored: StoredLearnerState | None
        ) -> FeedbackPlan:
            nonlocal planned
            planned = True
            return plan(logged, current, stored)

        return self._write(
            lambda: sql.apply_feedback(tenant, retrieval_id, once, learner, known_stamp),
            retry=lambda: not planned,
        )

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """One transaction: create missing utility rows, lock them in id order, add the deltas."""
        self._write(lambda: sql.add_stats(tenant, deltas))

    def save_learner_state(self, tenant: str, name: str, state: dict[str, Any]) -> datetime:
        return self._write(lambda: sql.save_learner_state(tenant, name, state))

    # -- reads -----------------------------------------------------------------------------------------
    def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> list[MemoryRecord]:
        return self._read(sql.get(tenant, ids, include_deleted, with_embedding))

    def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return self._read(sql.list_page(query, cursor, limit))

    def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return self._read(sql.list_archived(query, cursor, limit))

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        return self._read(sql.visible(query, ids, with_embedding))

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        return self._read(sql.get_retrieval(tenant, retrieval_id))

    def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]:
        return self._read(sql.list_retrievals(tenant, since, limit, with_feedback))

    def learner_state(self, tenant: str, name: str) -> dict[str, Any] | None:
        return self._read(sql.learner_state(tenant, name))

    def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict[str, Any], datetime] | None:
        return self._read(sql.learner_state_stamped(tenant, name))

    def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        return self._read(sql.history(tenant, record_id))

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        return self._read(sql.dense_candidates(query, vector, n))

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        return self._read(sql.lexical_candidates(query, text, n))

    def stats(self, tenant: str | None = None) -> StoreStats:
        return self._read(sql.stats(tenant, self.backend, self.location))

    def verify_index(self) -> bool:
        """True when the vector column is typed for the recorded space and its HNSW index is valid."""
        return self._read(schema.index_ok())

    # -- export / import / re-embed ----------------------------------------------------------------------
    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        """Stream every version, then every event, from one snapshot.

        The snapshot's connection stays checked out of the pool until the iteration ends (or the
        iterator is closed), so a consumer calling the store meanwhile needs ``max_size`` >= 2.
        """
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                cur.execute(READ_SNAPSHOT)
                for items in drive(cur, sql.export_rows(tenant)):
                    yield from items
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        return self._write(lambda: sql.import_rows(rows))

    def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions with a key above ``after``, in key order."""
        return self._read(sql.embeddable(after, limit))

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        self._write(lambda: sql.replace_embeddings(model_id, dim, rows, first, last))
