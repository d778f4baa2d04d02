"""``memq``: memq's own learner — a contextual utility model with per-record evidence.

Why: MemRL learns a Q per record, so a record says nothing until it has been shown and credited,
and its rule cannot tell a misleading record from a merely unlucky one. memq's learner predicts
p(reward | record shown) from features that exist *before* any feedback, and lets each record's own
evidence move it away from that prediction:

    φ(q, m) = [1, sim(q, m), agree(m), ev(m)]
    p(q, m) = σ(wᵀφ)

* agree(m) — agreement with neighbours: among the records nearest to m when they were written, the
  similarity-weighted share whose answer equals m's answer (experiences; 0.5 when unknown). A
  poisoned or wrong experience disagrees with its neighbours, so it scores low with no feedback.
* ev(m) — the record's own evidence: logit of its Beta(1 + s, 1 + f) posterior mean, times the
  confidence n/(n + 2), from its credited rewards (s successes, f failures, n = s + f).
* w is fit by L2-regularised logistic regression (Newton/IRLS) on the replay buffer of
  (φ at decision time, credited reward) rows every ``fit_every`` feedbacks. Because the weights are
  learned, a feature that does not predict reward (agreement on clean data) gets a small weight and
  the policy falls back to similarity.
* The similarity weight is constrained: w_sim ≥ ``min_sim_weight`` (0 by default), solved exactly
  (a convex problem with one bound: if the free optimum breaks it, the optimum lies on the bound, so
  w_sim is fixed there and the other weights refit). Why: with ``shown`` credit every record shown
  for a query gets the same reward, so the rows carry no within-query signal about similarity and
  w_sim is fit on *between-query* variation alone (which queries earn more), which can be negative
  (LoCoMo: questions whose shown records are more similar were not the ones whose evidence was shown).
  Applied within a query, a negative w_sim reverses the similarity order of every record the model has
  no evidence about. With w_sim ≥ 0, two records that differ only in similarity are never inverted;
  at w_sim = 0 they tie and keep the candidates' similarity order (``top_k`` is stable).
* Selection: top-k by p + κ·σ_p, where σ_p is the Laplace (Gaussian) posterior's standard deviation of
  wᵀφ mapped through σ — an upper confidence bound, so it explores only records whose uncertainty
  could lift them above the greedy choice. Deterministic: propensity 1.

Rewards are mapped to [0, 1] with ``reward_range`` (default (0, 1); use (−1, 1) for ±1 rewards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.learn.base import Outcome, PoolItem, Selection, top_k
from memq.types import Utility

N_FEATURES = 4
SIM = 1  # index of sim(q, m) in φ


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -30, 30)))


def _loss(x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> float:
    """Σ logloss(σ(xw), y) + l2/2·‖w‖², computed stably."""
    z = x @ w
    return float((np.logaddexp(0.0, z) - y * z).sum() + 0.5 * l2 * (w @ w))


def _newton(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, free: np.ndarray, l2: float, iterations: int
) -> np.ndarray:
    """Minimise :func:`_loss` over the ``free`` coordinates (the others stay put).

    Newton steps with backtracking (halve the step until the loss does not rise): plain Newton
    overshoots when the rows are nearly separable and σ saturates."""
    w = w.copy()
    loss = _loss(x, y, w, l2)
    for _ in range(iterations):
        p = _sigmoid(x @ w)
        grad = (x.T @ (p - y) + l2 * w)[free]
        hess = (x[:, free] * (p * (1 - p))[:, None]).T @ x[:, free] + l2 * np.eye(int(free.sum()))
        step = np.linalg.solve(hess, grad)
        for _ in range(30):
            trial = w.copy()
            trial[free] -= step
            trial_loss = _loss(x, y, trial, l2)
            if trial_loss <= loss + 1e-12:
                break
            step = step / 2
        else:
            break
        w, loss = trial, trial_loss
        if np.abs(step).max() < 1e-6:
            break
    return w


class ContextualLearner:
    name = "memq"
    version = "1"

    def __init__(
        self,
        *,
        k1: int = 10,
        neighbours: int = 16,
        kappa: float = 0.0,
        l2: float = 1.0,
        fit_every: int = 50,
        buffer: int = 20_000,
        reward_range: tuple[float, float] = (0.0, 1.0),
        min_sim_weight: float | None = 0.0,
    ) -> None:
        if k1 < 1 or neighbours < 1 or fit_every < 1 or buffer < 10 or reward_range[1] <= reward_range[0]:
            raise ValueError(
                "memq learner: k1, neighbours, fit_every >= 1, buffer >= 10, reward_range lo < hi"
            )
        if min_sim_weight is not None and not np.isfinite(min_sim_weight):
            raise ValueError("memq learner: min_sim_weight must be a finite number or None (unconstrained)")
        self.k1, self.neighbours, self.kappa, self.l2 = k1, neighbours, kappa, l2
        self.min_sim_weight = None if min_sim_weight is None else float(min_sim_weight)
        self.fit_every, self.buffer, self.reward_range = fit_every, buffer, reward_range
        # before any fit: increasing in similarity only, so the cold policy is the similarity baseline
        self.w = np.array([-2.5, 5.0, 0.0, 0.0])
        self.cov = np.eye(N_FEATURES)
        self._x: list[list[float]] = []
        self._y: list[float] = []
        self._since_fit = 0

    # -- features ------------------------------------------------------------------------------------
    def _y01(self, reward: float) -> float:
        lo, hi = self.reward_range
        return float(min(1.0, max(0.0, (reward - lo) / (hi - lo))))

    def features(self, items: Sequence[PoolItem]) -> np.ndarray:
        out = np.empty((len(items), N_FEATURES))
        for i, item in enumerate(items):
            st = item.utility.stats
            total = st.get("agree_total", 0.0)
            agree = st.get("agree", 0.0) / total if total > 0 else 0.5
            n = st.get("n", 0.0)
            mean = (st.get("s", 0.0) + 1.0) / (n + 2.0)
            out[i] = (1.0, item.sim, agree, np.log(mean / (1.0 - mean)) * n / (n + 2.0))
        return out

    # -- policy --------------------------------------------------------------------------------------
    def select(
        self, query_vector: np.ndarray, pool: Sequence[PoolItem], k: int, rng: np.random.Generator
    ) -> Selection:
        if not pool:
            return Selection([], [], {})
        sims = np.array([p.sim for p in pool])
        cand = top_k(sims, self.k1)
        phi = self.features([pool[i] for i in cand])
        logits = phi @ self.w
        score = _sigmoid(logits)
        if self.kappa > 0:
            sd = np.sqrt(np.einsum("ij,jk,ik->i", phi, self.cov, phi))
            score = score + self.kappa * score * (1 - score) * sd  # delta method: sd of σ(wᵀφ)
        order = top_k(score, k)
        ids = [pool[int(cand[i])].id for i in order]
        return Selection(
            ids, [1.0] * len(ids), {pool[int(c)].id: float(s) for c, s in zip(cand, score, strict=True)}
        )

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        stats = dict(utility.stats)
        y = self._y01(credit)
        stats["n"] = stats.get("n", 0.0) + 1.0
        stats["s"] = stats.get("s", 0.0) + y
        return (stats["s"] + 1.0) / (stats["n"] + 2.0), stats

    def observe(self, outcome: Outcome) -> None:
        items = {p.id: p for p in outcome.pool}
        credited = [items[i] for i in outcome.shown if i in outcome.credits and i in items]
        if not credited:
            return
        phi = self.features(credited)
        for row, item in zip(phi, credited, strict=True):
            self._x.append(row.tolist())
            self._y.append(self._y01(outcome.credits[item.id]))
        if len(self._x) > self.buffer:
            del self._x[: len(self._x) - self.buffer]
            del self._y[: len(self._y) - self.buffer]
        self._since_fit += 1
        if self._since_fit >= self.fit_every:
            self.fit()

    def fit(self, iterations: int = 6) -> None:
        """L2-regularised logistic regression by Newton's method on the replay buffer, w_sim ≥ floor.

        The objective is strictly convex and the constraint a single bound, so the constrained optimum
        is the free one when that satisfies the bound, and otherwise lies on the bound: w_sim is then
        fixed at the floor and the other weights are refit with sim·floor as an offset.
        """
        self._since_fit = 0
        if len(self._x) < 10:
            return
        x, y = np.asarray(self._x), np.asarray(self._y)
        free = np.ones(N_FEATURES, dtype=bool)
        w = _newton(x, y, self.w.copy(), free, self.l2, iterations)
        floor = self.min_sim_weight
        if floor is not None and w[SIM] < floor:
            start = self.w.copy()
            start[SIM] = floor
            free[SIM] = False
            w = _newton(x, y, start, free, self.l2, iterations)
        self.w = w
        p = _sigmoid(x @ w)
        self.cov = np.linalg.inv((x * (p * (1 - p))[:, None]).T @ x + self.l2 * np.eye(N_FEATURES))

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
        keep = min(len(self._x), 2000)
        return {
            "w": self.w.tolist(),
            "cov": self.cov.tolist(),
            "x": self._x[-keep:] if keep else [],
            "y": self._y[-keep:] if keep else [],
            "since_fit": self._since_fit,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w = np.asarray(state["w"], dtype=np.float64)
        if self.min_sim_weight is not None and self.w[SIM] < self.min_sim_weight:
            # a state saved before the bound (or with a lower one): project onto it now rather than
            # invert the similarity order until the next fit, which then solves the bounded problem
            self.w[SIM] = self.min_sim_weight
        self.cov = np.asarray(state["cov"], dtype=np.float64)
        self._x = [list(r) for r in state.get("x", [])]
        self._y = list(state.get("y", []))
        self._since_fit = int(state.get("since_fit", 0))
