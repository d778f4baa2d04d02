"""Feedback planning: one reward on one logged retrieval → credits and the shown records' new utility.

Pure and quick: the store calls :func:`plan_feedback` inside its transaction with the logged retrieval
and the shown records' current utility, and writes what it returns. A learner's global model is fit
later, outside the transaction, from the log (:mod:`memq.ops.learning`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from memq.errors import ConflictError, ExpiredError, InvalidInputError
from memq.learn.base import Learner
from memq.learn.credit import CREDIT_STRATEGIES, assign_credit
from memq.learn.memrl import MemRLLearner
from memq.store.base import FeedbackPlan
from memq.types import FeedbackRecord, LoggedRetrieval, Utility

# searches that trained no learner (the recipe alone) still keep q up to date with MemRL's rule
DEFAULT_UPDATER = MemRLLearner()


def check_feedback_args(reward: float, used: Sequence[str] | None, credit: str | None) -> str:
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not np.isfinite(reward):
        raise InvalidInputError(f"reward must be a finite number, got {reward!r}")
    strategy = credit or ("used" if used is not None else "shown")
    if strategy not in CREDIT_STRATEGIES:
        raise InvalidInputError(
            f"unknown credit strategy {strategy!r}; use one of {', '.join(CREDIT_STRATEGIES)}"
        )
    return strategy


def plan_feedback(
    logged: LoggedRetrieval,
    current: Mapping[str, Utility],
    *,
    reward: float,
    used: Sequence[str] | None,
    strategy: str,
    accumulate: bool,
    now: datetime,
    window_days: float,
    learner: Learner | None,
) -> FeedbackPlan:
    if logged.feedback is not None and not accumulate:
        raise ConflictError(
            f"retrieval {logged.id} already has feedback (reward {logged.feedback.reward}); "
            "pass accumulate=True to add more"
        )
    if now - logged.created_at > timedelta(days=window_days):
        raise ExpiredError(
            f"retrieval {logged.id} is older than the feedback window of {window_days:g} days; "
            "feedback on it is refused"
        )
    shown = [s.id for s in logged.shown]
    credits = assign_credit(shown, float(reward), strategy=strategy, used=used)
    used_set = set(used or [])
    updater = learner or DEFAULT_UPDATER
    utilities: dict[str, Utility] = {}
    for rid in shown:
        u = current.get(rid, Utility())
        q, stats = updater.update_record(u, credits[rid]) if rid in credits else (u.q, dict(u.stats))
        utilities[rid] = Utility(
            q=q,
            n_shown=u.n_shown + 1,
            n_used=u.n_used + (rid in used_set),
            reward_sum=u.reward_sum + credits.get(rid, 0.0),
            last_feedback_at=now if rid in credits else u.last_feedback_at,
            stats=stats,
        )
    previous = logged.feedback
    if previous is None:
        record = FeedbackRecord(
            reward=float(reward),
            used=None if used is None else sorted(used_set),
            credit=strategy,
            at=now,
            credits=credits,
        )
    else:
        all_used = (
            None if used is None and previous.used is None else sorted(used_set | set(previous.used or []))
        )
        record = FeedbackRecord(
            reward=previous.reward + float(reward),
            used=all_used,
            credit=strategy,
            at=now,
            count=previous.count + 1,
            credits={r: credits.get(r, 0.0) + previous.credits.get(r, 0.0) for r in shown},
        )
    return FeedbackPlan(feedback=record, utilities=utilities)
