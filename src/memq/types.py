"""memq's domain model: records, scopes, links, history and retrievals.

Everything that crosses the library boundary is a pydantic v2 model defined here.
The models are deliberately small; behaviour lives in :mod:`memq.memory` and the stores.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memq.ids import new_id

JSON = dict[str, Any]


def utcnow() -> datetime:
    """Timezone-aware UTC now, truncated to microseconds (what both stores keep)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if value.tzinfo is UTC:  # most: memq's own times
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class StrictModel(BaseModel):
    """The base of memq's domain models and of the LLM answer schemas (:mod:`memq.manage.prompts`): a
    field they do not define is an error, not dropped."""

    model_config = ConfigDict(extra="forbid")


class Kind(StrEnum):
    """Built-in record kinds. Any other non-empty lowercase string is accepted too."""

    FACT = "fact"
    EPISODE = "episode"
    EXPERIENCE = "experience"
    NOTE = "note"
    INSIGHT = "insight"


class Scope(StrictModel):
    """Who a record belongs to. ``tenant`` is the isolation boundary; the rest narrow it.

    In a search, a ``None`` field matches any value; a set field must match exactly.
    """

    model_config = ConfigDict(frozen=True)

    tenant: str = Field(min_length=1, max_length=200)
    user: str | None = Field(default=None, max_length=200)
    agent: str | None = Field(default=None, max_length=200)
    session: str | None = Field(default=None, max_length=200)


class Provenance(StrictModel):
    """Where a record came from."""

    source: str | None = None
    source_message_ids: list[str] = Field(default_factory=list)
    parent_ids: list[str] = Field(default_factory=list)


class Link(StrictModel):
    """A typed, directed edge from the record that holds it to ``target``."""

    model_config = ConfigDict(frozen=True)

    target: str
    type: str = Field(default="related", min_length=1, max_length=64)


class Utility(StrictModel):
    """Utility statistics kept by the store and updated by feedback (learning issue)."""

    q: float | None = None
    n_shown: int = 0
    n_used: int = 0
    reward_sum: float = 0.0
    last_feedback_at: datetime | None = None
    stats: dict[str, float] = Field(default_factory=dict)  # a learner's own per-record numbers


class MemoryRecord(StrictModel):
    """One version of one memory.

    ``id`` is stable across versions (a UUIDv7, so ids sort by creation time);
    ``version`` counts from 1. Time is kept on two axes:

    * world time — ``valid_from``/``valid_to``: when the fact held in the world;
      :meth:`memq.Memory.invalidate` sets ``valid_to`` and keeps the record;
    * system time — ``recorded_at``/``expired_at``: when memq believed this version;
      an update stamps ``expired_at`` on the old version and writes version+1.
    """

    id: str = Field(default_factory=new_id)
    version: int = Field(default=1, ge=1)
    scope: Scope
    kind: str = Kind.FACT.value
    text: str
    payload: JSON = Field(default_factory=dict)
    metadata: JSON = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    links: list[Link] = Field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    recorded_at: datetime = Field(default_factory=utcnow)
    expired_at: datetime | None = None
    deleted: bool = False
    embedding_model: str | None = None
    embedding: list[float] | None = Field(default=None, repr=False)
    utility: Utility = Field(default_factory=Utility)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or len(value) > 64:
            raise ValueError("kind must be a non-empty string of at most 64 characters")
        return value

    @field_validator("valid_from", "valid_to", "recorded_at", "expired_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else as_utc(value)

    @property
    def is_current(self) -> bool:
        """True for the latest, not deleted version."""
        return self.expired_at is None and not self.deleted

    def valid_at(self, when: datetime) -> bool:
        when = as_utc(when)
        starts = self.valid_from is None or self.valid_from <= when
        ends = self.valid_to is None or when < self.valid_to
        return starts and ends


class NewRecord(StrictModel):
    """What a caller passes to ``add``: a record before memq assigns id, version and times."""

    text: str
    kind: str = Kind.FACT.value
    payload: JSON = Field(default_factory=dict)
    metadata: JSON = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)
    links: list[Link] = Field(default_factory=list)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    id: str | None = None
    scope: Scope | None = None


