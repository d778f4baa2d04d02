"""Learning operations: feedback, replay, evaluate, pruning the retrieval log, and the learners' cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import numpy as np

from memq.errors import InvalidInputError
from memq.learn import LEARNERS, Learner, make_learner
from memq.learn.experience import agreement_deltas
from memq.learn.feedback import check_feedback_args, plan_feedback
from memq.learn.replay import OffPolicyEstimate, ips_estimate, learner_policy, retrain
from memq.ops.core import Core
from memq.ops.runner import Op, db, work
from memq.store.base import Candidate, FeedbackPlan, InsertGroup, PlanFn, StoredLearnerState, WriteBatch
from memq.types import FeedbackRecord, LoggedRetrieval, MemoryRecord, Utility, utcnow
from memq.validate import ScopeLike


def check_policy(name: str) -> None:
    if name not in LEARNERS:
        raise InvalidInputError(f"unknown policy {name!r}; use one of {', '.join(LEARNERS)} (or none: hybrid)")


def learner_for(core: Core, tenant: str, name: str) -> Op[Learner]:
    """The tenant's learner of this name, with its state loaded from the store once per facade."""
    check_policy(name)
    key = (tenant, name)
    if key not in core.learners:
        learner = make_learner(name, **core.config.learner_params.get(name, {}))
        stamped = yield db.learner_state_stamped(tenant, name)
        if stamped and stamped[0]:
            learner.load_state_dict(stamped[0])
        with core.lock:  # two callers may have loaded it at once: the first one kept is the one used
            if key not in core.learners:
                core.learners[key] = learner
                core.learner_stamps[key] = None if stamped is None else stamped[1]
    return core.learners[key]


def experience_batch(
    tenant: str,
    records: list[MemoryRecord],
    learner: Learner,
    nearest: Sequence[Candidate],
    neighbours: Mapping[str, MemoryRecord],
) -> tuple[MemoryRecord, WriteBatch]:
    """The experience record and its neighbours' agreement statistics, as ONE write batch."""
    record = records[0]
    deltas = agreement_deltas(learner, record, nearest, neighbours)
    return record, WriteBatch(tenant, inserts=[InsertGroup(records)], stats=deltas or {})


def _plan_fn(
    core: Core,
    reward: float,
    used: Sequence[str] | None,
    strategy: str,
    accumulate: bool,
    learner: Learner | None,
    vectors: Mapping[str, np.ndarray] | None,
) -> PlanFn:
    def plan(
        logged: LoggedRetrieval, current: Mapping[str, Utility], stored: StoredLearnerState | None
    ) -> FeedbackPlan:
        with core.lock:
            if learner is not None and stored is not None and stored.state:
                learner.load_state_dict(stored.state)  # learn on top of what is stored now
            return plan_feedback(
                logged,
                current,
                reward=reward,
                used=None if used is None else list(used),
                strategy=strategy,
                accumulate=accumulate,
                now=utcnow(),
                window_days=core.config.feedback_window_days,
                learner=learner,
                vectors=vectors,
            )

    return plan


def feedback(
    core: Core,
    retrieval_id: str,
    reward: float,
    *,
    used: Sequence[str] | None = None,
    credit: str | None = None,
    accumulate: bool = False,
    scope: ScopeLike | None = None,
) -> Op[FeedbackRecord]:
    """Report the reward a retrieval earned; the shown records' utility learns from it.

    ``credit``: ``shown`` (every shown record gets the reward; the default without ``used``),
    ``used`` (only the ids in ``used``; the default when ``used`` is given) or ``rank``
    (position-discounted). A second feedback on one retrieval is refused unless
    ``accumulate=True``. Utilities, the log entry and the learner's state change in one transaction.
    """
    strategy = check_feedback_args(reward, used, credit)
    tenant = core.scope(scope).tenant
    logged = yield db.get_retrieval(tenant, retrieval_id)
    learner = (yield from learner_for(core, tenant, logged.policy)) if logged.policy in LEARNERS else None
    vectors = None
    if learner is not None and learner.name == "memento_q":
        got = yield db.get(tenant, [s.id for s in logged.shown], with_embedding=True)
        vectors = {r.id: np.asarray(r.embedding, np.float32) for r in got if r.embedding is not None}
    key = (tenant, logged.policy)
    try:
        plan = yield db.apply_feedback(
            tenant,
            retrieval_id,
            _plan_fn(core, reward, used, strategy, accumulate, learner, vectors),
            learner=None if learner is None else learner.name,
            known_stamp=core.learner_stamps.get(key),
        )
    except BaseException:
        with core.lock:  # reload the learner's committed state next time
            core.learners.pop(key, None)
            core.learner_stamps.pop(key, None)
        raise
    if learner is not None:
        with core.lock:
            old = core.learner_stamps.get(key)
            stamp = plan.learner_stamp
            if core.learners.get(key) is learner and (old is None or (stamp is not None and stamp > old)):
                core.learner_stamps[key] = stamp
    return plan.feedback  # type: ignore[no-any-return]


def retrieval(core: Core, retrieval_id: str, *, scope: ScopeLike | None = None) -> Op[LoggedRetrieval]:
    """A search as the retrieval log keeps it (pool, shown, propensities, feedback)."""
    return (yield db.get_retrieval(core.scope(scope).tenant, retrieval_id))


def _logs(tenant: str, since: datetime | None) -> Op[list[LoggedRetrieval]]:
    """Every logged retrieval with feedback, oldest first (paged by creation time)."""
    logs: list[LoggedRetrieval] = []
    seen: set[str] = set()
    while True:
        batch = yield db.list_retrievals(tenant, since=since, limit=1000, with_feedback=True)
        fresh = [b for b in batch if b.id not in seen]
        logs.extend(fresh)
        seen.update(b.id for b in fresh)
        if len(batch) < 1000 or not fresh:
            return logs
        since = batch[-1].created_at


def prune_log(
    core: Core, older_than_days: float, *, scope: ScopeLike | None = None, all_tenants: bool = False
) -> Op[int]:
    """Delete logged retrievals older than ``older_than_days``; feedback on them is then refused."""
    if older_than_days < 0:
        raise InvalidInputError("older_than_days must be >= 0")
    before = utcnow() - timedelta(days=older_than_days)
    return (yield db.prune_retrievals(before, None if all_tenants else core.scope(scope).tenant))


def replay(
    core: Core, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
) -> Op[int]:
    """Re-train a learner from scratch on the logged feedback of this tenant, and save its state."""
    check_policy(policy)
    tenant = core.scope(scope).tenant
    learner = make_learner(policy, **core.config.learner_params.get(policy, {}))
    count = yield work(retrain, learner, (yield from _logs(tenant, since)))
    stamp = yield db.save_learner_state(tenant, policy, learner.state_dict())
    with core.lock:
        core.learners[(tenant, policy)] = learner
        core.learner_stamps[(tenant, policy)] = stamp
    return count  # type: ignore[no-any-return]


def evaluate(
    core: Core, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
) -> Op[OffPolicyEstimate]:
    """Off-policy value (IPS and self-normalised IPS) of a learner, as it is now, on the logged feedback."""
    tenant = core.scope(scope).tenant
    logs = yield from _logs(tenant, since)
    ids = list({s.id for log in logs for s in log.shown} | {p.id for log in logs for p in log.pool})
    records = {r.id: r for r in (yield db.get(tenant, ids, include_deleted=True))}
    utilities = {rid: r.utility for rid, r in records.items()}
    learner = yield from learner_for(core, tenant, policy)
    return ips_estimate(logs, learner_policy(learner, utilities, seed=core.config.seed))
