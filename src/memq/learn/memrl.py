"""``memrl``: MemRL's two-phase retrieval and utility update (arXiv 2601.03192; docs/algorithms.md §memrl).

Phase A: keep the candidates with sim ≥ δ, top k1 by sim. Phase B: score
(1 − λ)·z(sim) + λ·z(Q), z clipped to ±3, keep the top k2; with probability ε show a uniform random
k2-subset of the pool instead. Update: Q ← Q + α(r − Q), a record never updated has Q_init.

``sim_mean``/``sim_std`` given: z(sim) uses these fixed corpus statistics, as the released code does
(per-dataset constants); left None: the pool's statistics, as the paper writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

from memq.learn.base import NoState, PoolItem, Selection, clipped_z, top_k
from memq.types import Utility


class MemRLLearner(NoState):
    name = "memrl"
    version = "1"

    def __init__(
        self,
        *,
        alpha: float = 0.3,
        lam: float = 0.5,
        delta: float = 0.5,
        k1: int = 5,
        epsilon: float = 0.0,
        q_init: float = 0.5,
        sim_mean: float | None = None,
        sim_std: float | None = None,
    ) -> None:
        if not 0 < alpha <= 1 or not 0 <= lam <= 1 or not 0 <= epsilon <= 1 or k1 < 1:
            raise ValueError("memrl needs 0 < alpha <= 1, 0 <= lam <= 1, 0 <= epsilon <= 1 and k1 >= 1")
        self.alpha, self.lam, self.delta, self.k1 = alpha, lam, delta, k1
        self.epsilon, self.q_init = epsilon, q_init
        self.sim_mean, self.sim_std = sim_mean, sim_std

    def select(
        self, query_vector: np.ndarray, pool: Sequence[PoolItem], k: int, rng: np.random.Generator
    ) -> Selection:
        sims = np.array([p.sim for p in pool], dtype=np.float64)
        gated = np.flatnonzero(sims >= self.delta)
        if len(gated) == 0:  # empty pool after the gate: inject nothing
            return Selection([], [], {})
        cand = gated[top_k(sims[gated], self.k1)]
        q = np.array([self.q_init if pool[i].utility.q is None else pool[i].utility.q for i in cand])
        z_sim = clipped_z(sims[cand], self.sim_mean, self.sim_std)
        score = (1 - self.lam) * z_sim + self.lam * clipped_z(q)
        greedy = [int(cand[i]) for i in top_k(score, k)]
        m, shown = len(cand), min(k, len(cand))
        explore = self.epsilon > 0 and rng.random() < self.epsilon
        chosen = [int(c) for c in rng.choice(cand, size=shown, replace=False)] if explore else greedy
        # P(shown) = (1 − ε)·[in greedy set] + ε·P(in a uniform random subset of size `shown`)
        p_random = comb(m - 1, shown - 1) / comb(m, shown) if shown else 0.0
        props = [(1 - self.epsilon) * (i in greedy) + self.epsilon * p_random for i in chosen]
        scores = {pool[int(c)].id: float(s) for c, s in zip(cand, score, strict=True)}
        return Selection([pool[i].id for i in chosen], props, scores)

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        q = self.q_init if utility.q is None else utility.q
        return q + self.alpha * (credit - q), dict(utility.stats)
