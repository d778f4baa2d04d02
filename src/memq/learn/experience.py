"""Experience records for agent loops (MemRL §2.3; Memento's cases)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from memq.errors import InvalidInputError
from memq.learn.base import Learner, PoolItem
from memq.store.base import Candidate
from memq.types import MemoryRecord

TASK_KEY_SIMILARITY = 0.9  # MemRL attaches a new memory to an existing task key at cosine ≥ 0.9
NEIGHBOURS = 16  # nearest stored experiences whose answers a new experience is compared with


def experience_payload(
    task: str, answer: str, outcome: str, reward: float, trajectory: Any, task_key: str | None
) -> dict[str, Any]:
    """The payload of an ``experience`` record; ``answer`` is what the ``memq`` learner compares."""
    if not isinstance(answer, str) or not answer.strip():
        raise InvalidInputError("an experience needs a non-empty answer or plan")
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise InvalidInputError(f"reward must be a finite number, got {reward!r}")
    payload: dict[str, Any] = {"task": task, "answer": answer, "outcome": outcome, "reward": float(reward)}
    if trajectory is not None:
        payload["trajectory"] = trajectory
    if task_key is not None:
        payload["task_key"] = task_key
    return payload


def answer_of(record: MemoryRecord) -> str | None:
    value = record.payload.get("answer")
    return None if value is None else str(value)


def agreement_deltas(
    learner: Learner,
    record: MemoryRecord,
    nearest: Sequence[Candidate],
    neighbours: Mapping[str, MemoryRecord],
) -> dict[str, dict[str, float]]:
    """Per-record stats increments when ``record`` joins its nearest stored experiences (``on_write``)."""
    items = [
        PoolItem(c.id, c.score, neighbours[c.id].utility, answer=answer_of(neighbours[c.id]))
        for c in nearest
        if c.id in neighbours and c.id != record.id
    ]
    return learner.on_write(PoolItem(record.id, 1.0, record.utility, answer=answer_of(record)), items)
