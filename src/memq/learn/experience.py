"""Experience records for agent loops (MemRL §2.3; Memento's cases)."""

from __future__ import annotations

import math
from typing import Any

from memq.errors import InvalidInputError

TASK_KEY_SIMILARITY = 0.9  # MemRL attaches a new memory to an existing task key at cosine ≥ 0.9


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
