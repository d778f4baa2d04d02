"""How the sync and async PostgreSQL stores share one implementation.

Every store method is an *operation*: a generator that yields statements (:class:`Q`) and is sent
back each statement's result, and finally returns the method's value. It does no I/O itself, so
the logic (which statements, in which order, what the rows mean, which error to raise) exists
once, in the operation modules (:mod:`.records`, :mod:`.candidates`, :mod:`.log`, :mod:`.learners`,
:mod:`.transfer`, :mod:`.schema`). Each store method is written once too, in :mod:`.methods`, as
"run this operation as a write / as a read"; the two store classes only say how to run one on a
psycopg connection — blocking in :mod:`.sync`, with ``await`` in :mod:`.aio`. An operation may also
yield :class:`Emit` to hand finished items to its caller while it keeps going (export streams
records from the sync store this way), and :class:`Fork` / :class:`Join` to run another read
operation beside it, on a second connection in the same snapshot (a search's dense query runs beside
its lexical one this way).

This module also holds what both runners need around an operation: the error translation and the
retry policy.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from weakref import WeakKeyDictionary

import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout

from memq.errors import ConflictError, DimensionMismatchError, MemqError, StoreError

T = TypeVar("T")

Mode = Literal["all", "one", "none", "rowcount", "many", "copy"]


@dataclass(frozen=True, slots=True)
class Q:
    """One statement. ``mode`` says what the operation is sent back:

    ``all``: the rows; ``one``: the first row or None; ``rowcount``: rows affected; ``none``: None;
    ``many``: ``params`` is a list of parameter rows for ``executemany`` (sent back None); ``copy``:
    ``sql`` is a ``COPY ... FROM STDIN`` and ``params`` its rows (one statement however many rows, so
    statement triggers fire once; sent back None).
    """

    sql: str
    params: Sequence[Any] | None = None
    mode: Mode = "all"
    types: Sequence[str] | None = None  # ``copy``: the columns' types, for a ``FORMAT BINARY`` copy
    # False: never a prepared statement, so always a plan for the parameters at hand. psycopg prepares a
    # statement run five times on a connection, and PostgreSQL may then keep a generic plan made while
    # the table was small (a sequential scan) until the table is next analysed
    prepare: bool | None = None


@dataclass(frozen=True, slots=True)
class Emit:
    """Items an operation hands to its caller before it finishes."""

    items: list[Any]


@dataclass(frozen=True, slots=True)
class Fork:
    """Start ``op``, a read, beside this read operation; sent back a handle for :class:`Join`.

    A runner with a pool runs it on a second connection, in this transaction's snapshot (exported by
    ``pg_export_snapshot()``), when one is free within ``FORK_WAIT``; otherwise, and in runners without
    a pool, it runs on this connection when joined. Either way it sees the same rows. Only in read
    snapshots."""

    op: Op[Any]


@dataclass(frozen=True, slots=True)
class Join:
    """Wait for a forked operation: sent back its value, or its exception is raised at this step."""

    handle: Any


Op = Generator["Q | Emit | Fork | Join", Any, T]


@dataclass(slots=True)
class Deferred:
    """A forked operation no second connection was free for: it runs on this one when joined."""

    op: Op[Any]


# how long a fork waits for a second connection before it runs on the first one (psycopg_pool refuses
# a timeout of 0 even with a connection idle); never longer: threads each holding a connection and
# waiting for another would deadlock
FORK_WAIT = 0.001


def exported_snapshot() -> Op[str]:
    """The id of this transaction's snapshot, for :func:`in_snapshot` on another connection."""
    row = yield Q("SELECT pg_export_snapshot()", mode="one")
    return str(row[0])


def in_snapshot(snapshot: str, op: Op[T]) -> Op[T]:
    """``op`` in the snapshot another transaction exported: the first statement of a REPEATABLE READ
    transaction adopts it (the id, hex digits and dashes, is checked: it is spliced into the SQL)."""
    if not re.fullmatch(r"[0-9A-Fa-f-]+", snapshot):
        raise StoreError(f"unexpected snapshot id from the server: {snapshot!r}")
    yield Q(f"SET TRANSACTION SNAPSHOT '{snapshot}'", mode="none", prepare=False)
    return (yield from op)


# Reads run in a read-only REPEATABLE READ transaction: a method that issues several queries (the
# rows, then their links and utility; the dense search and its exact re-run) sees one snapshot.
# Read-only snapshots never fail with serialization errors. Writes keep READ COMMITTED, which the
# embedding-space setup relies on (see schema.check_or_set_space).
READ_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
# the runners ask for it in the BEGIN itself (no extra round trip): (isolation level, read only) by kind
TRANSACTION = {
    True: (psycopg.IsolationLevel.REPEATABLE_READ, True),  # a read snapshot
    False: (None, None),  # a write: the server's default, READ COMMITTED
}
SESSION_SETUP = "SET TIME ZONE 'UTC'"

