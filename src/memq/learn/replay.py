"""Offline replay from the retrieval log: re-train a learner, and evaluate a policy with IPS.

Off-policy value (item level). Each logged retrieval n showed items i with marginal propensity
p_n(i) = P(i shown | logging policy) and earned the credited reward r_n(i). For a target policy π with
marginal π_n(i) = P(i shown | π, the same pool), the importance weight is w = π_n(i) / p_n(i) and

    IPS   V̂ = Σ_n Σ_{i ∈ shown_n} w·r / Σ_n |shown_n|
    SNIPS V̂ = Σ_n Σ_{i ∈ shown_n} w·r / Σ_n Σ_{i ∈ shown_n} w

estimate the target's expected credited reward per shown item. IPS is unbiased when the logging
policy gave every item the target shows a non-zero propensity (ε-greedy, softmax or Thompson
logging); SNIPS trades a small bias for much lower variance. ``effective_sample_size`` = (Σw)²/Σw²
says how many logged items the estimate effectively rests on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from memq.learn.base import Learner, Outcome, PoolItem
from memq.types import LoggedRetrieval, Utility

TargetPolicy = Callable[[LoggedRetrieval], Mapping[str, float]]


@dataclass(frozen=True)
class OffPolicyEstimate:
    ips: float
    snips: float
    retrievals: int
    items: int
    effective_sample_size: float


def ips_estimate(logs: Iterable[LoggedRetrieval], target: TargetPolicy) -> OffPolicyEstimate:
    """IPS and self-normalised IPS of ``target`` on logged retrievals that have feedback."""
    total_wr = total_w = total_w2 = 0.0
    items = retrievals = 0
    for log in logs:
        if log.feedback is None:
            continue
        retrievals += 1
        probs = target(log)
        for shown in log.shown:
            items += 1
            if shown.propensity <= 0:
                continue
            w = probs.get(shown.id, 0.0) / shown.propensity
            r = log.feedback.credits.get(shown.id, 0.0)
            total_wr += w * r
            total_w += w
            total_w2 += w * w
    return OffPolicyEstimate(
        ips=total_wr / items if items else 0.0,
        snips=total_wr / total_w if total_w > 0 else 0.0,
        retrievals=retrievals,
        items=items,
        effective_sample_size=(total_w * total_w / total_w2) if total_w2 > 0 else 0.0,
    )


def pool_items(
    log: LoggedRetrieval,
    utilities: Mapping[str, Utility] | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
) -> list[PoolItem]:
    """The logged candidate pool as learner input (current utilities where given)."""
    utilities = utilities or {}
    vectors = vectors or {}
    return [
        PoolItem(p.id, float(p.dense or 0.0), utilities.get(p.id, Utility()), vector=vectors.get(p.id))
        for p in log.pool
    ]


def learner_policy(
    learner: Learner,
    utilities: Mapping[str, Utility] | None = None,
    vectors: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
) -> TargetPolicy:
    """A learner as a target policy: what it would show, from each logged pool, right now.

    Its marginals are its own propensities (1.0 for a deterministic learner).
    """
    rng = np.random.default_rng(seed)

    def target(log: LoggedRetrieval) -> dict[str, float]:
        if log.query_vector is None:
            return {}
        sel = learner.select(
            np.asarray(log.query_vector, np.float32), pool_items(log, utilities, vectors), log.k, rng
        )
        return dict(zip(sel.ids, sel.propensities, strict=True))

    return target


def retrain(
    learner: Learner,
    logs: Iterable[LoggedRetrieval],
    vectors: Mapping[str, np.ndarray] | None = None,
) -> int:
    """Feed every logged feedback to ``learner.observe`` in time order; returns how many were replayed.

    Per-record statistics are not replayed (they already hold every feedback); this rebuilds a
    learner's global model, e.g. after changing its parameters or version.
    """
    count = 0
    for log in logs:
        if log.feedback is None or log.query_vector is None:
            continue
        shown = [s.id for s in log.shown]
        learner.observe(
            Outcome(
                np.asarray(log.query_vector, np.float32),
                [item for item in pool_items(log, vectors=vectors) if item.id in set(shown)],
                shown,
                set(log.feedback.used or []),
                log.feedback.reward,
                dict(log.feedback.credits),
            )
        )
        count += 1
    if hasattr(learner, "fit"):
        learner.fit()
    return count
