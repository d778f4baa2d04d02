"""Learning online as an agent gives feedback: a citing agent on LoCoMo (``memq bench locomo`` variant
``online``) and on LongMemEval S-60 (``memq bench longmemeval --variants online``).

The agent: after each search (k = 5) it cites, as ``used``, the shown records that are gold evidence —
each citation dropped with probability ``noise`` — and with probability ``noise`` it also cites one
shown record that is not evidence; its reward is 1 when it cited any evidence, else 0. Searches and
feedback go through the library's real path (:class:`memq_bench.systems.MemqSystem` on
:class:`memq.Memory`), so what is measured is what a user gets: a learner trains in the shadow of the
recipe, and ranks only once its promotion test (:mod:`memq.learn.promotion`) shows it better —
``promotion="guarded"``, memq's default; ``promotion="always"`` measures the learned reranker itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from memq_bench.results import BenchResult

T = TypeVar("T")

NOISE = 0.2
SHOWN = 5


@dataclass
class CitingAgent:
    """Cites the shown evidence, with citation noise (seeded)."""

    rng: np.random.Generator
    noise: float = NOISE

    def cite(self, shown: Sequence[str], gold: frozenset[str] | set[str]) -> tuple[list[str], float]:
        """(cited keys, reward) for one search's shown keys."""
        cited = [key for key in shown if key in gold and self.rng.random() >= self.noise]
        wrong = [key for key in shown if key not in gold]
        if wrong and self.rng.random() < self.noise:
            cited.append(wrong[int(self.rng.integers(len(wrong)))])
        return cited, 1.0 if any(key in gold for key in cited) else 0.0


def train_questions(
    system: object,
    space: str,
    asked: Sequence[tuple[str, frozenset[str]]],
    agent: CitingAgent,
    *,
    shown: int = SHOWN,
    on_question: Callable[[int], None] | None = None,
) -> list[tuple[tuple[str, ...], float]]:
    """Ask each (question, gold) in order with k = ``shown`` and give the agent's feedback; returns
    each search's shown keys and reward (the within-conversation curve reads them)."""
    out = []
    for question, gold in asked:
        keys = tuple(system.search(space, question, shown))  # type: ignore[attr-defined]
        cited, reward = agent.cite(keys, gold)
        if keys:
            system.feedback(space, reward, cited)  # type: ignore[attr-defined]
        out.append((keys, reward))
        if on_question:
            on_question(1)
    return out


def served_share(system: object, since: int = 0) -> float:
    """The share of a MemqSystem's searches (from the ``since``-th on) that its learner ranked
    (0 while the recipe served)."""
    inner = getattr(system, "system", system)
    served = getattr(inner, "served", [])[since:]
    policy = getattr(inner, "_policy", None)
    return sum(1 for p in served if p == policy) / len(served) if served else 0.0


def freeze(system: Any) -> tuple[Any, int]:
    """End training of a learning system (a :class:`Timed` MemqSystem): exploration off, so that it is
    evaluated frozen; returns its ``learning_status()`` and how many searches it had served, the
    ``since`` of :func:`served_share` for the evaluation."""
    memory = system.system.memory
    status = memory.learning_status()
    memory.config.learning.explore = 0.0  # frozen: no exploration, no feedback
    return status, len(system.system.served)


def frozen_evaluation(
    system: Any, rewards: Sequence[float], evaluate: Callable[[], T], *, feedback_counts: bool = False
) -> tuple[T, dict[str, float]]:
    """Freeze a trained learning system (:func:`freeze`), run ``evaluate()`` and return what it
    returns with the :func:`learner_metrics` of the run: the evaluation's :func:`served_share`, and
    with ``feedback_counts`` the learner's status after the evaluation too."""
    status, before = freeze(system)
    evaluated = evaluate()
    eval_share = served_share(system, since=before)
    after = system.system.memory.learning_status() if feedback_counts else None
    return evaluated, learner_metrics(rewards, status, eval_share, after=after)


def learner_metrics(
    rewards: Sequence[float], status: Any, eval_share: float, *, after: Any = None
) -> dict[str, float]:
    """What a trained learner reports beside retrieval quality, from its ``learning_status()`` after
    training (``status``): training questions and mean reward, whether it was promoted, the share of
    the evaluation searches it ranked, and its promotion test's estimates. With ``after`` (the status
    after evaluation) also the feedback counts and whether it was trained."""
    metrics = {
        "train_questions": float(len(rewards)),
        "train_reward_mean": float(np.mean(rewards)) if rewards else 0.0,
    }
    if after is not None:
        metrics |= {
            "feedbacks": float(status.feedbacks),
            "eval_feedbacks": float(after.feedbacks - status.feedbacks),
            "trained": float(status.trained),
        }
    metrics |= {"promoted": float(status.serving), "served_share": float(eval_share)}
    metrics |= {f"estimate_{k}": float(v) for k, v in (status.estimate or {}).items()}
    return metrics


def seed_summary(
    per_seed: Sequence[dict[str, float]],
    base: dict[str, float],
    *,
    gain: tuple[str, ...],
    spread: Iterable[str],
) -> dict[str, float]:
    """The mean over seeds of every metric all seeds have; ``<metric>/gain`` = mean − ``base`` for the
    metrics ``base`` has that start with one of ``gain``; ``<metric>/std`` (over seeds) for each metric
    of ``spread``."""
    mean = {
        key: float(np.mean([m[key] for m in per_seed]))
        for key in per_seed[0]
        if all(key in m for m in per_seed)
    }
    for key in list(mean):
        if key in base and key.startswith(gain):
            mean[f"{key}/gain"] = mean[key] - base[key]
    for key in spread:
        if key in mean:
            mean[f"{key}/std"] = float(np.std([m[key] for m in per_seed]))
    return mean


def seeded_results(
    variant: str,
    seeds: Sequence[int],
    run_seed: Callable[[int], dict[str, float]],
    summarize: Callable[[Sequence[dict[str, float]]], dict[str, float]],
    result: Callable[[str, dict[str, float], float, dict[str, Any]], BenchResult],
    *,
    seed_config: Callable[[int], dict[str, Any]],
    summary_config: dict[str, Any],
) -> list[BenchResult]:
    """A timed result per seed (``variant/seed<n>``: the metrics of ``run_seed(seed)``), then the
    metrics of all seeds, ``summarize(per_seed)``, as ``variant``, timed as their sum.
    ``result(variant, metrics, seconds, config)`` makes each."""
    results: list[BenchResult] = []
    per_seed: list[dict[str, float]] = []
    for seed in seeds:
        started = time.perf_counter()
        metrics = run_seed(seed)
        per_seed.append(metrics)
        results.append(
            result(f"{variant}/seed{seed}", metrics, time.perf_counter() - started, seed_config(seed))
        )
    seconds = sum(r.seconds for r in results)
    return [*results, result(variant, summarize(per_seed), seconds, summary_config)]
