"""The values that cross the store boundary: queries, candidates, write batches, log entries.

The store contract itself (four protocols, one per concern) is in :mod:`memq.store.contract`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from memq.errors import InvalidInputError
from memq.retrieve.filters import Node
from memq.types import (
    FeedbackRecord,
    HistoryOp,
    LoggedRetrieval,
    MemoryRecord,
    Retrieval,
    Scope,
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


class EventRow(NamedTuple):
    """A history event as both backends write it: the columns of their ``events`` table, in order."""

    tenant: str
    record_id: str
    op: HistoryOp
    version: int
    at: datetime
    actor: str | None
    reason: str | None


@dataclass(frozen=True)
class VersionChange:
    """A new version of an existing record, applied by :meth:`Store.write_version`."""

    tenant: str
    record_id: str
    new: MemoryRecord  # version, recorded_at already set by the caller
    op: HistoryOp
    actor: str | None = None
    reason: str | None = None

    @property
    def event(self) -> EventRow:
        """The history event the change writes."""
        return EventRow(
            self.tenant,
            self.record_id,
            self.op,
            self.new.version,
            self.new.recorded_at,
            self.actor,
            self.reason,
        )


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


@dataclass(slots=True)
class CandidateRow:
    """What ranking needs of one candidate, read without building the whole record.

    ``links`` are the targets of the record's links; the utility fields are those of
    :class:`memq.types.Utility`. Records are built (:meth:`Candidates.visible`) for the shown k only.
    Read-only by convention, not frozen: a search builds a hundred of these, and a frozen
    dataclass's ``__init__`` costs three times as much.
    """

    id: str
    kind: str
    text: str
    links: tuple[str, ...]
    valid_from: datetime | None
    recorded_at: datetime
    q: float | None = None
    n_shown: int = 0
    n_used: int = 0
    reward_sum: float = 0.0
    stats: Mapping[str, float] = field(default_factory=dict)
    metadata: Mapping[str, Any] | str | None = None  # as the backend returns it (JSON text is parsed lazily)


@dataclass(frozen=True)
class CandidatePool:
    """What one search reads (:meth:`Candidates.search_candidates`): each signal's visible candidates,
    best first, and the light row of every one of them."""

    signals: dict[str, list[Candidate]]
    rows: dict[str, CandidateRow]


# the columns of LogEntry.pool_scores: the fields of memq.types.PoolEntry after its id
POOL_SCORES = ("dense", "lexical", "score")


@dataclass(frozen=True)
class LogEntry:
    """One search as the retrieval log keeps it (:meth:`RetrievalLog.log_retrieval`).

    ``window``: the candidates a learner may rerank, in the recipe's order; ``features``: one row per
    window id (float32, columns named by the feature set ``feature_set``); ``shadow``: the top k of
    the scorer that did not serve, as it was at search time. ``pool``: the id of every candidate the
    recipe ranked, and ``pool_scores`` their :data:`POOL_SCORES` (float32, NaN where a signal did not
    score one): packed, because a search logs a hundred of them (:class:`memq.types.PoolEntry` is how
    the log reads them back).
    """

    retrieval: Retrieval
    pool: Sequence[str] = ()
    pool_scores: np.ndarray | None = None  # (len(pool), len(POOL_SCORES))
    query_vector: np.ndarray | None = None
    embedding_model: str | None = None
    window: Sequence[str] = ()
    features: np.ndarray | None = None
    feature_set: str | None = None
    shadow: Sequence[str] | None = None


@dataclass(frozen=True, slots=True)
class LogRow:
    """A logged search with feedback as learning reads it (:meth:`RetrievalLog.training_log`):
    what was served and what it earned, without the candidate pool."""

    id: str
    learner: str | None
    k: int
    window: tuple[str, ...]
    features: np.ndarray | None  # (len(window), F) float32, columns of ``feature_set``
    feature_set: str | None
    shown: tuple[tuple[str, float, bool], ...]  # (id, propensity, explored), in rank order
    credits: Mapping[str, float]
    reward: float
    query_vector: np.ndarray | None
    shadow: tuple[str, ...] | None


@dataclass
class FeedbackPlan:
    """What one feedback writes, computed inside the store's transaction by a ``PlanFn``."""

    feedback: FeedbackRecord
    utilities: dict[str, Utility]  # the new utility of each shown record
    # filled by the store: the learner the search trained (from the log) and how many feedbacks it
    # has counted, this one included (it refits every so many, outside the transaction)
    learner: str | None = None
    learner_feedbacks: int | None = None


@dataclass(frozen=True)
class StoredLearnerState:
    """A learner's stored state: its model (JSON), a version that every save increments (saves are
    checked against it, so two processes never overwrite each other's fit unknowingly), and how many
    feedbacks it has counted in all and when it was last fitted (counted then)."""

    state: dict[str, Any]
    version: int
    feedbacks: int
    updated_at: datetime


# (the logged retrieval — its shown list, feedback, learner and time; the pool is not read — and the
# current utility of each shown record) -> the plan
PlanFn = Callable[[LoggedRetrieval, dict[str, Utility]], FeedbackPlan]