# a write that loses a deadlock (or a serialization check) is rolled back whole and run again
RETRYABLE: tuple[type[Exception], ...] = (
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)
WRITE_ATTEMPTS = 5


# A connection last handed out less than this many seconds ago is handed out again without the
# checkout check (a round trip: 0.1-0.5 ms, paid by every read and write). Within the window a
# connection the server dropped fails on its first statement with a StoreError, and the pool discards
# it; past the window the check replaces it unseen. HikariCP's "alive bypass window" is the same idea.
# (A ``reset`` callback could note when a connection comes back instead, but with one psycopg_pool
# returns every connection through a worker thread, so it is not free again at once.)
CHECK_IDLE = 1.0


def checked_when_idle(pool_class: type[Any]) -> Callable[[Any], Any]:
    """The pool's ``check`` callback (sync or async, by ``pool_class``): the pool's own check, unless
    the connection was handed out under ``CHECK_IDLE`` seconds ago."""
    out: WeakKeyDictionary[Any, float] = WeakKeyDictionary()
    check_connection = pool_class.check_connection

    def idle(conn: Any) -> bool:
        now = time.monotonic()
        last, out[conn] = out.get(conn, -math.inf), now
        return now - last >= CHECK_IDLE

    if inspect.iscoroutinefunction(check_connection):

        async def check_async(conn: Any) -> None:
            if idle(conn):
                await check_connection(conn)

        return check_async

    def check(conn: Any) -> None:
        if idle(conn):
            check_connection(conn)

    return check


def pool_settings(
    pool_class: type[Any], location: str, min_size: int, max_size: int, configure: Callable[[Any], Any]
) -> dict[str, Any]:
    """What both stores open their pool with (``pool_class`` sync or async): ``min_size`` to
    ``max_size`` connections in autocommit mode (transactions are explicit), each set up by
    ``configure`` and checked on checkout unless it was handed out within ``CHECK_IDLE`` seconds
    (:func:`checked_when_idle`); the caller opens it."""
    return {
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": {"autocommit": True},
        "configure": configure,
        "check": checked_when_idle(pool_class),
        "open": False,
        "name": f"memq {location}",
    }


def backoff(attempt: int) -> float:
    """Seconds to wait before retry ``attempt`` (0-based), with jitter so retries spread out."""
    import random

    return min(0.02 * 2**attempt, 0.5) * (0.5 + random.random())


def retry_delay(exc: psycopg.Error, attempt: int, location: str, retry: Callable[[], bool] | None) -> float:
    """Both stores' write policy after attempt ``attempt`` (0-based) failed with ``exc``: the seconds to
    wait before running the write again, or the translated store error raised when it is not retried (not
    a deadlock or serialization failure, the last of ``WRITE_ATTEMPTS``, or ``retry()`` said no)."""
    if not isinstance(exc, RETRYABLE) or attempt + 1 == WRITE_ATTEMPTS or (retry is not None and not retry()):
        raise translate(exc, location) from exc
    return backoff(attempt)


def translate(exc: Exception, location: str) -> MemqError:
    """A psycopg / pool error as the typed memq error callers handle."""
    if isinstance(exc, psycopg.errors.UniqueViolation):
        detail = exc.diag.message_detail or str(exc)
        return ConflictError(f"write rejected by a constraint: {detail}")
    if isinstance(exc, psycopg.IntegrityError):
        return ConflictError(f"write rejected by a constraint: {exc}")
    if isinstance(exc, psycopg.DataError) and (
        "different vector dimensions" in str(exc) or re.search(r"expected \d+ dimensions", str(exc))
    ):
        # a query vector of another size, or a write racing a re-embed that retyped the column
        return DimensionMismatchError(
            f"the vector's dimension differs from the store's vectors ({exc}); "
            "use the store's embedder, or re-embed the store with `memq reembed` / Memory.reembed()"
        )
    if isinstance(exc, PoolTimeout):
        return StoreError(f"no connection to PostgreSQL at {location} became available in time: {exc}")
    if isinstance(exc, psycopg.OperationalError):
        return StoreError(f"PostgreSQL at {location} failed (connection or server problem): {exc}")
    return StoreError(f"PostgreSQL error at {location}: {exc}")


