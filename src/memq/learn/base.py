"""The learner protocol: how a retrieval policy picks what to show, and learns from reward.

A learner never touches the store. The caller builds a *pool* of candidates (the records dense
retrieval proposes, with their utility statistics), asks the learner to ``select`` k of them, and
later hands it the ``Outcome`` of that retrieval. The same classes serve :class:`memq.Memory` and the
test-time-learning stream benchmark, which keeps memory in arrays for speed.

Per-record state lives in :class:`memq.types.Utility` (``q`` and the counters, plus ``stats`` for a
learner's own per-record numbers); a learner's global state (model weights) is a JSON-able dict
from ``state_dict`` that the store keeps between processes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memq.types import Utility


@dataclass
class PoolItem:
    """One candidate of one query."""

    id: str
    sim: float  # cosine similarity to the query
    utility: Utility
    vector: np.ndarray | None = None  # the record's embedding (for learners that need it)
    answer: str | None = None  # the answer/plan of an experience record (payload["answer"])


@dataclass
class Selection:
    """What a learner shows: ids in order, each with its probability of being shown."""

    ids: list[str]
    propensities: list[float]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class Outcome:
    """The feedback on one retrieval, as a learner sees it."""

    query_vector: np.ndarray
    pool: list[PoolItem]
    shown: list[str]
    used: set[str]
    reward: float
    credits: dict[str, float]  # reward credited to each shown id by the credit strategy


@runtime_checkable
class Learner(Protocol):
    name: str
    version: str

    def select(
        self, query_vector: np.ndarray, pool: Sequence[PoolItem], k: int, rng: np.random.Generator
    ) -> Selection:
        """Pick up to ``k`` of ``pool`` to show."""
        ...

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        """A shown record was credited ``credit``: its new ``q`` and its new ``stats``.

        ``utility`` is the record's state before this feedback. The caller updates the shared
        counters (n_shown, n_used, reward_sum, last_feedback_at) itself.
        """
        ...

    def observe(self, outcome: Outcome) -> None:
        """Learn from one feedback (global model state; per-record q is handled by ``update_q``)."""
        ...

    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        """A record was written; ``neighbours`` are its nearest stored records (sim to it).

        Returns per-record ``stats`` increments to persist (id → {name: delta}); {} when unused.
        """
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties keep the earlier index."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        part.sort()
    else:
        part = np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]


def clipped_z(
    values: np.ndarray, mean: float | None = None, std: float | None = None, clip: float = 3.0
) -> np.ndarray:
    """z-scores clipped to ±clip; with std 0 every z is 0 (the term then drops out)."""
    mu = float(values.mean()) if mean is None else mean
    sd = float(values.std()) if std is None else std
    if sd <= 0 or not np.isfinite(sd):
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - mu) / sd, -clip, clip)


class NoState:
    """Mixin for learners without global state or write-time work."""

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        return utility.q, dict(utility.stats)

    def observe(self, outcome: Outcome) -> None:
        return None

    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
