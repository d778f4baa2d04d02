"""The natively async PostgreSQL store: psycopg's async pool running the shared operations.

The store methods are :class:`.methods.StoreMethods'` (the same as the sync store's); this class's
runners are coroutines, so each method returns an awaitable. It only holds the pool.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
from pgvector.psycopg import register_vector_async
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from memq.errors import StoreError
from memq.store.postgres import schema, steps, transfer
from memq.store.postgres.hnsw import IndexBehind
from memq.store.postgres.methods import Make, StoreMethods
from memq.store.postgres.steps import (
    SESSION_SETUP,
    TRANSACTION,
    WRITE_ATTEMPTS,
    Op,
    T,
    complete_async,
    first_step,
    mask_dsn,
    pool_settings,
    retry_delay,
    translate,
)
from memq.types import HistoryEvent, MemoryRecord


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Per pooled connection: the pgvector adapters (exact float32 in and out) and UTC session time."""
    await register_vector_async(conn)
    await conn.execute(SESSION_SETUP)


async def _begin_as(conn: psycopg.AsyncConnection[Any], snapshot: bool) -> None:
    """The connection's next transaction: a read snapshot or a write (see ``steps.TRANSACTION``)."""
    level, read_only = TRANSACTION[snapshot]
    await conn.set_isolation_level(level)
    await conn.set_read_only(read_only)


class AsyncPostgresStore(StoreMethods):
    """The :class:`memq.store.base.AsyncStore` on PostgreSQL + pgvector, with no threads involved.

    Create it with ``await AsyncPostgresStore.connect(dsn)``, which migrates the schema and opens
    the pool; the arguments are those of :class:`memq.store.postgres.PostgresStore`. It runs the
    same methods and operations as the sync store, so the two behave identically.
    """

    is_async = True  # its methods return awaitables (memq.ops.runner awaits them)

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
            **pool_settings(AsyncConnectionPool, self.location, self._min_size, self._max_size, _configure),
        )
        try:
            await pool.open(wait=True)
        except psycopg.Error as exc:
            await pool.close()
            raise translate(exc, self.location) from exc
        self._pool = pool

    def _opened(self) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
        if self._pool is None:
            raise StoreError("the store is not open (or closed): use `await AsyncPostgresStore.connect(dsn)`")
        return self._pool

    # -- the runners -----------------------------------------------------------------------------------
    async def _run(self, make: Make[T], *, snapshot: bool, sink: list[Any] | None = None) -> T:
        """One transaction around a fresh operation; none (no connection) if it ends before a statement."""
        pool = self._opened()
        op = make()
        started, step = first_step(op)
        if not started:
            return step  # type: ignore[no-any-return]
        forked: list[asyncio.Task[Any]] = []

        async def fork(cur: psycopg.AsyncCursor[Any], op: Op[Any]) -> asyncio.Task[Any] | steps.Deferred:
            """A forked read (``steps.Fork``) as a task on a second connection in ``cur``'s snapshot;
            a :class:`~.steps.Deferred` when no connection is free within ``FORK_WAIT``."""
            try:
                conn = await pool.getconn(timeout=steps.FORK_WAIT)
            except PoolTimeout:
                return steps.Deferred(op)
            try:
                snapshot = await complete_async(cur, steps.exported_snapshot())
                task = asyncio.ensure_future(self._run_forked(pool, conn, steps.in_snapshot(snapshot, op)))
            except BaseException:
                await pool.putconn(conn)
                raise
            forked.append(task)
            return task

        try:
            async with pool.connection() as conn:
                await _begin_as(conn, snapshot)
                async with conn.transaction(), conn.cursor() as cur:
                    return await complete_async(cur, op, step, sink, fork if snapshot else None)
        finally:
            for task in forked:  # one the operation never joined (it failed first): stop it, drop its error
                task.cancel()
            if forked:
                await asyncio.gather(*forked, return_exceptions=True)

    async def _run_forked(
        self,
        pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]],
        conn: psycopg.AsyncConnection[Any],
        op: Op[T],
    ) -> T:
        try:
            await _begin_as(conn, snapshot=True)
            async with conn.transaction(), conn.cursor() as cur:
                return await complete_async(cur, op)
        finally:
            await pool.putconn(conn)

    async def _write(self, make: Make[T], retry: Callable[[], bool] | None = None) -> T:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return await self._run(make, snapshot=False)
            except psycopg.Error as exc:
                await asyncio.sleep(retry_delay(exc, attempt, self.location, retry))
        raise AssertionError("unreachable")

    async def _read(self, make: Make[T], sink: list[Any] | None = None) -> T:
        try:
            return await self._run(make, snapshot=True, sink=sink)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    async def _read_indexed(self, make: Callable[[bool], Op[T]]) -> T:
        try:
            return await self._read(lambda: make(True))
        except IndexBehind:
            await self._maintain(lambda: schema.build_index(wait=False))
            return await self._read(lambda: make(False))

    async def _maintain(self, make: Make[T]) -> T:
        pool = self._opened()
        try:
            async with pool.connection() as conn:
                try:
                    async with conn.cursor() as cur:
                        return await complete_async(cur, make())
                finally:
                    await conn.rollback()
                    for statement in schema.MAINTENANCE_RESET:
                        await conn.execute(statement)
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

    # -- export from one snapshot ----------------------------------------------------------------------
    async def export_rows(self, tenant: str | None) -> list[MemoryRecord | HistoryEvent]:
        """Every version, then every event, from one snapshot (a list, as AsyncStore specifies).
        :meth:`export_records` / :meth:`export_events` page instead."""
        rows: list[MemoryRecord | HistoryEvent] = []
        await self._read(lambda: transfer.export_rows(tenant), rows)
        return rows
