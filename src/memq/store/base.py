"""The store protocol: what a backend must do for :class:`memq.Memory`.

A store keeps record *versions* (rows keyed by ``(id, version)``), their vectors, a lexical
index, the history log, links, utility statistics and the retrieval log. Every write method is
one transaction: it either happens whole or not at all.

Two implementations pass the same test suite: :mod:`memq.store.sqlite` (embedded default) and
:mod:`memq.store.postgres` (PostgreSQL + pgvector; also natively async).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

import numpy as np

from memq.errors import InvalidInputError
from memq.retrieve.filters import Node
from memq.types import (
    FeedbackRecord,
    HistoryEvent,
    HistoryOp,
    LoggedRetrieval,
    MemoryRecord,
    Page,
    PoolEntry,
    Retrieval,
    Scope,
    StoreStats,
    Utility,
)


def merge_stats(stats: Mapping[str, float], delta: Mapping[str, float]) -> dict[str, float]:
    """``stats`` plus ``delta`` name by name (a missing name counts as 0.0), keys sorted.

    The stores' ``add_stats`` write this: sorted keys keep the stored JSON, and so an export, the
    same whatever order the increments came in and on either backend.
    """
    out = {name: float(value) for name, value in stats.items()}
    for name, value in delta.items():
        out[name] = out.get(name, 0.0) + float(value)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class CandidateQuery:
    """Which record versions a search or list may see.

    * ``scope``: the tenant must match; user/agent/session match when set.
    * ``as_of``: system time. ``None`` = current versions only (not expired, not deleted);
      a time = the versions memq held at that instant (deleted records included if they
      were alive then).
    * ``valid_at``: world time. ``None`` = records not invalidated as of now (``valid_to`` unset
      or in the future); a time = records whose ``[valid_from, valid_to)`` contains it.
    * ``include_invalidated``: drop the world-time condition entirely.
    * ``filter``: a parsed filter (:mod:`memq.retrieve.filters`).
    """

    scope: Scope
    filter: Node | None = None
    as_of: datetime | None = None
    valid_at: datetime | None = None
    include_invalidated: bool = False


@dataclass(frozen=True)
class Candidate:
    """A record id a signal proposes, with that signal's raw score (higher is better)."""

    id: str
    score: float


@dataclass(frozen=True)
class VersionChange:
    """A new version of an existing record, applied by :meth:`Store.write_version`."""

    tenant: str
    record_id: str
    new: MemoryRecord  # version, recorded_at already set by the caller
    op: HistoryOp
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class InsertGroup:
    """New records written as :meth:`Store.insert` writes them, with one history op/actor/reason."""

    records: Sequence[MemoryRecord]
    op: HistoryOp = HistoryOp.ADD
    actor: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class WriteBatch:
    """A whole write plan of one tenant, applied by :meth:`Store.apply_writes` in ONE transaction.

    In this order: each insert group (as :meth:`Store.insert`), each version change (as
    :meth:`Store.write_version`, with its checks: several changes of one record are consecutive
    versions), then ``stats`` (as :meth:`Store.add_stats`, so they may name records inserted here).
    """

    tenant: str
    inserts: Sequence[InsertGroup] = ()
    versions: Sequence[VersionChange] = ()
    stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        others = {r.scope.tenant for g in self.inserts for r in g.records} | {v.tenant for v in self.versions}
        others.discard(self.tenant)
        if others:
            raise InvalidInputError(
                f"a write batch is one tenant's ({self.tenant!r}); it also names {sorted(others)}"
            )

    @property
    def records(self) -> list[MemoryRecord]:
        """Every row the batch writes: the inserted records, then the new versions."""
        return [r for g in self.inserts for r in g.records] + [v.new for v in self.versions]

    @property
    def empty(self) -> bool:
        return not (self.records or self.stats)


@dataclass
class FeedbackPlan:
    """What one feedback writes, computed inside the store's transaction by a ``PlanFn``."""

    feedback: FeedbackRecord
    utilities: dict[str, Utility]  # the new utility of each shown record
    learner_state: tuple[str, dict] | None = None  # (learner name, state) to persist
    # filled by the store when ``apply_feedback`` was given a learner: the ``updated_at`` of that
    # learner's stored state after the transaction (the one it wrote, else the one it read; None: no row)
    learner_stamp: datetime | None = None


@dataclass
class StoredLearnerState:
    """A learner's stored state as ``apply_feedback`` found it, under the row's lock.

    ``state`` is None when ``updated_at`` equals the caller's ``known_stamp`` (the caller's copy is
    current, so the JSON was not read).
    """

    state: dict | None
    updated_at: datetime


# (the logged retrieval, the current utility of each shown record, the stored learner state or None
# when no learner was named or it has no stored state yet) -> the plan
PlanFn = Callable[[LoggedRetrieval, dict[str, Utility], StoredLearnerState | None], FeedbackPlan]


