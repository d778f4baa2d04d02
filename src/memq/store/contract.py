"""The store contract, split by concern: what a backend must do for :class:`memq.Memory`.

A store keeps record *versions* (rows keyed by ``(id, version)``), their vectors, a lexical index,
the history log, links, utility statistics, the retrieval log and the learners' state. Every write
method is one transaction: it either happens whole or not at all.

* :class:`Records` — records and their versions: writes, reads, history, export/import, re-embedding;
* :class:`Candidates` — what search reads: dense and lexical candidates, light rows, the shown records;
* :class:`RetrievalLog` — the retrieval log and the feedback transaction;
* :class:`LearnerStates` — each learner's model, saved with a version check.

:class:`Store` is all four. Two backends pass the same contract tests (tests/test_store_contract.py):
:mod:`memq.store.sqlite` (embedded default; one module per concern) and :mod:`memq.store.postgres`
(PostgreSQL + pgvector; natively async too). An async store has the same methods as coroutines and
a true ``is_async`` attribute (:class:`AsyncStore`); :class:`memq.store.threaded.ThreadedAsyncStore`
turns any sync store into one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

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
from memq.types import HistoryEvent, HistoryOp, LoggedRetrieval, MemoryRecord, Page, StoreStats


@runtime_checkable
class Records(Protocol):
    """Records and versions."""

    backend: str
    location: str

    def close(self) -> None: ...

    def embedding_space(self) -> tuple[str, int] | None:
        """(model_id, dim) of the vectors in the store, or None while it holds none."""
        ...

    def set_embedding_space(self, model_id: str, dim: int) -> None:
        """Record the space on first use; raise DimensionMismatchError if another is set."""
        ...

    def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Insert new records (version rows) with their links, utility and a history event each."""
        ...

    def write_version(self, change: VersionChange) -> MemoryRecord:
        """Expire the current version of a record and insert ``change.new`` as the next one.

        NotFoundError if the record has no current version (unknown or deleted); ConflictError if
        ``change.new.version`` is not current version + 1 (a concurrent write).
        """
        ...

    def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """A whole write plan in ONE transaction: the insert groups, the versions, then the stats.

        Any failure rolls back the whole batch (nothing of it is written; the vector index keeps
        matching the rows). Returns the new versions written, in ``batch.versions`` order.
        """
        ...

    def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None:
        """Soft delete: the current version is expired and flagged deleted; history is kept."""
        ...

    def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int:
        """Archive records (budgeted forgetting) in one transaction: deleted like :meth:`delete`, with
        an ``archive`` event, so :meth:`list_archived` lists them and :meth:`restore` brings them back.
        Ids with no current version are skipped. Returns how many were archived."""
        ...

    def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        """A new current version copied from the archived one (vector included) and a ``restore``
        event. NotFoundError for an unknown record; ConflictError when it is not archived."""
        ...

    def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        """Hard delete every version, vector, lexical entry, link, utility row, history event and
        logged retrieval that showed or considered these records. Returns how many ids were removed."""
        ...

    def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> list[MemoryRecord]:
        """The latest version of each id that exists (in the order given; unknown ids skipped)."""
        ...

    def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        """Records visible to ``query`` in id order (creation order), ``limit`` per page."""
        ...

    def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page:
        """The latest version of each archived record of ``query``'s scope (and filter), in id order."""
        ...

    def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        """Every event of a record, oldest first, each with the version it produced."""
        ...

    def stats(self, tenant: str | None = None) -> StoreStats: ...

    def export_records(self, tenant: str | None, after: int, limit: int) -> list[tuple[int, MemoryRecord]]:
        """One page of an export: (row key, version with its vector) of up to ``limit`` versions (of
        ``tenant``, or of every tenant for None) whose key is above ``after``, in key order (insertion
        order). A page is its own read: pages read while the store is written may mix states."""
        ...

    def export_events(self, tenant: str | None, after: int, limit: int) -> list[tuple[int, HistoryEvent]]:
        """(sequence number, event) of up to ``limit`` history events numbered above ``after``, in order."""
        ...

    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        """Every version (with embedding), then every history event: :meth:`export_records` then
        :meth:`export_events`, streamed (a sync PostgreSQL store reads them from one snapshot)."""
        ...

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        """Insert exported rows as they are (ids, versions, times kept). One transaction."""
        ...

    def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions whose key is above ``after``, in key order."""
        ...

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        """Overwrite vectors during a re-embed; ``first`` resets the space, ``last`` rebuilds indexes."""
        ...


@runtime_checkable
class Candidates(Protocol):
    """What search reads. Visibility (scope, system time, world time, filter) is the query's."""

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        """Up to ``n`` visible records by cosine similarity to ``vector``, best first."""
        ...

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        """Up to ``n`` visible records by BM25 relevance to ``text``, best first."""
        ...

    def search_candidates(
        self, query: CandidateQuery, n: int, *, vector: np.ndarray | None = None, text: str | None = None
    ) -> CandidatePool:
        """One search's reads: up to ``n`` dense candidates of ``vector`` (when given) and ``n`` lexical
        candidates of ``text`` (when given), each as ``dense_candidates`` / ``lexical_candidates`` would
        return them, with the light row of the version of each that ``query`` sees, looked up by id or
        rowid: the cost does not grow with the store. A backend may check visibility and read the rows in
        one step."""
        ...

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        """The version of each id that ``query`` sees, as full records (ids it cannot see are left out)."""
        ...

    def vectors(self, tenant: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """The current vector of each id that has one (for learners and MMR that compare records)."""
        ...


@runtime_checkable
class RetrievalLog(Protocol):
    """The retrieval log and the feedback transaction."""

    def log_retrieval(self, entry: LogEntry) -> None:
        """Keep a search: query, pool, window and its features, shown list with propensities."""
        ...

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        """A logged retrieval of this tenant, or NotFoundError."""
        ...

    def list_retrievals(
        self,
        tenant: str,
        *,
        since: datetime | None = None,
        limit: int = 1000,
        with_feedback: bool = False,
        latest: bool = False,
    ) -> list[LoggedRetrieval]:
        """Logged retrievals in time order; ``latest``: the newest ``limit`` of them (still oldest first)."""
        ...

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        """Delete logged retrievals created before ``before``; returns how many."""
        ...

    def apply_feedback(self, tenant: str, retrieval_id: str, plan: PlanFn) -> FeedbackPlan:
        """One transaction: load the retrieval and its shown records' utility, call ``plan`` (pure and
        quick), write the feedback and the utilities it returns. When the search trained a learner,
        that learner's feedback count goes up by one (its row is created if needed); the plan comes
        back with the learner's name and count."""
        ...

    def training_log(self, tenant: str, *, limit: int, since: datetime | None = None) -> list[LogRow]:
        """The newest ``limit`` logged searches with feedback (created at or after ``since``), oldest
        first, as learning reads them."""
        ...

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """One transaction: add each delta to the existing records' ``utility.stats`` (unknown ids
        skipped; no lost increments; keys written sorted)."""
        ...


@runtime_checkable
class LearnerStates(Protocol):
    """Each learner's model per tenant. Fitting happens outside any transaction; saving is short."""

    def learner_state(self, tenant: str, name: str) -> StoredLearnerState | None: ...

    def save_learner_state(
        self, tenant: str, name: str, state: dict[str, Any], *, expected_version: int | None
    ) -> int:
        """Write the state if the stored version is still ``expected_version`` (0 or None for a learner
        with no saved model yet; None also skips the check); returns the new version. ConflictError
        when another writer saved first (the caller reloads, and may refit on top)."""
        ...


@runtime_checkable
class Store(Records, Candidates, RetrievalLog, LearnerStates, Protocol):
    """Every concern: what :class:`memq.Memory` runs on."""


@runtime_checkable
class AsyncStore(Protocol):
    """A store whose methods are coroutines (the :class:`Store` methods, awaited)."""

    backend: str
    location: str
    is_async: bool


# The pages an export reads: versions carry a vector each, events are small.
EXPORT_RECORDS_PAGE = 500
EXPORT_EVENTS_PAGE = 5000


def paged_export(store: Records, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
    """Every version, then every event, of a sync store, read a page at a time."""
    pages = (
        (store.export_records, EXPORT_RECORDS_PAGE),
        (store.export_events, EXPORT_EVENTS_PAGE),
    )
    for page_of, size in pages:
        after = 0
        while page := page_of(tenant, after, size):
            after = page[-1][0]
            yield from (item for _, item in page)


def store_methods(cls: type) -> set[str]:
    """The public method names a store class offers (for parity checks)."""
    return {n for n in dir(cls) if not n.startswith("_") and callable(getattr(cls, n, None))}


__all__ = [
    "EXPORT_EVENTS_PAGE",
    "EXPORT_RECORDS_PAGE",
    "AsyncStore",
    "Candidates",
    "LearnerStates",
    "Records",
    "RetrievalLog",
    "Store",
    "paged_export",
    "store_methods",
]
