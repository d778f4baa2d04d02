"""``memrl``: MemRL's two-phase retrieval and utility update (arXiv 2601.03192; docs/algorithms.md §memrl).

Phase A: the window's top ``k1`` by the recipe (optionally gated: dense cosine ≥ δ). Phase B: score
(1 − λ)·z(recipe score) + λ·z(Q), each z over the phase-A candidates and clipped to ±3, keep the top
k; with probability ε show a uniform random k-subset of the phase-A candidates instead. Update:
Q ← Q + α(r − Q); a record never updated has Q_init.

memq runs MemRL as a reranker of the one read path: the similarity term is the recipe's score, which
with ``mode="dense"`` is the min-max normalised cosine, and a z-score does not change under an affine
map, so there z(score) = z(cosine) exactly, as MemRL writes it. ``sim_mean``/``sim_std`` given: the
similarity term is the dense cosine z-scored with these fixed corpus statistics, as the released code
does. The gate δ is off by default (``delta=None``): a fixed cosine threshold returns nothing for a
query whose matches are lexical; set δ to reproduce MemRL, which then injects nothing when no
candidate passes. With all Q equal (no feedback yet) z(Q) = 0 and the order is the recipe's.
"""

from __future__ import annotations

from math import comb

import numpy as np

from memq.learn.base import NoModel, Selection, Window, clipped_z, top_k
from memq.learn.base import NoRecordState as _NoWriteHook
from memq.retrieve.features import Q_INIT
from memq.types import Utility


def memrl_q(q: float | None, credit: float, alpha: float = 0.3, q_init: float = Q_INIT) -> float:
    """MemRL's update Q ← Q + α(r − Q) (γ = 0); also memq's per-record ``q`` for every other policy."""
    current = q_init if q is None else q
    return current + alpha * (credit - current)


class MemRLLearner(_NoWriteHook, NoModel):
    name = "memrl"
    needs_vectors = False
    version = "1"
    fit_every = 0  # per-record Q only: nothing global to fit

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        lam: float = 0.5,
        delta: float | None = None,
        k1: int | None = None,
        epsilon: float = 0.0,
        q_init: float = Q_INIT,
        sim_mean: float | None = None,
        sim_std: float | None = None,
    ) -> None:
        if not 0 < alpha <= 1 or not 0 <= lam <= 1 or not 0 <= epsilon <= 1 or (k1 is not None and k1 < 1):
            raise ValueError("memrl needs 0 < alpha <= 1, 0 <= lam <= 1, 0 <= epsilon <= 1 and k1 >= 1")
        self.alpha, self.lam, self.delta, self.k1 = alpha, lam, delta, k1
        self.epsilon, self.q_init = epsilon, q_init
        self.sim_mean, self.sim_std = sim_mean, sim_std

    @property
    def trained(self) -> bool:
        return False  # what it learns lives in each record's q (a feature of the window)

    def _phase_a(self, window: Window) -> np.ndarray:
        idx = np.arange(len(window))
        if self.delta is not None:
            idx = idx[window.col("dense")[idx] >= self.delta]
        return idx if self.k1 is None else idx[: self.k1]  # the window is in the recipe's order

    def score(self, window: Window) -> np.ndarray:
        score = np.full(len(window), -np.inf)
        cand = self._phase_a(window)
        if len(cand) == 0:
            return score
        if self.sim_mean is not None or self.sim_std is not None:
            z_sim = clipped_z(window.col("dense")[cand], self.sim_mean, self.sim_std)
        else:
            z_sim = clipped_z(window.col("base")[cand])
        score[cand] = (1 - self.lam) * z_sim + self.lam * clipped_z(window.col("q")[cand])
        return score

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        score = self.score(window)
        cand = np.flatnonzero(np.isfinite(score))
        if len(cand) == 0:  # the gate let nothing through: inject nothing
            return Selection([], [], {})
        greedy = [int(cand[i]) for i in top_k(score[cand], k)]
        m, shown = len(cand), min(k, len(cand))
        explore = self.epsilon > 0 and rng.random() < self.epsilon
        chosen = [int(c) for c in rng.choice(cand, size=shown, replace=False)] if explore else greedy
        # P(shown) = (1 − ε)·[in the greedy set] + ε·P(in a uniform random subset of size `shown`)
        p_random = comb(m - 1, shown - 1) / comb(m, shown) if shown else 0.0
        props = [(1 - self.epsilon) * (i in greedy) + self.epsilon * p_random for i in chosen]
        scores = {window.ids[int(c)]: float(score[c]) for c in cand}
        return Selection([window.ids[i] for i in chosen], props, scores)

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        return memrl_q(utility.q, credit, self.alpha, self.q_init), dict(utility.stats)
