"""Credit assignment: how one retrieval's reward is shared among the records it showed.

* ``shown`` — every shown record gets the reward (MemRL and Memento do this).
* ``used`` — only the records the agent says it followed (cited, acted on) get it; the others were
  shown but are not credited. Needs ``used``.
* ``rank`` — position-discounted: the record at rank i (from 1) gets r / log2(i + 1), as in DCG.

Reward conventions: 1/0 (success/failure) is the default scale; ±1 and graded rewards in between
work too, but keep one scale per store (Q ranges depend on it) and tell the ``memq`` learner the
range (``reward_range``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from memq.errors import InvalidInputError

CREDIT_STRATEGIES = ("shown", "used", "rank")


def assign_credit(
    shown: Sequence[str], reward: float, *, strategy: str = "shown", used: Iterable[str] | None = None
) -> dict[str, float]:
    """Reward credited to each shown id (ids that get no credit are absent)."""
    if not math.isfinite(reward):
        raise InvalidInputError(f"reward must be a finite number, got {reward!r}")
    if strategy == "shown":
        return {rid: reward for rid in shown}
    if strategy == "used":
        if used is None:
            raise InvalidInputError("credit strategy 'used' needs the ids the agent used (used=[...])")
        followed = set(used)
        unknown = followed - set(shown)
        if unknown:
            raise InvalidInputError(f"used ids {sorted(unknown)} were not shown by this retrieval")
        return {rid: reward for rid in shown if rid in followed}
    if strategy == "rank":
        return {rid: reward / math.log2(i + 1) for i, rid in enumerate(shown, start=1)}
    raise InvalidInputError(
        f"unknown credit strategy {strategy!r}; use one of {', '.join(CREDIT_STRATEGIES)}"
    )
