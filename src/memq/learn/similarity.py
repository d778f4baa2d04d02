"""``similarity``: no learning — the recipe's own order (ExpRAG; Memento's non-parametric read).

With ``mode="dense"`` the recipe is plain cosine similarity; by default it is memq's hybrid recipe.
The baseline every learner is measured against, and what every learner serves before it has learned.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from memq.learn.base import NoRecordState, Selection, TrainingData, Window, greedy, recipe_scores


class SimilarityLearner(NoRecordState):
    name = "similarity"
    needs_vectors = False
    version = "1"
    trained = False
    fit_every = 0  # nothing to fit

    def score(self, window: Window) -> np.ndarray:
        return recipe_scores(window)

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        return greedy(window, self.score(window), k)

    def fit(self, data: TrainingData) -> None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None
