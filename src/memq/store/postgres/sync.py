"""The blocking PostgreSQL store: a psycopg connection pool running the shared operations.

The store methods are :class:`.methods.StoreMethods`'; this class only runs their operations
(blocking) and holds the pool.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from memq._closing import Closing
from memq.store.postgres import schema, steps, transfer
from memq.store.postgres.hnsw import IndexBehind
from memq.store.postgres.methods import Make, StoreMethods
from memq.store.postgres.steps import (
    SESSION_SETUP,
    TRANSACTION,
    WRITE_ATTEMPTS,
    Op,
    T,
    complete,
    drive,
    first_step,
    mask_dsn,
    pool_settings,
    retry_delay,
    translate,
)
from memq.types import HistoryEvent, MemoryRecord


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Per pooled connection: the pgvector adapters (exact float32 in and out) and UTC session time."""
    register_vector(conn)
    conn.execute(SESSION_SETUP)


def _begin_as(conn: psycopg.Connection[Any], snapshot: bool) -> None:
    """The connection's next transaction: a read snapshot or a write (see ``steps.TRANSACTION``)."""
    level, read_only = TRANSACTION[snapshot]
    conn.set_isolation_level(level)
    conn.set_read_only(read_only)


class PostgresStore(StoreMethods, Closing):
    """memq's store on PostgreSQL + pgvector (see :class:`memq.store.base.Store` for the contract).

    ``dsn`` is a libpq URL or key=value string. The pool holds ``min_size`` to ``max_size``
    connections, each in autocommit mode with explicit transactions, so a connection is never
    left idle inside a transaction. ``dim``, when given, is the embedding dimension this
    deployment uses: opening refuses a store of another dimension, and an empty store gets its
    typed vector column and HNSW index at once rather than on the first insert.

    Every write is one transaction (a deadlock victim is retried whole); reads see one snapshot. A
    hybrid search runs its dense query on a second connection when one is free (``steps.Fork``), so
    ``max_size`` of about twice the concurrent searches lets every search do so; with fewer, a search
    runs both queries on one connection and never waits for a second.
    """

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, dim: int | None = None) -> None:
        self.location = mask_dsn(dsn)
        self._closed = False
        # runs forked reads (steps.Fork); it starts no thread before the first one
        self._forks = ThreadPoolExecutor(thread_name_prefix="memq-pg-fork")
        # migrate on a plain connection first: the pool's configure step needs the vector type
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(SESSION_SETUP)
                with conn.transaction(), conn.cursor() as cur:
                    complete(cur, schema.migrate(dim))
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            dsn, **pool_settings(ConnectionPool, self.location, min_size, max_size, _configure)
        )
        try:
            self._pool.open(wait=True)
        except psycopg.Error as exc:
            self._pool.close()
            raise translate(exc, self.location) from exc

    # -- the runners -----------------------------------------------------------------------------------
    def _run(self, make: Make[T], *, snapshot: bool) -> T:
        """One transaction around a fresh operation; none (no connection) if it ends before a statement."""
        op = make()
        started, step = first_step(op)
        if not started:
            return step  # type: ignore[no-any-return]
        with self._pool.connection() as conn:
            _begin_as(conn, snapshot)
            with conn.transaction(), conn.cursor() as cur:
                return complete(cur, op, step, self._fork if snapshot else None)

    def _fork(self, cur: psycopg.Cursor[Any], op: Op[Any]) -> Future[Any] | steps.Deferred:
        """Start a forked read (``steps.Fork``) on a second connection in ``cur``'s snapshot, in a
        worker thread; a :class:`~.steps.Deferred` when no connection is free within ``FORK_WAIT``
        (never longer: threads each holding one and waiting for another would deadlock)."""
        try:
            conn = self._pool.getconn(timeout=steps.FORK_WAIT)
        except PoolTimeout:
            return steps.Deferred(op)
        try:
            forked = steps.in_snapshot(complete(cur, steps.exported_snapshot()), op)
            return self._forks.submit(self._run_forked, conn, forked)
        except BaseException:
            self._pool.putconn(conn)
            raise

    def _run_forked(self, conn: psycopg.Connection[Any], op: Op[T]) -> T:
        try:
            _begin_as(conn, snapshot=True)
            with conn.transaction(), conn.cursor() as cur:
                return complete(cur, op)
        finally:
            self._pool.putconn(conn)

    def _write(self, make: Make[T], retry: Callable[[], bool] | None = None) -> T:
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return self._run(make, snapshot=False)
            except psycopg.Error as exc:
                time.sleep(retry_delay(exc, attempt, self.location, retry))
        raise AssertionError("unreachable")

    def _read(self, make: Make[T]) -> T:
        try:
            return self._run(make, snapshot=True)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    def _read_indexed(self, make: Callable[[bool], Op[T]]) -> T:
        try:
            return self._read(lambda: make(True))
        except IndexBehind:
            self._maintain(lambda: schema.build_index(wait=False))
            return self._read(lambda: make(False))

    def _maintain(self, make: Make[T]) -> T:
        try:
            with self._pool.connection() as conn:
                try:
                    with conn.cursor() as cur:
                        return complete(cur, make())
                finally:
                    conn.rollback()
                    for statement in schema.MAINTENANCE_RESET:
                        conn.execute(statement)
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._forks.shutdown(wait=True)
            self._pool.close()

    # -- streamed export -------------------------------------------------------------------------------
    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        """Stream every version, then every event, from one snapshot.

        The snapshot's connection stays checked out of the pool until the iteration ends (or the
        iterator is closed), so a consumer calling the store meanwhile needs ``max_size`` >= 2.
        :meth:`export_records` / :meth:`export_events` page instead, holding nothing between pages.
        """
        op = transfer.export_rows(tenant)
        started, step = first_step(op)
        if not started:
            return
        try:
            with self._pool.connection() as conn:
                _begin_as(conn, snapshot=True)
                with conn.transaction(), conn.cursor() as cur:
                    for items in drive(cur, op, step):
                        yield from items
        except psycopg.Error as exc:
            raise translate(exc, self.location) from exc
