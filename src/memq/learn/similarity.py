"""``similarity``: top-k by cosine (ExpRAG; Memento's non-parametric read). The baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memq.learn.base import NoState, PoolItem, Selection, top_k


class SimilarityLearner(NoState):
    name = "similarity"
    version = "1"

    def select(
        self, query_vector: np.ndarray, pool: Sequence[PoolItem], k: int, rng: np.random.Generator
    ) -> Selection:
        sims = np.array([p.sim for p in pool], dtype=np.float64)
        order = top_k(sims, k)
        return Selection([pool[i].id for i in order], [1.0] * len(order), {p.id: p.sim for p in pool})
