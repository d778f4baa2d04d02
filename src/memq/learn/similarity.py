"""``similarity``: no learning — the recipe's own order (ExpRAG; Memento's non-parametric read).

With ``mode="dense"`` the recipe is plain cosine similarity; by default it is memq's hybrid recipe.
The baseline every learner is measured against, and what every learner serves before it has learned.
"""

from __future__ import annotations

import numpy as np

from memq.learn.base import NoModel, NoRecordState, Selection, Window, greedy, recipe_scores


class SimilarityLearner(NoRecordState, NoModel):
    name = "similarity"
    needs_vectors = False
    version = "1"
    trained = False
    fit_every = 0  # nothing to fit

    def score(self, window: Window) -> np.ndarray:
        return recipe_scores(window)

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        return greedy(window, self.score(window), k)
