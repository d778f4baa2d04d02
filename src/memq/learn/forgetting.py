"""Budgeted forgetting: which records to archive when a scope holds more than its capacity.

Pure functions over records and their utility statistics (no I/O); :meth:`memq.Memory.forget`
reads the scope, calls :func:`select_evictions` and archives what it returns. The formula is
documented in ``docs/algorithms.md`` ("Budgeted forgetting").

For a record with utility ``u`` (``n`` = ``u.n_used`` when the record was ever credited as used,
else ``u.n_shown``: credited uses are the better evidence, shows are the fallback for stores
whose feedback never names the used records):

* ``mean = (u.reward_sum + 1) / (n + 2)`` — the Beta(1, 1)-smoothed mean reward;
* ``uncertainty = sqrt(mean * (1 - mean) / (n + 3))`` — its posterior standard deviation;
* ``recency = 0.5 ** (age_days / half_life_days)``, age from ``u.last_feedback_at``, else from
  the version's ``recorded_at``;
* ``usage = log1p(u.n_used) / log1p(max n_used in the scope)`` (0 when nothing was used);
* ``keep = mean + w_uncertainty * uncertainty + w_recency * recency + w_usage * usage``.

The records with the lowest ``keep`` are evicted until the scope is at capacity; ties go to the
oldest id (ids are UUIDv7, so they sort by creation time). The uncertainty bonus protects new
records that have not had a chance to be shown yet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from memq.types import MemoryRecord, Utility, as_utc, utcnow

DAY_SECONDS = 86_400.0


class ForgettingPolicy(BaseModel):
    """The weights of the keep score (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    w_uncertainty: float = Field(default=1.0, ge=0.0)
    w_recency: float = Field(default=0.5, ge=0.0)
    w_usage: float = Field(default=0.25, ge=0.0)
    half_life_days: float = Field(default=30.0, gt=0.0)


def credited(u: Utility) -> int:
    """The number of observations the mean rests on: credited uses, else shows."""
    return u.n_used if u.n_used else u.n_shown


def keep_score(
    u: Utility,
    recorded_at: datetime,
    *,
    max_used: int,
    now: datetime,
    policy: ForgettingPolicy | None = None,
) -> float:
    """The keep score of one record (higher = kept longer)."""
    policy = policy or ForgettingPolicy()
    n = credited(u)
    mean = (u.reward_sum + 1.0) / (n + 2.0)
    uncertainty = math.sqrt(max(mean * (1.0 - mean), 0.0) / (n + 3.0))
    since = as_utc(u.last_feedback_at or recorded_at)
    age_days = max((as_utc(now) - since).total_seconds(), 0.0) / DAY_SECONDS
    recency = 0.5 ** (age_days / policy.half_life_days)
    usage = math.log1p(u.n_used) / math.log1p(max_used) if max_used > 0 else 0.0
    return mean + policy.w_uncertainty * uncertainty + policy.w_recency * recency + policy.w_usage * usage


def keep_scores(
    records: Sequence[MemoryRecord], *, now: datetime | None = None, policy: ForgettingPolicy | None = None
) -> dict[str, float]:
    """The keep score of each record, the usage term normalised over these records."""
    now = now or utcnow()
    max_used = max((r.utility.n_used for r in records), default=0)
    return {
        r.id: keep_score(r.utility, r.recorded_at, max_used=max_used, now=now, policy=policy) for r in records
    }


def select_evictions(
    records: Sequence[MemoryRecord],
    capacity: int,
    *,
    now: datetime | None = None,
    policy: ForgettingPolicy | None = None,
) -> list[str]:
    """The ids to evict so that ``capacity`` of ``records`` remain: lowest keep first, ties oldest id."""
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    excess = len(records) - capacity
    if excess <= 0:
        return []
    scores = keep_scores(records, now=now, policy=policy)
    order = sorted(scores, key=lambda rid: (scores[rid], rid))
    return order[:excess]