class HistoryOp(StrEnum):
    ADD = "add"
    UPDATE = "update"
    INVALIDATE = "invalidate"
    DELETE = "delete"
    IMPORT = "import"
    ARCHIVE = "archive"  # evicted by budgeted forgetting (restorable)
    RESTORE = "restore"  # brought back from the archive


class HistoryEvent(StrictModel):
    """One entry of a record's history: what happened, when, and the version it produced."""

    record_id: str
    op: HistoryOp
    version: int
    at: datetime
    actor: str | None = None
    reason: str | None = None
    record: MemoryRecord | None = None


class SignalScores(StrictModel):
    """Per-signal scores of one hit (``explain=True``). Missing signal = not a candidate there."""

    dense: float | None = None
    dense_rank: int | None = None
    lexical: float | None = None
    lexical_rank: int | None = None
    fused: float = 0.0
    links: float | None = None  # what link spreading added to the fused score
    recency: float | None = None
    base: float | None = None  # the default recipe's final score (fusion, links, recency)
    base_rank: int | None = None  # its rank in the candidate pool
    learned: float | None = None  # the learner's score, when a learner ranked the window
    mmr: float | None = None


class Hit(StrictModel):
    record: MemoryRecord
    score: float
    rank: int
    propensity: float = 1.0  # P(this record is shown) under the policy; 1.0 when deterministic
    explored: bool = False  # shown by exploration (a candidate the serving scorer did not pick)
    signals: SignalScores | None = None


class Retrieval(StrictModel):
    """The result of one ``search``. Its ``id`` is what feedback attaches to."""

    id: str = Field(default_factory=new_id)
    query: str
    scope: Scope
    k: int
    policy: str  # what ranked the hits: the recipe's name (e.g. "hybrid-weighted") or a learner's
    policy_version: str = "1"
    learner: str | None = None  # the learner this search trains (its feedback goes to it), if any
    hits: list[Hit]
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def records(self) -> list[MemoryRecord]:
        return [h.record for h in self.hits]

    @property
    def ids(self) -> list[str]:
        return [h.record.id for h in self.hits]

    def __len__(self) -> int:
        return len(self.hits)


class Page(StrictModel):
    """One page of ``list``. Pass ``next_cursor`` back to get the next page; ``None`` = no more."""

    records: list[MemoryRecord]
    next_cursor: str | None = None


class StoreStats(StrictModel):
    backend: str
    location: str
    records: int
    versions: int
    deleted: int
    invalidated: int
    tenants: int
    embedding_model: str | None
    embedding_dim: int | None
    bytes: int | None = None
    kinds: dict[str, int] = Field(default_factory=dict)


class PoolEntry(StrictModel):
    """One candidate a search considered, with its per-signal scores (retrieval log)."""

    id: str
    dense: float | None = None
    lexical: float | None = None
    score: float | None = None  # the policy's own score, when it has one


class ShownEntry(StrictModel):
    id: str
    rank: int
    score: float
    propensity: float = 1.0
    explored: bool = False


class FeedbackRecord(StrictModel):
    """The feedback given to one retrieval (the latest, and how many were accumulated)."""

    reward: float
    used: list[str] | None = None
    credit: str
    at: datetime
    count: int = 1
    credits: dict[str, float] = Field(default_factory=dict)


class LoggedRetrieval(StrictModel):
    """A search as the retrieval log keeps it: query, candidate pool, what was shown, feedback."""

    id: str
    tenant: str
    query: str
    query_vector: list[float] | None = Field(default=None, repr=False)
    embedding_model: str | None = None
    policy: str
    policy_version: str
    k: int
    pool: list[PoolEntry]
    shown: list[ShownEntry]
    created_at: datetime
    feedback: FeedbackRecord | None = None
    learner: str | None = None  # the learner the search trained (None: the recipe alone)
    # the candidates a learner may rerank (the recipe's top, in its order) and their feature vectors
    # (memq.retrieve.features, set ``feature_set``): what feedback, replay and evaluate learn from
    window: list[str] = Field(default_factory=list)
    feature_set: str | None = None
    features: list[list[float]] | None = Field(default=None, repr=False)
    # the top k of the scorer that did not serve (serving hybrid: the learner's; else the recipe's),
    # as it was at search time: progressive validation for the promotion test
    shadow: list[str] | None = None
