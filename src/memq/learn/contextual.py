"""``memq``: memq's own learner — a feedback-trained reranker over the recipe's window.

MemRL and Memento learn about records: a record says nothing until it has been shown and credited,
so nothing learned carries over to new memories. memq's learner learns about *(query, record) pairs
described by features that exist before any feedback* (:mod:`memq.retrieve.features`: the recipe's
scores and ranks, link gain, age, term / name / date overlap between query and record, kind) plus the
record's own evidence when it has some, so what it learns on old records ranks new ones:

    p(q, m) = σ(wᵀφ(q, m))

* Training rows: each shown candidate of each logged search with feedback, φ as logged at search time
  (what was served is what is learned from), label = the credit it earned mapped to [0, 1] (``used``
  credit: cited or not), weight = 1 / its propensity, clipped at ``max_weight`` (a candidate shown by
  exploration stands for the searches in which it was not shown).
* Fit: weighted logistic regression by Newton's method with backtracking, with a Gaussian prior
  centred on the cold model w₀: penalty l2/2·‖w − w₀‖². With little feedback the fit stays near the
  recipe's order; features that do not predict reward keep weights near 0.
* The weight of ``base`` (the recipe's own score) is kept ≥ ``min_base_weight`` (0): a learner may
  reorder the recipe's candidates by what it has learned, never invert the recipe wholesale. The
  objective is strictly convex and the constraint one bound, so the constrained optimum is the free
  one when that satisfies the bound, else on the bound (w_base fixed, the others refit).
* Cold (no fit yet): exactly the recipe's order. w₀ = (bias −2.5, base +5, all else 0).
* Per record: ``stats`` s, n (credited successes / credits) give the ``evidence`` feature; ``q``
  follows MemRL's rule (:func:`memq.learn.memrl.memrl_q`). At write time, an experience's agreement
  with its nearest stored experiences (same answer, similarity-weighted) goes to ``stats`` agree /
  agree_total: a poisoned experience disagrees with its neighbours before any feedback.

Rewards are mapped to [0, 1] with ``reward_range`` (default (0, 1); use (−1, 1) for ±1 rewards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.learn.base import PoolItem, Selection, TrainingData, Window, greedy, recipe_scores
from memq.learn.memrl import memrl_q
from memq.retrieve.features import COLUMN, NAMES
from memq.types import Utility

STATE_FORMAT = 2
BASE = COLUMN["base"]
# the record's own feedback history: fit second, on top of the rest (see fit)
HISTORY = ("q", "shown", "used_rate", "evidence")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def cold_weights() -> np.ndarray:
    w = np.zeros(len(NAMES))
    w[COLUMN["bias"]], w[BASE] = -2.5, 5.0
    return w


def _loss(x: np.ndarray, y: np.ndarray, sw: np.ndarray, w: np.ndarray, w0: np.ndarray, l2: float) -> float:
    z = x @ w
    d = w - w0
    return float((sw * (np.logaddexp(0.0, z) - y * z)).sum() + 0.5 * l2 * (d @ d))


def fit_logistic(
    x: np.ndarray,
    y: np.ndarray,
    sw: np.ndarray,
    w: np.ndarray,
    w0: np.ndarray,
    free: np.ndarray,
    l2: float,
    iterations: int = 8,
) -> np.ndarray:
    """Minimise :func:`_loss` over the ``free`` coordinates by Newton steps with backtracking."""
    w = w.copy()
    loss = _loss(x, y, sw, w, w0, l2)
    xf = x[:, free]
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = (x.T @ (sw * (p - y)) + l2 * (w - w0))[free]
        hess = (xf * (sw * p * (1 - p))[:, None]).T @ xf + l2 * np.eye(int(free.sum()))
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = w.copy()
            trial[free] -= step
            trial_loss = _loss(x, y, sw, trial, w0, l2)
            if trial_loss <= loss + 1e-12:
                break
            step = step / 2
        else:
            break
        w, loss = trial, trial_loss
        if np.abs(step).max() < 1e-7:
            break
    return w


class ContextualLearner:
    name = "memq"
    needs_vectors = False

    def __init__(
        self,
        *,
        l2: float = 1.0,
        fit_every: int = 50,
        min_rows: int = 30,
        max_weight: float = 10.0,
        reward_range: tuple[float, float] = (0.0, 1.0),
        min_base_weight: float | None = 0.0,
        neighbours: int = 16,
        ignore: Sequence[str] = (),
    ) -> None:
        if l2 <= 0 or fit_every < 1 or min_rows < 1 or max_weight < 1 or reward_range[1] <= reward_range[0]:
            raise ValueError(
                "memq learner: l2 > 0, fit_every >= 1, min_rows >= 1, max_weight >= 1, reward_range lo < hi"
            )
        if min_base_weight is not None and not np.isfinite(min_base_weight):
            raise ValueError("memq learner: min_base_weight must be a finite number or None (unconstrained)")
        unknown = sorted(set(ignore) - set(NAMES))
        if unknown or "base" in ignore or "bias" in ignore:
            raise ValueError(
                f"memq learner: ignore names features other than base and bias; unknown: {unknown}"
            )
        self.ignore = tuple(ignore)
        self.l2, self.fit_every, self.min_rows, self.max_weight = l2, fit_every, min_rows, max_weight
        self.reward_range, self.neighbours = reward_range, neighbours
        self.min_base_weight = None if min_base_weight is None else float(min_base_weight)
        self.w0 = cold_weights()
        self.w = self.w0.copy()
        self.fits = 0
        self.rows = 0  # training rows of the last fit

    @property
    def version(self) -> str:
        return str(self.fits)

    @property
    def trained(self) -> bool:
        return self.fits > 0

    def y01(self, reward: float) -> float:
        lo, hi = self.reward_range
        return float(min(1.0, max(0.0, (reward - lo) / (hi - lo))))

    # -- policy --------------------------------------------------------------------------------------
    def score(self, window: Window) -> np.ndarray:
        if not self.trained:
            return recipe_scores(window)
        return _sigmoid(window.x @ self.w)

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        return greedy(window, self.score(window), k)

    # -- learning -------------------------------------------------------------------------------------
    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        stats = dict(utility.stats)
        stats["n"] = stats.get("n", 0.0) + 1.0
        stats["s"] = stats.get("s", 0.0) + self.y01(credit)
        return memrl_q(utility.q, credit), stats

    def fit(self, data: TrainingData) -> None:
        """Weighted, prior-centred logistic regression on the logged rows, in two stages.

        1. Every feature but the record's own feedback history (:data:`HISTORY`), w_base ≥ the floor:
           the model of a record nobody has given feedback on yet — every new memory.
        2. The history features, with the stage-1 score as a fixed offset: how a record's own track
           record moves it away from that.
        Fitting both at once would let history explain away the transferable features (records that
        were shown often are the ones the recipe ranks high), and the weights learned for them would
        then be wrong for the new records that have no history.
        """
        if len(data) < self.min_rows:
            return
        lo, hi = self.reward_range
        y = np.clip((data.y - lo) / (hi - lo), 0.0, 1.0)
        sw = np.minimum(data.w, self.max_weight)
        fixed = {COLUMN[name] for name in self.ignore}
        history = {COLUMN[name] for name in HISTORY}
        w = self.w.copy()
        w[list(history | fixed)] = self.w0[list(history | fixed)]
        first = np.array([i not in history | fixed for i in range(len(NAMES))])
        w = fit_logistic(data.x, y, sw, w, self.w0, first, self.l2)
        floor = self.min_base_weight
        if floor is not None and w[BASE] < floor:
            w[BASE] = floor
            first[BASE] = False
            w = fit_logistic(data.x, y, sw, w, self.w0, first, self.l2)
        second = np.array([i in history - fixed for i in range(len(NAMES))])
        if second.any():
            w = fit_logistic(data.x, y, sw, w, self.w0, second, self.l2)
        self.w = w
        self.fits += 1
        self.rows = len(data)

    # -- write time: agreement with neighbours ---------------------------------------------------------
    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        if new.answer is None:
            return {}
        deltas: dict[str, dict[str, float]] = {new.id: {"agree": 0.0, "agree_total": 0.0}}
        for nb in sorted(neighbours, key=lambda p: -p.sim)[: self.neighbours]:
            if nb.answer is None or nb.id == new.id or nb.sim <= 0:
                continue
            same = float(nb.answer == new.answer) * nb.sim
            deltas[new.id]["agree"] += same
            deltas[new.id]["agree_total"] += nb.sim
            deltas[nb.id] = {"agree": same, "agree_total": nb.sim}
        return deltas

    # -- persistence ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "features": list(NAMES),
            "w": self.w.tolist(),
            "fits": self.fits,
            "rows": self.rows,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A state of this format and feature set; any other (an older memq's) leaves the learner cold."""
        if state.get("format") != STATE_FORMAT or state.get("features") != list(NAMES):
            return
        self.w = np.asarray(state["w"], dtype=np.float64)
        if self.min_base_weight is not None and self.w[BASE] < self.min_base_weight:
            self.w[BASE] = self.min_base_weight
        self.fits = int(state.get("fits", 0))
        self.rows = int(state.get("rows", 0))
