"""Offline evaluation and the promotion test: IPS/SNIPS recover known policy values from logged windows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from memq.learn.contextual import ContextualLearner
from memq.learn.promotion import compare, switch
from memq.learn.replay import ips_estimate, learner_policy, retrain, window_of
from memq.retrieve.features import COLUMN, FEATURE_SET, NAMES
from memq.store.base import LogRow

M, K = 10, 3
P_REWARD = np.linspace(0.05, 0.95, M)  # item i pays 1 with probability P_REWARD[i]


def _features() -> np.ndarray:
    """The window's feature rows: item i's ``overlap`` feature is its reward probability (a feature
    that carries over), and the recipe's own score runs the other way."""
    x = np.zeros((M, len(NAMES)), dtype=np.float32)
    x[:, COLUMN["bias"]] = 1.0
    x[:, COLUMN["overlap"]] = P_REWARD
    x[:, COLUMN["base"]] = np.linspace(1.0, 0.1, M)
    return x


def _log(n: int, seed: int = 0) -> list[LogRow]:
    """A logging policy that shows a uniform random K of M items: propensity K/M each."""
    rng = np.random.default_rng(seed)
    x = _features()
    rows = []
    for j in range(n):
        shown = rng.choice(M, size=K, replace=False)
        credits = {str(i): float(rng.random() < P_REWARD[i]) for i in shown}
        rows.append(
            LogRow(
                id=str(j),
                learner="memq",
                k=K,
                window=tuple(str(i) for i in range(M)),
                features=x,
                feature_set=FEATURE_SET,
                shown=tuple((str(i), K / M, False) for i in shown),
                credits=credits,
                reward=sum(credits.values()),
                query_vector=None,
                shadow=None,
            )
        )
    return rows


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
    logging_value = ips_estimate(logs, lambda log: {rid: p for rid, p, _ in log.shown})
    assert logging_value.snips == pytest.approx(float(P_REWARD.mean()), abs=0.02)
    learner = ContextualLearner()
    # cold: the recipe's order, whose top 3 are the *worst* items here
    cold = ips_estimate(logs, learner_policy(learner))
    assert cold.snips == pytest.approx(float(P_REWARD[:K].mean()), abs=0.03)
    assert retrain(learner, logs) == 3000
    assert learner.w[COLUMN["overlap"]] > 0  # the feature predicts reward on this log, and it learned so
    value = ips_estimate(logs, learner_policy(learner))
    assert value.snips == pytest.approx(float(P_REWARD[M - K :].mean()), abs=0.03)
    window = window_of(logs[0])
    assert window is not None and window.ids == [str(i) for i in range(M)]
    assert window_of(replace(logs[0], feature_set="v0")) is None  # another layout: not read


def _served(n: int, explore: float, shadow_better: bool, seed: int = 0) -> list[LogRow]:
    """Searches served by one policy with a shadow that disagrees on the last slot, explored with
    probability ``explore``: the serving pick pays 0.3, the shadow's pick 0.6 (or the other way)."""
    rng = np.random.default_rng(seed)
    good, bad = (0.6, 0.3) if shadow_better else (0.3, 0.6)
    rows = []
    for j in range(n):
        explored = rng.random() < explore
        last = ("d", explore, True) if explored else ("s", 1.0 - explore, False)
        shown = (("a", 1.0, False), ("b", 1.0, False), last)
        p_last = good if explored else bad
        credits = {
            "a": float(rng.random() < 0.5),
            "b": float(rng.random() < 0.5),
            last[0]: float(rng.random() < p_last),
        }
        rows.append(
            LogRow(
                id=str(j),
                learner="memq",
                k=3,
                window=("a", "b", "s", "d"),
                features=None,
                feature_set=FEATURE_SET,
                shown=shown,
                credits=credits,
                reward=sum(credits.values()),
                query_vector=None,
                shadow=("a", "b", "d"),
            )
        )
    return rows


def test_promotion_test_recovers_both_values_and_switches_only_when_shown_better() -> None:
    logs = _served(4000, explore=0.2, shadow_better=True)
    est = compare(logs, lambda r: r)
    assert est is not None and est.searches == 4000 and 600 < est.explored < 1000
    # per shown candidate: serving (0.5 + 0.5 + 0.3)/3, shadow (0.5 + 0.5 + 0.6)/3
    assert est.serving == pytest.approx(1.3 / 3, abs=0.02)
    assert est.shadow == pytest.approx(1.6 / 3, abs=0.03)
    assert est.lower > 0 and est.lower <= est.difference <= est.upper
    assert switch(est, min_searches=100) and not switch(est, min_searches=5000)
    worse = compare(_served(4000, explore=0.2, shadow_better=False), lambda r: r)
    assert worse is not None and worse.difference < 0 and not switch(worse, 100)
    assert compare([], lambda r: r) is None
    # the bound is seeded: the same log gives the same decision
    assert compare(logs, lambda r: r) == est


def test_an_equal_shadow_gets_a_bound_around_zero() -> None:
    """Same payoff for both picks: the interval covers 0, so nothing switches."""
    rng = np.random.default_rng(3)
    logs = []
    for j in range(3000):
        explored = rng.random() < 0.2
        last = ("d", 0.2, True) if explored else ("s", 0.8, False)
        credits = {"a": 1.0, last[0]: float(rng.random() < 0.4)}
        logs.append(
            LogRow(
                id=str(j),
                learner="memq",
                k=2,
                window=("a", "s", "d"),
                features=None,
                feature_set=FEATURE_SET,
                shown=(("a", 1.0, False), last),
                credits=credits,
                reward=sum(credits.values()),
                query_vector=None,
                shadow=("a", "d"),
            )
        )
    est = compare(logs, lambda r: r)
    assert est is not None and est.lower < 0 < est.upper and abs(est.difference) < 0.05
    assert not switch(est, 100)
