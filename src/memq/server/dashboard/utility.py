"""A record's utility (q) over time, rebuilt from the retrieval log.

The store keeps only a record's current :class:`~memq.types.Utility`; every feedback, though, stays
in the retrieval log with the credit each shown record got (``FeedbackRecord.credits``). Replaying
those credits in feedback order through the same per-record update rule that
:func:`memq.learn.feedback.plan_feedback` applied (the logged policy's learner, or MemRL's rule for
the hybrid recipe) gives q after each feedback. Where the log no longer explains the current value
(pruned log entries, an import, learner parameters changed since), ``matches_current`` is False and
the dashboard shows the stored value beside the rebuilt series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from pydantic import BaseModel

from memq.learn import LEARNERS, Learner
from memq.learn.feedback import DEFAULT_UPDATER
from memq.types import LoggedRetrieval, MemoryRecord, Utility

TOLERANCE = 1e-9


class UtilityPoint(BaseModel):
    """The record's state right after one feedback on a retrieval that showed it."""

    at: datetime
    retrieval_id: str
    policy: str
    reward: float
    credit: float | None  # None: shown but not credited (credit "used" without this record)
    q: float | None
    n_shown: int
    count: int = 1  # >1: several feedbacks accumulated on this retrieval (the log keeps their sum)


class UtilitySeries(BaseModel):
    record_id: str
    current: Utility
    points: list[UtilityPoint]
    matches_current: bool


def q_series(
    record: MemoryRecord, logs: Iterable[LoggedRetrieval], learner_for: Callable[[str], Learner]
) -> UtilitySeries:
    """Replay the feedback of ``logs`` that showed ``record``, oldest feedback first."""
    mine = [log for log in logs if log.feedback is not None and any(s.id == record.id for s in log.shown)]
    mine.sort(key=lambda log: (log.feedback.at, log.id))  # type: ignore[union-attr]
    updaters: dict[str, Learner] = {}
    u = Utility()
    points: list[UtilityPoint] = []
    for log in mine:
        fb = log.feedback
        assert fb is not None
        rule = log.learner if log.learner in LEARNERS else None  # whose per-record rule the feedback ran
        key = rule or "-"
        if key not in updaters:
            updaters[key] = learner_for(rule) if rule is not None else DEFAULT_UPDATER
        credit = fb.credits.get(record.id)
        q, stats = updaters[key].update_record(u, credit) if credit is not None else (u.q, u.stats)
        u = Utility(
            q=q,
            n_shown=u.n_shown + 1,
            n_used=u.n_used + int(record.id in (fb.used or [])),
            reward_sum=u.reward_sum + (credit or 0.0),
            last_feedback_at=fb.at if credit is not None else u.last_feedback_at,
            stats=dict(stats),
        )
        points.append(
            UtilityPoint(
                at=fb.at,
                retrieval_id=log.id,
                policy=log.learner or log.policy,
                reward=fb.reward,
                credit=credit,
                q=q,
                n_shown=u.n_shown,
                count=fb.count,
            )
        )
    current = record.utility
    same_q = (u.q is None and current.q is None) or (
        u.q is not None and current.q is not None and abs(u.q - current.q) <= TOLERANCE
    )
    return UtilitySeries(
        record_id=record.id,
        current=current,
        points=points,
        matches_current=same_q and u.n_shown == current.n_shown,
    )
