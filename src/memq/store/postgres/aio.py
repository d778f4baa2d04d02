"""The natively async PostgreSQL store: psycopg's async pool running the shared operations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool

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
    complete_async,
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


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per pooled connection: the pgvector adapters (exact float32 in and out) and UTC session time."""
    await register_vector_async(conn)
    await conn.execute(SESSION_SETUP)


class AsyncPostgresStore:
    """The :class:`memq.store.base.AsyncStore` on PostgreSQL + pgvector, with no threads involved.

    Create it with ``await AsyncPostgresStore.connect(dsn)``, which migrates the schema and opens
    the pool; the arguments are those of :class:`memq.store.postgres.PostgresStore`. It runs the
    same operations as the sync store, so the two behave identically.
    """

    backend = "postgres"
    is_async = True  # its methods are coroutines (memq.ops.runner awaits them)

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, dim: int | None = None) -> None:
        """Prepare a store without connecting; :meth:`connect` is the usual way to get an open one."""
        self.location = mask_dsn(dsn)
        self._dsn = dsn
        self._min_size = min_size
        self._max_size = max_size
        self._dim = dim
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] | None = None

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 4, dim: int | None = None
    ) -> AsyncPostgresStore:
        """An open store: the schema migrated (safely alongside other processes) and the pool ready."""
        store = cls(dsn, min_size=min_size, max_size=max_size, dim=dim)
        await store.open()
        return store

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
            async with conn:
                await conn.execute(SESSION_SETUP)
                async with conn.transaction(), conn.cursor() as cur:
                    await complete_async(cur, schema.migrate(self._dim))
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = AsyncConnectionPool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            kwargs={"autocommit": True},
            configure=_configure,
            check=AsyncConnectionPool.check_connection,
            open=False,
            name=f"memq {self.location}",
        )
        try:
            await pool.open(wait=True)
        except psycopg.Error as exc:
            await pool.close()
            raise translate(exc, self.location) from exc
        self._pool = pool

    def _opened(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            from memq.errors import StoreError

            raise StoreError("the store is not open (or closed): use `await AsyncPostgresStore.connect(dsn)`")
        return self._pool

    async def _write(self, make: Callable[[], Op[T]], retry: Callable[[], bool] | None = None) -> T:
        """Run a fresh operation from ``make`` in one READ COMMITTED transaction; retry deadlocks.

        ``retry``, when given, is asked before each retry: False gives up (with the store error).
        """
        pool = self._opened()
        for attempt in range(WRITE_ATTEMPTS):
            try:
                async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                    return await complete_async(cur, make())
            except RETRYABLE as exc:
                if attempt + 1 == WRITE_ATTEMPTS or (retry is not None and not retry()):
                    raise translate(exc, self.location) from exc
                await asyncio.sleep(backoff(attempt))
            except psycopg.Error as exc:
                raise translate(exc, self.location) from exc
        raise AssertionError("unreachable")

    async def _read(self, op: Op[T], sink: list[Any] | None = None) -> T:
        """Run an operation in one read-only snapshot."""
        pool = self._opened()
        try:
            async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.execute(READ_SNAPSHOT)
                return await complete_async(cur, op, sink)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> AsyncPostgresStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- embedding space -------------------------------------------------------------------------------
    async def embedding_space(self) -> tuple[str, int] | None:
        return await self._read(sql.embedding_space())

    async def set_embedding_space(self, model_id: str, dim: int) -> None:
        await self._write(lambda: sql.set_embedding_space(model_id, dim))

    # -- writes ----------------------------------------------------------------------------------------
    async def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self._write(lambda: sql.insert(records, op, actor, reason))

    async def write_version(self, change: VersionChange) -> MemoryRecord:
        return await self._write(lambda: sql.write_version(change))

    async def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """The whole batch in one READ COMMITTED transaction (a deadlock victim is retried whole)."""
        if batch.empty:
            return []
        return await self._write(lambda: sql.apply_writes(batch))

    async def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        await self._write(lambda: sql.delete(tenant, record_id, actor, reason))

    async def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        return await self._write(lambda: sql.archive(tenant, record_ids, reason, actor))

    async def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        return await self._write(lambda: sql.restore(tenant, record_id, actor, reason))

    async def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        return await self._write(lambda: sql.purge(tenant, record_ids))

    async def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None:
        await self._write(lambda: sql.log_retrieval(retrieval, pool, query_vector, embedding_model))

    async def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        return await self._write(lambda: sql.prune_retrievals(before, tenant))

    async def apply_feedback(
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

        return await self._write(
            lambda: sql.apply_feedback(tenant, retrieval_id, once, learner, known_stamp),
            retry=lambda: not planned,
        )

    async def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """One transaction: create missing utility rows, lock them in id order, add the deltas."""
        await self._write(lambda: sql.add_stats(tenant, deltas))

    async def save_learner_state(self, tenant: str, name: str, state: dict[str, Any]) -> datetime:
        return await self._write(lambda: sql.save_learner_state(tenant, name, state))

    # -- reads -----------------------------------------------------------------------------------------
    async def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> list[MemoryRecord]:
        return await self._read(sql.get(tenant, ids, include_deleted, with_embedding))

    async def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return await self._read(sql.list_page(query, cursor, limit))

    async def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return await self._read(sql.list_archived(query, cursor, limit))

    async def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        return await self._read(sql.visible(query, ids, with_embedding))

    async def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        return await self._read(sql.get_retrieval(tenant, retrieval_id))

    async def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]:
        return await self._read(sql.list_retrievals(tenant, since, limit, with_feedback))

    async def learner_state(self, tenant: str, name: str) -> dict[str, Any] | None:
        return await self._read(sql.learner_state(tenant, name))

    async def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict[str, Any], datetime] | None:
        return await self._read(sql.learner_state_stamped(tenant, name))

    async def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        return await self._read(sql.history(tenant, record_id))

    async def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        return await self._read(sql.dense_candidates(query, vector, n))

    async def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        return await self._read(sql.lexical_candidates(query, text, n))

    async def stats(self, tenant: str | None = None) -> StoreStats:
        return await self._read(sql.stats(tenant, self.backend, self.location))

    async def verify_index(self) -> bool:
        """True when the vector column is typed for the recorded space and its HNSW index is valid."""
        return await self._read(schema.index_ok())

    # -- export / import / re-embed ----------------------------------------------------------------------
    async def export_rows(self, tenant: str | None) -> list[MemoryRecord | HistoryEvent]:
        """Every version, then every event, from one snapshot (a list, as AsyncStore specifies)."""
        rows: list[MemoryRecord | HistoryEvent] = []
        await self._read(sql.export_rows(tenant), rows)
        return rows

    async def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        return await self._write(lambda: sql.import_rows(rows))

    async def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions with a key above ``after``, in key order."""
        return await self._read(sql.embeddable(after, limit))

    async def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        await self._write(lambda: sql.replace_embeddings(model_id, dim, rows, first, last))
