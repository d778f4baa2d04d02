"""The facades: :class:`Memory` (sync) and :class:`AsyncMemory` (async).

Both are thin: each public operation is written once in :mod:`memq.ops` as an I/O-free generator and
bound here to a runner — blocking calls for :class:`Memory`, ``await`` for :class:`AsyncMemory`
(psycopg's native async connections on PostgreSQL; worker threads for SQLite, whose driver is sync).
The two method tables below bind the same operations, so a feature added to one facade cannot be
missing from the other (tests/test_facade_parity.py checks the public method sets).

Write path: validate → build version-1 records → embed (one batch) → one store transaction.
Read path: embed query → dense + lexical candidates → fuse/recency/MMR (:mod:`memq.retrieve.pipeline`)
→ a :class:`Retrieval` with an id, kept in the retrieval log for feedback. docs/architecture.md has
the picture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from memq._closing import Closing
from memq.config import MemoryConfig
from memq.embed.base import Embedder
from memq.llm.base import LLM, Usage
from memq.ops import learning, read, transfer, write
from memq.ops.core import Core, resolve_llm
from memq.ops.runner import async_op, run_async, run_sync, sync_op
from memq.store import AsyncStore, Store, is_postgres_url, open_store
from memq.types import MemoryRecord, Scope
from memq.validate import ScopeLike

DEFAULT_DB = "memq.db"
_resolve_llm = resolve_llm  # kept for callers of the former private name


class _Facade:
    """What both facades share besides their operations: the core and its settings."""

    core: Core

    @property
    def config(self) -> MemoryConfig:
        return self.core.config

    @property
    def embedder(self) -> Embedder:
        return self.core.embedder

    @embedder.setter
    def embedder(self, value: Embedder) -> None:
        self.core.embedder = value

    @property
    def llm(self) -> LLM | None:
        return self.core.llm

    @llm.setter
    def llm(self, value: LLM | str | None) -> None:
        self.core.llm = resolve_llm(value)

    @property
    def default_scope(self) -> Scope | None:
        return self.core.default_scope

    def usage(self) -> Usage:
        """LLM calls, failures, retries, prompt/completion tokens and latency of this memory's LLM,
        in total and by operation (``extract``, ``reconcile``, ...); all zero without an LLM."""
        return self.core.usage()


class Memory(_Facade, Closing):
    """Agent memory on a store (SQLite file by default, or PostgreSQL).

    >>> mem = Memory("memq.db", scope="acme")              # doctest: +SKIP
    >>> mem.add("Alice moved to Berlin in 2021", metadata={"topic": "travel"})  # doctest: +SKIP
    >>> mem.search("where does Alice live?").records        # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store | str | Path = DEFAULT_DB,
        *,
        embedder: Embedder | None = None,
        config: MemoryConfig | str | Path | None = None,
        scope: ScopeLike | None = None,
        llm: LLM | str | None = None,
    ) -> None:
        self.core = Core(embedder, config, scope, llm)
        self.store: Store = open_store(store) if isinstance(store, str | Path) else store

    def close(self) -> None:
        self.store.close()

    add = sync_op(write.add)
    update = sync_op(write.update)
    invalidate = sync_op(write.invalidate)
    delete = sync_op(write.delete)
    purge = sync_op(write.purge)
    remember_experience = sync_op(write.remember_experience)
    forget = sync_op(write.forget)
    archived = sync_op(write.archived)
    restore = sync_op(write.restore)
    search = sync_op(read.search)
    get = sync_op(read.get)
    list = sync_op(read.list_page)
    history = sync_op(read.history)
    stats = sync_op(read.stats)
    feedback = sync_op(learning.feedback)
    retrieval = sync_op(learning.retrieval)
    replay = sync_op(learning.replay)
    evaluate = sync_op(learning.evaluate)
    prune_log = sync_op(learning.prune_log)
    export = sync_op(transfer.export)
    import_ = sync_op(transfer.import_)
    reembed = sync_op(transfer.reembed)
    learning_status = sync_op(learning.status)
    _learner = sync_op(learning.learner_for)

    def iter(self, **kwargs: Any) -> Iterator[MemoryRecord]:
        """Every record :meth:`list` would return, following cursors (``list``'s keyword arguments)."""
        cursor = None
        while True:
            page = run_sync(read.list_page(self.core, cursor=cursor, **kwargs), self.store)
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class AsyncMemory(_Facade):
    """The async facade. Same methods as :class:`Memory`, as coroutines (``iter`` is an async iterator).

    Use ``await AsyncMemory.open(url)`` or ``async with AsyncMemory(store) as mem``. ``store`` is a
    native async store (:class:`memq.store.postgres.AsyncPostgresStore`) or any sync store, whose
    calls then run on worker threads (:class:`memq.store.threaded.ThreadedAsyncStore`).
    """

    def __init__(
        self,
        store: AsyncStore | Store,
        *,
        embedder: Embedder | None = None,
        config: MemoryConfig | str | Path | None = None,
        scope: ScopeLike | None = None,
        llm: LLM | str | None = None,
    ) -> None:
        from memq.ops.runner import is_async_store
        from memq.store.threaded import ThreadedAsyncStore

        self.core = Core(embedder, config, scope, llm)
        self.store = store if is_async_store(store) else ThreadedAsyncStore(store)

    @classmethod
    async def open(cls, url: str | Path = DEFAULT_DB, **kwargs: Any) -> AsyncMemory:
        """Open a store by URL: ``postgresql://...`` natively async, else a SQLite file."""
        import asyncio

        text = str(url)
        if is_postgres_url(text):
            from memq.store.postgres import AsyncPostgresStore

            return cls(await AsyncPostgresStore.connect(text), **kwargs)
        return cls(await asyncio.to_thread(open_store, text), **kwargs)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    add = async_op(write.add)
    update = async_op(write.update)
    invalidate = async_op(write.invalidate)
    delete = async_op(write.delete)
    purge = async_op(write.purge)
    remember_experience = async_op(write.remember_experience)
    forget = async_op(write.forget)
    archived = async_op(write.archived)
    restore = async_op(write.restore)
    search = async_op(read.search)
    get = async_op(read.get)
    list = async_op(read.list_page)
    history = async_op(read.history)
    stats = async_op(read.stats)
    feedback = async_op(learning.feedback)
    retrieval = async_op(learning.retrieval)
    replay = async_op(learning.replay)
    evaluate = async_op(learning.evaluate)
    prune_log = async_op(learning.prune_log)
    export = async_op(transfer.export)
    import_ = async_op(transfer.import_)
    reembed = async_op(transfer.reembed)
    learning_status = async_op(learning.status)
    _learner = async_op(learning.learner_for)

    async def iter(self, **kwargs: Any) -> AsyncIterator[MemoryRecord]:
        """Every record :meth:`list` would return, following cursors: ``async for r in mem.iter()``."""
        cursor = None
        while True:
            page = await run_async(read.list_page(self.core, cursor=cursor, **kwargs), self.store)
            for record in page.records:
                yield record
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