def execute(cur: psycopg.Cursor[Any], q: Q) -> Any:
    """Run one statement on a sync cursor and return what its mode asks for."""
    if q.mode == "many":
        cur.executemany(q.sql, q.params or [])
        return None
    if q.mode == "copy":
        with cur.copy(q.sql) as copy:
            if q.types:
                copy.set_types(q.types)
            for row in q.params or ():
                copy.write_row(row)
        return None
    cur.execute(q.sql, q.params or None, prepare=q.prepare)
    return _result(cur, q.mode)


async def execute_async(cur: psycopg.AsyncCursor[Any], q: Q) -> Any:
    """Run one statement on an async cursor and return what its mode asks for."""
    if q.mode == "many":
        await cur.executemany(q.sql, q.params or [])
        return None
    if q.mode == "copy":
        async with cur.copy(q.sql) as copy:
            if q.types:
                copy.set_types(q.types)
            for row in q.params or ():
                await copy.write_row(row)
        return None
    await cur.execute(q.sql, q.params or None, prepare=q.prepare)
    if q.mode == "all":
        return await cur.fetchall()
    if q.mode == "one":
        return await cur.fetchone()
    return cur.rowcount if q.mode == "rowcount" else None


def _result(cur: psycopg.Cursor[Any], mode: Mode) -> Any:
    if mode == "all":
        return cur.fetchall()
    if mode == "one":
        return cur.fetchone()
    return cur.rowcount if mode == "rowcount" else None


def first_step(op: Op[T]) -> tuple[bool, Any]:
    """Advance a fresh operation to its first step: ``(True, step)``, or ``(False, value)`` when it
    finishes without one (nothing to do, e.g. an empty batch): then no connection is needed at all."""
    try:
        return True, op.send(None)
    except StopIteration as stop:
        return False, stop.value


ForkFn = Callable[[psycopg.Cursor[Any], Op[Any]], Any]


def drive(
    cur: psycopg.Cursor[Any], op: Op[T], step: Q | Emit | Fork | Join, fork: ForkFn | None = None
) -> Generator[list[Any], None, T]:
    """Run an operation, from its first ``step``, on a sync cursor; yields what it emits, returns its
    value. ``fork(cur, op)`` starts a forked operation and returns a future (or a :class:`Deferred`);
    without it every fork is deferred."""
    while True:
        if isinstance(step, Emit):
            yield step.items
            value = None
        elif isinstance(step, Fork):
            value = fork(cur, step.op) if fork is not None else Deferred(step.op)
        elif isinstance(step, Join):
            value = (
                complete(cur, step.handle.op) if isinstance(step.handle, Deferred) else step.handle.result()
            )
        else:
            value = execute(cur, step)
        try:
            step = op.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


def complete(
    cur: psycopg.Cursor[Any],
    op: Op[T],
    step: Q | Emit | Fork | Join | None = None,
    fork: ForkFn | None = None,
) -> T:
    """Run an operation on a sync cursor to its end (emitted items are dropped). ``step``: its first
    step when the caller already took it (:func:`first_step`); otherwise the operation is fresh."""
    if step is None:
        started, step = first_step(op)
        if not started:
            return step  # type: ignore[no-any-return]
    runner = drive(cur, op, step, fork)
    while True:
        try:
            next(runner)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


AsyncForkFn = Callable[[psycopg.AsyncCursor[Any], Op[Any]], Awaitable[Any]]


async def complete_async(
    cur: psycopg.AsyncCursor[Any],
    op: Op[T],
    step: Q | Emit | Fork | Join | None = None,
    sink: list[Any] | None = None,
    fork: AsyncForkFn | None = None,
) -> T:
    """Run an operation on an async cursor (``step`` as in :func:`complete`); emitted items go to
    ``sink``; ``fork`` as in :func:`drive`, returning a task."""
    if step is None:
        started, step = first_step(op)
        if not started:
            return step  # type: ignore[no-any-return]
    while True:
        if isinstance(step, Emit):
            if sink is not None:
                sink.extend(step.items)
            value = None
        elif isinstance(step, Fork):
            value = await fork(cur, step.op) if fork is not None else Deferred(step.op)
        elif isinstance(step, Join):
            handle = step.handle
            value = await (complete_async(cur, handle.op) if isinstance(handle, Deferred) else handle)
        else:
            value = await execute_async(cur, step)
        try:
            step = op.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def mask_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***`` (URL userinfo, URL query or key=value form)."""
    if "://" not in dsn:
        return _KV_PASSWORD.sub(r"\1***", dsn)
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
            if password:
                netloc = f"{user}:***@{hostinfo}"
    query = parts.query
    if query and "password" in query.lower():
        pairs = [
            (k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)
        ]
        query = urlencode(pairs, safe="/:*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
