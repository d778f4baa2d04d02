"""The learner protocol: a learner reranks the recipe's top candidates and learns from reward.

Every search goes one way (:mod:`memq.ops.read`): candidates (dense + lexical, links) → the recipe's
score → the *window* (its top candidates, in its order) → one feature vector per candidate
(:mod:`memq.retrieve.features`) → a scorer picks k. The recipe is the default scorer; a learner is a
scorer over the same window and features, plus what it has learned. A learner never touches the store:
it is handed a :class:`Window` to rank, and a :class:`TrainingData` of logged windows with the
reward each shown candidate earned to :meth:`Learner.fit` on. Its global state (model weights) is a
JSON-able dict the store keeps between processes; per-record numbers live in
:class:`memq.types.Utility` (``q``, counters, ``stats``).

Cold start: a learner that has learned nothing ranks the window in the recipe's order, so switching
learning on never changes what a search returns before feedback has taught the learner something.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from memq.retrieve.features import COLUMN
from memq.types import Utility


@dataclass
class Window:
    """The candidates a learner may rerank for one query, in the recipe's order (best first)."""

    ids: list[str]
    x: np.ndarray  # (len(ids), len(features.NAMES)) feature rows
    query_vector: np.ndarray | None = None
    vectors: np.ndarray | None = None  # (len(ids), d) record vectors, for learners that ask for them
    answers: list[str | None] | None = None  # experiences' answers (payload.answer), when known

    def col(self, name: str) -> np.ndarray:
        return self.x[:, COLUMN[name]]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Selection:
    """What a scorer shows: ids in order, each with its probability of being shown."""

    ids: list[str]
    propensities: list[float]
    scores: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingData:
    """Logged windows turned into rows: one row per shown candidate that has a feature vector.

    ``y`` is the credit it earned (0 when it was shown and not credited); ``w`` the importance weight 1 / propensity
    (clipped), so candidates shown by exploration count for the many searches in which they were not
    shown; ``group`` the index of the retrieval (``query_vectors[group]``); ``ids`` the record ids.
    """

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    group: np.ndarray
    ids: list[str]
    query_vectors: list[np.ndarray | None]
    retrievals: int = 0
    vectors: dict[str, np.ndarray] | None = None  # record vectors, for learners that ask for them

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class PoolItem:
    """A stored record as write-time hooks see it (agreement with neighbours, ``on_write``)."""

    id: str
    sim: float
    utility: Utility
    vector: np.ndarray | None = None
    answer: str | None = None


@runtime_checkable
class Learner(Protocol):
    name: str
    needs_vectors: bool  # True: windows carry the records' vectors (memento_q)

    @property
    def version(self) -> str:
        """Changes whenever the model does (logged with every search it ranks)."""
        ...

    @property
    def trained(self) -> bool:
        """False while the learner ranks in the recipe's order (nothing learned yet)."""
        ...

    def score(self, window: Window) -> np.ndarray:
        """A score per window candidate, higher is better; cold: increasing with the recipe's order."""
        ...

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        """Pick up to ``k`` of the window to show (most learners: the top k by :meth:`score`)."""
        ...

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        """A shown record was credited ``credit``: its new ``q`` and ``stats`` (inside the feedback
        transaction, so it must be quick and pure). The caller updates the shared counters."""
        ...

    def fit(self, data: TrainingData) -> None:
        """Learn the global model from logged feedback (outside any transaction)."""
        ...

    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        """A record was written next to ``neighbours``: per-record ``stats`` increments ({} if unused)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first; ties keep the earlier index (the recipe's order)."""
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        part.sort()
    else:
        part = np.arange(len(scores))
    return part[np.argsort(-scores[part], kind="stable")]


def greedy(window: Window, scores: np.ndarray, k: int) -> Selection:
    """The top ``k`` of the window by ``scores`` (deterministic: propensity 1)."""
    order = top_k(scores, k)
    ids = [window.ids[int(i)] for i in order]
    return Selection(
        ids, [1.0] * len(ids), {rid: float(s) for rid, s in zip(window.ids, scores, strict=True)}
    )


def recipe_scores(window: Window) -> np.ndarray:
    """Scores that keep the recipe's order exactly (the window is in that order)."""
    return -np.arange(len(window), dtype=np.float64)


def clipped_z(
    values: np.ndarray, mean: float | None = None, std: float | None = None, clip: float = 3.0
) -> np.ndarray:
    """z-scores clipped to ±clip; with std 0 every z is 0 (the term then drops out)."""
    mu = float(values.mean()) if mean is None else mean
    sd = float(values.std()) if std is None else std
    if sd <= 0 or not np.isfinite(sd):
        return np.zeros_like(values, dtype=np.float64)
    return np.clip((values - mu) / sd, -clip, clip)


class NoRecordState:
    """Mixin for learners that keep nothing per record and nothing at write time."""

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        return utility.q, dict(utility.stats)

    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        return {}


class NoModel:
    """Mixin for learners with no fitted model: fitting does nothing and the saved state is empty."""

    def fit(self, data: TrainingData) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
