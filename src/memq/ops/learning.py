"""Learning operations: feedback, the learners' fit and promotion, replay, evaluate, status, the log.

A feedback is one short store transaction (:meth:`RetrievalLog.apply_feedback`: the log entry, the
shown records' utility, the learner's feedback count). Every ``fit_every`` feedbacks the learner is
refit from the log outside any transaction, its promotion test runs (:mod:`memq.learn.promotion`), and
its state is saved in another short transaction checked against the version it was loaded from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from memq.errors import ConflictError, InvalidInputError
from memq.learn import LEARNERS, Learner, make_learner
from memq.learn.experience import agreement_deltas
from memq.learn.feedback import check_feedback_args, plan_feedback
from memq.learn.promotion import Estimate, compare, switch
from memq.learn.replay import OffPolicyEstimate, ips_estimate, learner_policy, retrain
from memq.learn.training import training_data
from memq.ops.core import Core
from memq.ops.runner import Op, db, work
from memq.store.base import (
    Candidate,
    FeedbackPlan,
    InsertGroup,
    LogRow,
    PlanFn,
    StoredLearnerState,
    WriteBatch,
)
from memq.types import FeedbackRecord, LoggedRetrieval, MemoryRecord, Utility, utcnow
from memq.validate import ScopeLike

RELOAD_SECONDS = 30.0  # a cached learner re-reads its stored version at most this often


@dataclass
class LearnerEntry:
    """A tenant's learner as this facade holds it, with its serving state."""

    learner: Learner
    version: int = 0  # the stored state's version it was loaded from (0: none saved)
    fitted: int = 0  # the feedback count at its last fit / promotion test
    promoted: bool = False
    estimate: Estimate | None = None
    checked: float = field(default_factory=time.monotonic)

    def serves(self, promotion: str) -> bool:
        """Whether the learner ranks the searches (else the recipe does, the learner in the shadow)."""
        if self.learner.name == "similarity" or promotion == "never":
            return False
        return promotion == "always" or self.promoted


def check_policy(name: str) -> None:
    if name not in LEARNERS:
        raise InvalidInputError(
            f"unknown policy {name!r}; use one of {', '.join(LEARNERS)} (or none: the recipe)"
        )


def _new(core: Core, name: str) -> Learner:
    return make_learner(name, **core.config.learner_params.get(name, {}))


def _entry(core: Core, name: str, stored: StoredLearnerState | None) -> LearnerEntry:
    learner = _new(core, name)
    if stored is None:
        return LearnerEntry(learner)
    model = stored.state.get("model")
    if model:
        learner.load_state_dict(model)
    serving = stored.state.get("serving") or {}
    est = serving.get("estimate")
    return LearnerEntry(
        learner,
        version=stored.version,
        fitted=int(serving.get("fitted", 0)),
        promoted=bool(serving.get("promoted", False)),
        estimate=None if est is None else Estimate(**est),
    )


def learner_for(core: Core, tenant: str, name: str) -> Op[LearnerEntry]:
    """The tenant's learner of this name, loaded from the store once per facade and re-read when
    another writer has saved a newer version (checked at most every ``RELOAD_SECONDS``)."""
    check_policy(name)
    key = (tenant, name)
    entry = core.learners.get(key)
    if entry is not None and time.monotonic() - entry.checked < RELOAD_SECONDS:
        return entry  # type: ignore[no-any-return]
    stored = yield db.learner_state(tenant, name)
    with core.lock:
        entry = core.learners.get(key)
        if entry is None or (stored is not None and stored.version != entry.version):
            entry = _entry(core, name, stored)
            core.learners[key] = entry
        entry.checked = time.monotonic()
    return entry


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


def update_rule(core: Core, name: str | None) -> Learner | None:
    """A learner of ``name`` built from the config alone: enough for its per-record update (which
    needs its parameters, never its learned model), so the feedback transaction reads nothing else."""
    if name not in LEARNERS:
        return None
    with core.lock:
        rule = core.rules.get(name)
        if rule is None:
            rule = core.rules[name] = _new(core, name)
    return rule


