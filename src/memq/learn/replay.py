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

from memq.learn.base import Learner, Window
from memq.learn.training import training_data
from memq.retrieve.features import FEATURE_SET
from memq.store.base import LogRow
from memq.types import LoggedRetrieval

TargetPolicy = Callable[[LogRow], Mapping[str, float]]


@dataclass(frozen=True)
class OffPolicyEstimate:
    ips: float
    snips: float
    retrievals: int
    items: int
    effective_sample_size: float


def ips_estimate(logs: Iterable[LogRow], target: TargetPolicy) -> OffPolicyEstimate:
    """IPS and self-normalised IPS of ``target`` on logged searches with feedback."""
    total_wr = total_w = total_w2 = 0.0
    items = retrievals = 0
    for log in logs:
        retrievals += 1
        probs = target(log)
        for rid, propensity, _ in log.shown:
            items += 1
            if propensity <= 0:
                continue
            w = probs.get(rid, 0.0) / propensity
            r = log.credits.get(rid, 0.0)
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


def window_of(
    log: LogRow | LoggedRetrieval, vectors: Mapping[str, np.ndarray] | None = None
) -> Window | None:
    """The logged window as a learner sees it (None for a search logged without this feature set)."""
    if not log.window or log.features is None or len(log.features) == 0 or log.feature_set != FEATURE_SET:
        return None
    vecs = None
    if vectors is not None and log.window:
        dim = next(iter(vectors.values())).shape[0] if vectors else 0
        vecs = np.stack([vectors.get(rid, np.zeros(dim, np.float32)) for rid in log.window]) if dim else None
    return Window(
        ids=list(log.window),
        x=np.asarray(log.features, dtype=np.float64),
        query_vector=None if log.query_vector is None else np.asarray(log.query_vector, np.float32),
        vectors=vecs,
    )


def learner_policy(
    learner: Learner, vectors: Mapping[str, np.ndarray] | None = None, seed: int = 0
) -> TargetPolicy:
    """A learner as a target policy: what it would show, as it is now, from each logged window.

    Its marginals are its own propensities (1.0 for a deterministic learner).
    """
    rng = np.random.default_rng(seed)

    def target(log: LogRow) -> dict[str, float]:
        window = window_of(log, vectors)
        if window is None:
            return {}
        sel = learner.select(window, log.k, rng)
        return dict(zip(sel.ids, sel.propensities, strict=True))

    return target


def retrain(learner: Learner, logs: Iterable[LogRow], vectors: Mapping[str, np.ndarray] | None = None) -> int:
    """Fit ``learner`` on the logged feedback (its windows' features as logged); returns the searches used."""
    data = training_data(logs)
    data.vectors = dict(vectors) if vectors is not None else None
    learner.fit(data)
    return data.retrievals
