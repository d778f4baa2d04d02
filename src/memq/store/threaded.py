"""An :class:`AsyncStore` over a sync :class:`Store`, for backends with no async driver (SQLite).

Calls run one at a time on a dedicated worker thread, so the event loop never blocks on disk and
the SQLite connection is only ever used from one thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import numpy as np

from memq.store.base import (
    Candidate,
    CandidateQuery,
    FeedbackPlan,
    PlanFn,
    Store,
    VersionChange,
    WriteBatch,
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
)

T = TypeVar("T")


class ThreadedAsyncStore:
    def __init__(self, store: Store) -> None:
        self.sync = store
        self.backend = store.backend
        self.location = store.location
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"memq-{store.backend}")

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def close(self) -> None:
        await self._run(self.sync.close)
        self._executor.shutdown(wait=True)

    async def embedding_space(self) -> tuple[str, int] | None:
        return await self._run(self.sync.embedding_space)

    async def set_embedding_space(self, model_id: str, dim: int) -> None:
        await self._run(self.sync.set_embedding_space, model_id, dim)

    async def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        await self._run(self.sync.insert, records, op=op, actor=actor, reason=reason)

    async def write_version(self, change: VersionChange) -> MemoryRecord:
        return await self._run(self.sync.write_version, change)

    async def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """The sync store's one transaction, on the worker thread."""
        return await self._run(self.sync.apply_writes, batch)

    async def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        await self._run(self.sync.delete, tenant, record_id, actor=actor, reason=reason)

    async def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        return await self._run(self.sync.archive, tenant, record_ids, reason=reason, actor=actor)

    async def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        return await self._run(self.sync.restore, tenant, record_id, actor=actor, reason=reason)

    async def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        return await self._run(self.sync.purge, tenant, record_ids)

    async def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None:
        await self._run(
            self.sync.log_retrieval,
            retrieval,
            pool=pool,
            query_vector=query_vector,
            embedding_model=embedding_model,
        )

    async def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        return await self._run(self.sync.get_retrieval, tenant, retrieval_id)

    async def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]:
        return await self._run(
            self.sync.list_retrievals, tenant, since=since, limit=limit, with_feedback=with_feedback
        )

    async def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        return await self._run(self.sync.prune_retrievals, before, tenant)

    async def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        await self._run(self.sync.add_stats, tenant, deltas)

    async def apply_feedback(
        self,
        tenant: str,
        retrieval_id: str,
        plan: PlanFn,
        *,
        learner: str | None = None,
        known_stamp: datetime | None = None,
    ) -> FeedbackPlan:
        """The sync store's transaction on the worker thread; ``plan`` runs there too."""
        return await self._run(
            self.sync.apply_feedback, tenant, retrieval_id, plan, learner=learner, known_stamp=known_stamp
        )

    async def learner_state(self, tenant: str, name: str) -> dict | None:
        return await self._run(self.sync.learner_state, tenant, name)

    async def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict, datetime] | None:
        return await self._run(self.sync.learner_state_stamped, tenant, name)

    async def save_learner_state(self, tenant: str, name: str, state: dict) -> datetime:
        return await self._run(self.sync.save_learner_state, tenant, name, state)

    async def get(
        self, tenant: str, ids: Sequence[str], *, include_deleted: bool = False, with_embedding: bool = False
    ) -> list[MemoryRecord]:
        return await self._run(
            self.sync.get, tenant, ids, include_deleted=include_deleted, with_embedding=with_embedding
        )

    async def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return await self._run(self.sync.list, query, cursor=cursor, limit=limit)

    async def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        return await self._run(self.sync.list_archived, query, cursor=cursor, limit=limit)

    async def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        return await self._run(self.sync.visible, query, ids, with_embedding=with_embedding)

    async def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        return await self._run(self.sync.history, tenant, record_id)

    async def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        return await self._run(self.sync.dense_candidates, query, vector, n)

    async def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        return await self._run(self.sync.lexical_candidates, query, text, n)

    async def stats(self, tenant: str | None = None) -> StoreStats:
        return await self._run(self.sync.stats, tenant)

    async def export_rows(self, tenant: str | None) -> list[MemoryRecord | HistoryEvent]:
        return await self._run(lambda: list(self.sync.export_rows(tenant)))

    async def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        return await self._run(self.sync.import_rows, rows)