def _plan_fn(
    core: Core, reward: float, used: Sequence[str] | None, strategy: str, accumulate: bool
) -> PlanFn:
    def plan(logged: LoggedRetrieval, current: Mapping[str, Utility]) -> FeedbackPlan:
        return plan_feedback(
            logged,
            current,
            reward=reward,
            used=None if used is None else list(used),
            strategy=strategy,
            accumulate=accumulate,
            now=utcnow(),
            window_days=core.config.feedback_window_days,
            learner=update_rule(core, logged.learner),
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
    """Report the reward a retrieval earned; the shown records' utility and the learner learn from it.

    ``credit``: ``shown`` (every shown record gets the reward; the default without ``used``),
    ``used`` (only the ids in ``used`` — the records the agent cited or acted on; the default when
    ``used`` is given) or ``rank`` (position-discounted). A second feedback on one retrieval is
    refused unless ``accumulate=True``. The log entry and the utilities change in one transaction;
    every so many feedbacks the learner the search trained is refit from the log, and its promotion
    test runs (docs/algorithms.md §learning).
    """
    strategy = check_feedback_args(reward, used, credit)
    tenant = core.scope(scope).tenant
    plan = yield db.apply_feedback(tenant, retrieval_id, _plan_fn(core, reward, used, strategy, accumulate))
    name, count = plan.learner, plan.learner_feedbacks
    if name in LEARNERS and name != "similarity" and count is not None:
        entry = yield from learner_for(core, tenant, name)
        every = getattr(entry.learner, "fit_every", 0) or core.config.learning.update_every
        if count - entry.fitted >= every:
            yield from _refit_once(core, tenant, name, count)
    return plan.feedback  # type: ignore[no-any-return]


def _refit_once(core: Core, tenant: str, name: str, count: int) -> Op[None]:
    """Refit the learner unless this facade is refitting it already. Feedbacks that arrive during a
    refit (a server's request threads) would each start the same fit on the same log, and all but
    one save would lose to the version check. What a skipped feedback taught is in the next fit's log."""
    key = (tenant, name)
    with core.lock:
        if key in core.fitting:
            return
        core.fitting.add(key)
    try:
        yield from update_learner(core, tenant, name, count)
    finally:
        with core.lock:
            core.fitting.discard(key)


def _history(core: Core, tenant: str) -> Op[list[LogRow]]:
    return (yield db.training_log(tenant, limit=core.config.learning.history))


def update_learner(core: Core, tenant: str, name: str, feedbacks: int | None = None) -> Op[LearnerEntry]:
    """Refit a learner on the newest logged feedback, run its promotion test, save it (versioned).

    A save that loses to another writer's (ConflictError) keeps theirs: both fit the same log."""
    stored = yield db.learner_state(tenant, name)
    entry = _entry(core, name, stored)
    logs = yield from _history(core, tenant)
    if getattr(entry.learner, "fit_every", 0):
        data = training_data(logs)
        if entry.learner.needs_vectors:
            data.vectors = yield db.vectors(tenant, sorted(set(data.ids)))
        yield work(entry.learner.fit, data)
    entry = yield work(_test, core, entry, [log for log in logs if log.learner == name])
    entry.fitted = feedbacks if feedbacks is not None else (stored.feedbacks if stored else 0)
    state = {"model": entry.learner.state_dict(), "serving": _serving(entry)}
    try:
        entry.version = yield db.save_learner_state(
            tenant, name, state, expected_version=None if stored is None else stored.version
        )
    except ConflictError:
        entry = _entry(core, name, (yield db.learner_state(tenant, name)))
    with core.lock:
        core.learners[(tenant, name)] = entry
    return entry


def _test(core: Core, entry: LearnerEntry, logs: list[LogRow]) -> LearnerEntry:
    """The promotion test on the learner's searches: switch when the shadow is shown better."""
    cfg = core.config.learning
    y01 = getattr(entry.learner, "y01", lambda r: float(min(1.0, max(0.0, r))))
    entry.estimate = compare(logs, y01, alpha=cfg.alpha, seed=core.config.seed)
    if cfg.promotion == "guarded" and switch(entry.estimate, cfg.min_searches):
        entry.promoted = not entry.promoted
        entry.estimate = None  # the roles swapped: the next test starts on searches served the new way
    return entry


def _serving(entry: LearnerEntry) -> dict[str, Any]:
    return {
        "promoted": entry.promoted,
        "fitted": entry.fitted,
        "estimate": None if entry.estimate is None else entry.estimate.as_dict(),
    }


def retrieval(core: Core, retrieval_id: str, *, scope: ScopeLike | None = None) -> Op[LoggedRetrieval]:
    """A search as the retrieval log keeps it (pool, window features, shown, propensities, feedback)."""
    return (yield db.get_retrieval(core.scope(scope).tenant, retrieval_id))


ALL = 10_000_000  # replay and evaluate read the whole log (or since a time)


def _logs(tenant: str, since: datetime | None) -> Op[list[LogRow]]:
    """Every logged search with feedback (since a time), oldest first."""
    return (yield db.training_log(tenant, limit=ALL, since=since))


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
    """Re-train a learner from scratch on this tenant's logged feedback (the features as logged) and
    save it; its serving state (promoted or not) is kept. Returns the searches it learned from."""
    check_policy(policy)
    tenant = core.scope(scope).tenant
    stored = yield db.learner_state(tenant, policy)
    old = _entry(core, policy, stored)
    learner = _new(core, policy)
    logs = yield from _logs(tenant, since)
    vectors = None
    if learner.needs_vectors:
        vectors = yield db.vectors(tenant, sorted({rid for log in logs for rid, _, _ in log.shown}))
    count = yield work(retrain, learner, logs, vectors)
    entry = LearnerEntry(
        learner, fitted=stored.feedbacks if stored else 0, promoted=old.promoted, estimate=old.estimate
    )
    state = {"model": learner.state_dict(), "serving": _serving(entry)}
    entry.version = yield db.save_learner_state(tenant, policy, state, expected_version=None)
    with core.lock:
        core.learners[(tenant, policy)] = entry
    return count  # type: ignore[no-any-return]


def evaluate(
    core: Core, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
) -> Op[OffPolicyEstimate]:
    """Off-policy value (IPS and self-normalised IPS) of a learner, as it is now, on the logged feedback
    (each logged window's features, as logged)."""
    tenant = core.scope(scope).tenant
    logs = yield from _logs(tenant, since)
    entry = yield from learner_for(core, tenant, policy)
    vectors = None
    if entry.learner.needs_vectors:
        vectors = yield db.vectors(tenant, sorted({rid for log in logs for rid in log.window}))
    return (yield work(ips_estimate, logs, learner_policy(entry.learner, vectors, seed=core.config.seed)))


class LearnerStatus(BaseModel):
    """What ``memq learn status`` shows for one learner of a tenant."""

    model_config = ConfigDict(extra="forbid")

    learner: str
    serving: bool  # it ranks the tenant's searches now (else the recipe does)
    promotion: str  # the config's mode: guarded | always | never
    trained: bool
    version: str
    state_version: int
    feedbacks: int  # feedbacks counted for it
    estimate: dict[str, float | int] | None  # the last promotion test (serving vs shadow)
    curve: list[tuple[int, float]]  # (searches so far, mean reward of the last `window` feedbacks)


def status(
    core: Core, policy: str | None = None, *, scope: ScopeLike | None = None, window: int = 100
) -> Op[LearnerStatus]:
    """Which scorer serves this tenant, the learner's last promotion estimate and its learning curve."""
    name = policy or core.config.learning.learner
    if name is None:
        raise InvalidInputError(
            "no learner configured (config.learning.learner is None); name one with policy="
        )
    tenant = core.scope(scope).tenant
    entry = yield from learner_for(core, tenant, name)
    stored = yield db.learner_state(tenant, name)
    logs = [log for log in (yield from _history(core, tenant)) if log.learner == name]
    rewards = np.asarray([log.reward for log in logs], dtype=np.float64)
    curve: list[tuple[int, float]] = []
    if len(rewards):
        step = max(1, len(rewards) // 50)
        sums = np.cumsum(np.concatenate(([0.0], rewards)))
        for end in range(step, len(rewards) + 1, step):
            start = max(0, end - window)
            curve.append((end, float((sums[end] - sums[start]) / (end - start))))
    return LearnerStatus(
        learner=name,
        serving=entry.serves(core.config.learning.promotion),
        promotion=core.config.learning.promotion,
        trained=entry.learner.trained,
        version=entry.learner.version,
        state_version=entry.version,
        feedbacks=0 if stored is None else stored.feedbacks,
        estimate=None if entry.estimate is None else entry.estimate.as_dict(),
        curve=curve,
    )
