"""Offline evaluation: IPS recovers a known policy value from an ε-greedy-style random log."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from memq.learn.contextual import ContextualLearner
from memq.learn.replay import ips_estimate, learner_policy, retrain
from memq.types import FeedbackRecord, LoggedRetrieval, PoolEntry, ShownEntry

M, K = 10, 3
P_REWARD = np.linspace(0.05, 0.95, M)  # item i pays 1 with probability P_REWARD[i]


def _log(n: int, seed: int = 0) -> list[LoggedRetrieval]:
    """A logging policy that shows a uniform random K of M items: propensity K/M each."""
    rng = np.random.default_rng(seed)
    logs = []
    for j in range(n):
        shown = rng.choice(M, size=K, replace=False)
        credits = {str(i): float(rng.random() < P_REWARD[i]) for i in shown}
        logs.append(
            LoggedRetrieval(
                id=str(j),
                tenant="t",
                query="q",
                query_vector=[1.0, 0.0],
                policy="random",
                policy_version="1",
                k=K,
                pool=[PoolEntry(id=str(i), dense=float(P_REWARD[i])) for i in range(M)],
                shown=[
                    ShownEntry(id=str(i), rank=r + 1, score=0.0, propensity=K / M)
                    for r, i in enumerate(shown)
                ],
                created_at=datetime(2025, 1, 1, tzinfo=UTC),
                feedback=FeedbackRecord(
                    reward=sum(credits.values()),
                    credit="used",
                    at=datetime(2025, 1, 1, tzinfo=UTC),
                    credits=credits,
                ),
            )
        )
    return logs


def test_ips_recovers_the_value_of_a_deterministic_target() -> None:
    logs = _log(6000)
    best = {str(i): 1.0 for i in range(M - K, M)}  # always show the three best items
    true_value = float(P_REWARD[M - K :].mean())
    est = ips_estimate(logs, lambda log: best)
    assert est.snips == pytest.approx(true_value, abs=0.02)
    # IPS estimates Σ_shown π·r per shown item; for a K-item deterministic target that is the same mean
    assert est.ips == pytest.approx(true_value, abs=0.03)
    worst = ips_estimate(logs, lambda log: {str(i): 1.0 for i in range(K)})
    assert worst.snips == pytest.approx(float(P_REWARD[:K].mean()), abs=0.02)
    assert est.retrievals == 6000 and est.items == 6000 * K
    assert 0 < est.effective_sample_size <= est.items


def test_logging_policy_value_and_learner_as_target() -> None:
    logs = _log(3000, seed=1)
    logging_value = ips_estimate(logs, lambda log: {s.id: s.propensity for s in log.shown})
    assert logging_value.snips == pytest.approx(float(P_REWARD.mean()), abs=0.02)
    # a learner whose score rises with the logged similarity (= P_REWARD here) picks the best items
    learner = ContextualLearner(k1=M)
    value = ips_estimate(logs, learner_policy(learner))
    assert value.snips == pytest.approx(float(P_REWARD[M - K :].mean()), abs=0.03)
    assert retrain(learner, logs) == 3000
    assert learner.w[1] > 0  # similarity predicts reward on this log, and retraining learned it