@runtime_checkable
class Store(Protocol):
    backend: str
    location: str

    def close(self) -> None: ...

    # -- embedding space -----------------------------------------------------------------
    def embedding_space(self) -> tuple[str, int] | None:
        """(model_id, dim) of the vectors in the store, or None while it holds none."""
        ...

    def set_embedding_space(self, model_id: str, dim: int) -> None:
        """Record the space on first use; raise DimensionMismatchError if another is set."""
        ...

    # -- writes (each call is one transaction) ----------------------------------------------
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

        Raises NotFoundError if the record has no current version (unknown or deleted) and
        ConflictError if ``change.new.version`` is not current version + 1 (a concurrent write).
        """
        ...

    def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """Apply a whole write plan in ONE transaction: ``batch.inserts`` (each group as :meth:`insert`),
        ``batch.versions`` (each as :meth:`write_version`) and ``batch.stats`` (as :meth:`add_stats`).

        Any failure (ConflictError for an id that exists or a version that is no longer current,
        NotFoundError for a record with no current version, DimensionMismatchError, a lost connection)
        rolls back the whole batch: nothing of it is written, and the vector index keeps matching the
        rows. Returns the new versions written, in ``batch.versions`` order.
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
        """Archive records (budgeted forgetting), all in one transaction: like :meth:`delete`, the
        current version is expired and flagged deleted, but the event is ``archive``, so the record
        is listed by :meth:`list_archived` and can be restored. Ids with no current version are
        skipped. Returns how many records were archived."""
        ...

    def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord:
        """Bring an archived record back, in one transaction: a new current version copied from the
        archived one (version + 1, new ``recorded_at``, vector included) and a ``restore`` event.

        NotFoundError for an unknown record; ConflictError when its latest event is not ``archive``.
        """
        ...

    def purge(self, tenant: str, record_ids: Sequence[str]) -> int:
        """Hard delete every version, vector, lexical entry, link, utility row and history event.

        Returns how many records (ids) were removed.
        """
        ...

    def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None:
        """Keep a search in the retrieval log: query, candidate pool, shown list, propensities."""
        ...

    def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval:
        """A logged retrieval of this tenant, or NotFoundError."""
        ...

    def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]:
        """Logged retrievals in time order (for replay and evaluation)."""
        ...

    def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int:
        """Delete logged retrievals created before ``before``; returns how many."""
        ...

    def apply_feedback(
        self,
        tenant: str,
        retrieval_id: str,
        plan: PlanFn,
        *,
        learner: str | None = None,
        known_stamp: datetime | None = None,
    ) -> FeedbackPlan:
        """One transaction: load the retrieval and its shown records' utility, call ``plan``,
        write the feedback, the utilities and the learner state it returns.

        With ``learner``, that learner's stored state row is locked before ``plan`` runs, so
        concurrent feedbacks (any instance, any process) update it one after the other, and
        ``plan`` gets it as a :class:`StoredLearnerState` (its JSON only when ``updated_at``
        differs from ``known_stamp``). The returned plan's ``learner_stamp`` is the row's
        ``updated_at`` after the transaction.
        """
        ...

    def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """One transaction: for each record id in ``deltas`` that exists in ``tenant``, add each
        delta to the record's ``utility.stats[name]`` (a missing name counts as 0.0).

        A record with no utility row yet gets one with the default counters; ids that do not exist
        in the tenant (unknown, purged, another tenant's) are skipped. Concurrent calls lose no
        increment. The stats are written with their keys sorted, so exports stay byte-stable.
        """
        ...

    def learner_state(self, tenant: str, name: str) -> dict | None: ...

    def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict, datetime] | None:
        """The learner's stored state and its ``updated_at`` (the stamp ``apply_feedback`` compares)."""
        ...

    def save_learner_state(self, tenant: str, name: str, state: dict) -> datetime:
        """Write the learner's state; returns its new ``updated_at``."""
        ...

    # -- reads ------------------------------------------------------------------------------
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
        """The latest version of each record of ``query``'s scope (and filter) whose latest event
        is ``archive``, in id order; ``as_of``/``valid_at`` are ignored."""
        ...

    def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]:
        """The version of each id that ``query`` sees (ids it cannot see are left out)."""
        ...

    def history(self, tenant: str, record_id: str) -> list[HistoryEvent]:
        """Every event of a record, oldest first, each with the version it produced."""
        ...

    def dense_candidates(self, query: CandidateQuery, vector: np.ndarray, n: int) -> list[Candidate]:
        """Up to ``n`` visible records by cosine similarity to ``vector``, best first."""
        ...

    def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]:
        """Up to ``n`` visible records by lexical relevance (BM25 or the backend's equivalent)."""
        ...

    def export_rows(self, tenant: str | None) -> Iterator[MemoryRecord | HistoryEvent]:
        """Every version (with embedding) and every history event, for JSONL export."""
        ...

    def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int:
        """Insert exported rows as they are (ids, versions, times kept). One transaction."""
        ...

    def embeddable(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(row key, text) of up to ``limit`` versions whose key is above ``after``, in key order
        (page through every version for re-embedding)."""
        ...

    def replace_embeddings(
        self, model_id: str, dim: int, rows: Sequence[tuple[int, np.ndarray]], *, first: bool, last: bool
    ) -> None:
        """Overwrite vectors during a re-embed; ``first`` resets the space, ``last`` rebuilds indexes."""
        ...

    def stats(self, tenant: str | None = None) -> StoreStats: ...


@runtime_checkable
class AsyncStore(Protocol):
    """The same contract as :class:`Store`, with coroutines (PostgreSQL natively async)."""

    backend: str
    location: str

    async def close(self) -> None: ...
    async def embedding_space(self) -> tuple[str, int] | None: ...
    async def set_embedding_space(self, model_id: str, dim: int) -> None: ...
    async def insert(
        self,
        records: Sequence[MemoryRecord],
        *,
        op: HistoryOp = HistoryOp.ADD,
        actor: str | None = None,
        reason: str | None = None,
    ) -> None: ...
    async def write_version(self, change: VersionChange) -> MemoryRecord: ...
    async def apply_writes(self, batch: WriteBatch) -> list[MemoryRecord]:
        """As :meth:`Store.apply_writes`: the whole batch in one transaction, or nothing."""
        ...

    async def delete(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> None: ...
    async def purge(self, tenant: str, record_ids: Sequence[str]) -> int: ...
    async def archive(
        self, tenant: str, record_ids: Sequence[str], *, reason: str | None = None, actor: str | None = None
    ) -> int: ...
    async def restore(
        self, tenant: str, record_id: str, *, actor: str | None = None, reason: str | None = None
    ) -> MemoryRecord: ...
    async def list_archived(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page: ...
    async def log_retrieval(
        self,
        retrieval: Retrieval,
        *,
        pool: Sequence[PoolEntry] = (),
        query_vector: np.ndarray | None = None,
        embedding_model: str | None = None,
    ) -> None: ...
    async def get_retrieval(self, tenant: str, retrieval_id: str) -> LoggedRetrieval: ...
    async def list_retrievals(
        self, tenant: str, *, since: datetime | None = None, limit: int = 1000, with_feedback: bool = False
    ) -> list[LoggedRetrieval]: ...
    async def prune_retrievals(self, before: datetime, tenant: str | None = None) -> int: ...
    async def apply_feedback(
        self,
        tenant: str,
        retrieval_id: str,
        plan: PlanFn,
        *,
        learner: str | None = None,
        known_stamp: datetime | None = None,
    ) -> FeedbackPlan:
        """As :meth:`Store.apply_feedback`; ``plan`` is a plain (sync) callable, called inside the
        transaction (on the event loop for a native async store, on the worker thread otherwise)."""
        ...

    async def add_stats(self, tenant: str, deltas: Mapping[str, Mapping[str, float]]) -> None:
        """As :meth:`Store.add_stats`: one transaction, skipped unknown ids, no lost increments."""
        ...

    async def learner_state(self, tenant: str, name: str) -> dict | None: ...
    async def learner_state_stamped(self, tenant: str, name: str) -> tuple[dict, datetime] | None: ...
    async def save_learner_state(self, tenant: str, name: str, state: dict) -> datetime: ...
    async def get(
        self,
        tenant: str,
        ids: Sequence[str],
        *,
        include_deleted: bool = False,
        with_embedding: bool = False,
    ) -> list[MemoryRecord]: ...
    async def list(self, query: CandidateQuery, *, cursor: str | None, limit: int) -> Page: ...
    async def visible(
        self, query: CandidateQuery, ids: Sequence[str], *, with_embedding: bool = False
    ) -> dict[str, MemoryRecord]: ...
    async def history(self, tenant: str, record_id: str) -> list[HistoryEvent]: ...
    async def dense_candidates(
        self, query: CandidateQuery, vector: np.ndarray, n: int
    ) -> list[Candidate]: ...
    async def lexical_candidates(self, query: CandidateQuery, text: str, n: int) -> list[Candidate]: ...
    async def stats(self, tenant: str | None = None) -> StoreStats: ...
    async def export_rows(self, tenant: str | None) -> list[MemoryRecord | HistoryEvent]: ...
    async def import_rows(self, rows: Sequence[MemoryRecord | HistoryEvent]) -> int: ...
