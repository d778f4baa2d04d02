"""Every method of the PostgreSQL stores, written once for the sync and the async store.

A method here picks its operation (:mod:`.records`, :mod:`.candidates`, :mod:`.log`,
:mod:`.learners`, :mod:`.transfer`, :mod:`.schema`) and hands it to the runner: ``self._write`` (one
READ COMMITTED transaction, a deadlock victim retried whole) or ``self._read`` (one read-only
snapshot). The runner is the store class's: :class:`memq.store.postgres.PostgresStore` runs the
operation blocking and returns its value; :class:`memq.store.postgres.AsyncPostgresStore` has
coroutine runners, so the same method returns an awaitable (``await store.insert(...)``). Hence the
honest return type :data:`Result`: the value, or an awaitable of it, by runner.

The runners receive *factories* (``lambda: op(...)``), not operations: a write may run its operation
again after a deadlock, and an operation is a generator that runs once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from functools import cached_property
from typing import Any

import numpy as np

from memq.store.base import (
    Candidate,
    CandidatePool,
    CandidateQuery,
    FeedbackPlan,
    LogEntry,
    LogRow,
    PlanFn,
    StoredLearnerState,
    VersionChange,
    WriteBatch,
)
from memq.store.postgres import candidates, learners, log, schema, transfer
from memq.store.postgres import records as record_ops
from memq.store.postgres.steps import Op, T
from memq.store.sqlcommon import TrainingRows
from memq.types import (
    HistoryEvent,
    HistoryOp,
    LoggedRetrieval,
    MemoryRecord,
    Page,
    StoreStats,
    Utility,
)

#: What a store method returns: the value itself from :class:`~memq.store.postgres.PostgresStore`,
#: an awaitable of it from :class:`~memq.store.postgres.AsyncPostgresStore`.
Result = T | Awaitable[T]

Make = Callable[[], Op[T]]


class StoreMethods:
    """The store contract (:class:`memq.store.base.Store`) over two abstract runners."""

    backend = "postgres"
    location: str

    @cached_property
    def _training_rows(self) -> TrainingRows:
        """Decoded training rows kept between fits (:class:`memq.store.sqlcommon.TrainingRows`)."""
        return TrainingRows()

    # -- the runners (the store classes implement them) ----------------------------------------------
    def _write(self, make: Make[T], retry: Callable[[], bool] | None = None) -> Result[T]:
        """Run a fresh operation from ``make`` in one READ COMMITTED transaction; retry deadlocks.

        ``retry``, when given, is asked before each retry: False gives up (with the store error).
        """
        raise NotImplementedError

    def _read(self, make: Make[T]) -> Result[T]:
        """Run the operation from ``make`` in one read-only snapshot."""
        raise NotImplementedError

    def _read_indexed(self, make: Callable[[bool], Op[T]]) -> Result[T]:
        """As :meth:`_read`, for a search that may find the HNSW index behind: ``make(True)`` may raise
        :class:`memq.store.postgres.hnsw.IndexBehind`; then the index is built (if no other session is
        building it) and ``make(False)`` runs."""
        raise NotImplementedError

    def _maintain(self, make: Make[T]) -> Result[T]:
        """Run a maintenance operation (DDL that cannot run in a transaction) on an autocommit
        connection, then reset the connection's settings and advisory locks whatever happened."""
        raise NotImplementedError

    # -- embedding space -------------------------------------------------------------------------------
    def embedding_space(self) -> Result[tuple[str, int] | None]:
        return self._read(record_ops.embedding_space)

    def set_embedding_space(self, model_id: str, dim: int) -> Result[None]:
        return self._write(lambda: record_ops.set_embedding_space(model_id, dim))

    # -- writes ----------------------------------------------------------------------------------------
    def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> Result[None]:
        return self._write(lambda: record_ops.insert(records, op, actor, reason))

    def write_version(self, change: VersionChange) -> Result[MemoryRecord]:
        return self._write(lambda: record_ops.write_version(change))

    def apply_writes(self, batch: WriteBatch) -> Result[list[MemoryRecord]]:
        """The whole batch in one READ COMMITTED transaction (a deadlock victim is retried whole)."""
        return self._write(lambda: record_ops.apply_writes(batch))

    def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> Result[None]:
        return self._write(lambda: record_ops.delete(tenant, record_id, actor, reason))

    def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> Result[int]:
        return self._write(lambda: record_ops.archive(tenant, record_ids, reason, actor))

    def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> Result[MemoryRecord]:
        return self._write(lambda: record_ops.restore(tenant, record_id, actor, reason))

    def purge(self, tenant: str, record_ids: Sequence[str]) -> Result[int]:
        return self._write(lambda: record_ops.purge(tenant, record_ids))

    def log_retrieval(self, entry: LogEntry) -> Result[None]:
        return self._write(lambda: log.log_retrieval(entry))

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> Result[int]:
        return self._write(lambda: log.prune_retrievals(before, tenant))

    def apply_feedback(self, tenant: str, retrieval_id: str, plan: PlanFn) -> Result[FeedbackPlan]:
        """One transaction: lock the retrieval and its shown records' utility, call ``plan``, write
        (and count the feedback for the learner the search trained).

        A deadlock before ``plan`` ran is retried as any write; after it ran it is not, so a plan
        with side effects never runs twice.
        """
        planned = False

        def once(logged: LoggedRetrieval, current: dict[str, Utility]) -> FeedbackPlan:
            nonlocal planned
            planned = True
            return plan(logged, current)

        return self._write(lambda: log.apply_feedback(tenant, retrieval_id, once), retry=lambda: not planned)

    def training_log(self, tenant: str, *, limit: int, since: datetime | None = None) -> Result[list[LogRow]]:
        return self._read(lambda: log.training_log(tenant, limit, since, self._training_rows))

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> Result[None]:
        """One transaction: create missing utility rows, lock them in id order, add the deltas."""
        return self._write(lambda: log.add_stats(tenant, deltas))

    def save_learner_state(
        self, tenant: str, name: str, state: dict[str, Any], *, expected_version: int | None
    ) -> Result[int]:
        return self._write(lambda: learners.save_learner_state(tenant, name, state, expected_version))

    # -- reads -----------------------------------------------------------------------------------------
    def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> Result[list[MemoryRecord]]:
        return self._read(lambda: record_ops.get(tenant, ids, include_deleted, with_embedding))

    def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Result[Page]:
        return self._read(lambda: record_ops.list_page(query, cursor, limit))

    def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Result[Page]:
        return self._read(lambda: record_ops.list_archived(query, cursor, limit))

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> Result[dict[str, MemoryRecord]]:
        return self._read(lambda: candidates.visible(query, ids, with_embedding))

    def search_candidates(
        self, query: CandidateQuery, n: int, *, vector: np.ndarray | None = None, text: str | None = None
    ) -> Result[CandidatePool]:
        return self._read_indexed(lambda build: candidates.search_candidates(query, n, vector, text, build))

    def vectors(self, tenant: str, ids: Sequence[str]) -> Result[dict[str, np.ndarray]]:
        return self._read(lambda: candidates.vectors(tenant, ids))

    def get_retrieval(self, tenant: str, retrieval_id: str) -> Result[LoggedRetrieval]:
        return self._read(lambda: log.get_retrieval(tenant, retrieval_id))

    def list_retrievals(
        self,
        tenant: str,
        *,
        since: datetime | None = None,
        limit: int = 1000,
        with_feedback: bool = False,
        latest: bool = False,
    ) -> Result[list[LoggedRetrieval]]:
        return self._read(lambda: log.list_retrievals(tenant, since, limit, with_feedback, latest))

    def learner_state(self, tenant: str, name: str) -> Result[StoredLearnerState | None]:
        return self._read(lambda: learners.learner_state(tenant, name))

    def history(self, tenant: str, record_id: str) -> Result[list[HistoryEvent]]:
        return self._read(lambda: record_ops.history(tenant, record_id))

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> Result[list[Candidate]]:
        return self._read_indexed(lambda build: candidates.dense_candidates(query, vector, n, build))

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> Result[list[Candidate]]:
        return self._read(lambda: candidates.lexical_candidates(query, text, n))

    def stats(self, tenant: str | None = None) -> Result[StoreStats]:
        return self._read(lambda: record_ops.stats(tenant, self.backend, self.location))

    def verify_index(self) -> Result[bool]:
        """True when the vector column is typed for the recorded space and its HNSW index is valid."""
        return self._read(schema.index_ok)

    def build_index(self) -> Result[bool]:
        """Take every row into the HNSW index now (after a bulk load), rather than on the next search.

        Rows of large batches skip the index's graph when rebuilding it is cheaper than inserting
        them one by one (:mod:`memq.store.postgres.hnsw`); the first dense search that finds many of
        them builds the index, and waits for it. This builds it at a time of your choosing, without
        blocking writers (``CREATE INDEX CONCURRENTLY``); it waits for a build another session runs.
        Returns True when the index covers every row (also when there was nothing to do).
        """
        return self._maintain(lambda: schema.build_index(wait=True))

    # -- export / import / re-embed ----------------------------------------------------------------------
    def export_records(
        self, tenant: str | None, after: int, limit: int
    ) -> Result[list[tuple[int, MemoryRecord]]]:
        """One page of an export: (row key, version with its vector) of up to ``limit`` versions with a key
        above ``after``, in insertion order; the next page starts after the last key. Each page is its
        own snapshot: to copy a store that is being written consistently, use :meth:`export_rows`."""
        return self._read(lambda: transfer.export_records(tenant, after, limit))

    def export_events(
        self, tenant: str | None, after: int, limit: int
    ) -> Result[list[tuple[int, HistoryEvent]]]:
        """One page of history events: (sequence number, event) numbered above ``after``, in order."""
        return self._read(lambda: transfer.export_events(tenant, after, limit))

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> Result[int]:
        return self._write(lambda: transfer.import_rows(rows))

    def embeddable(self, after: int, limit: int) -> Result[list[tuple[int, str]]]:
        """(row key, text) of up to ``limit`` versions with a key above ``after``, in key order."""
        return self._read(lambda: transfer.embeddable(after, limit))

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> Result[None]:
        return self._write(lambda: transfer.replace_embeddings(model_id, dim, rows, first, last))
