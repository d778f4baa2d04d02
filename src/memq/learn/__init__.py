"""Learning from reward: retrieval policies (learners) behind one protocol.

``make_learner(name, **params)`` builds one by name: ``similarity`` (no learning: the recipe's order),
``memrl``, ``memento_q`` and ``memq`` (memq's feedback-trained reranker). Each reranks the same window
of the one read path (:mod:`memq.learn.base`). Formulas: docs/algorithms.md.
"""

from __future__ import annotations

from typing import Any

from memq.errors import InvalidInputError
from memq.learn.base import Learner, PoolItem, Selection, TrainingData, Window

__all__ = ["LEARNERS", "Learner", "PoolItem", "Selection", "TrainingData", "Window", "make_learner"]

LEARNERS = ("similarity", "memrl", "memento_q", "memq")


def make_learner(name: str, **params: Any) -> Learner:
    if name == "similarity":
        from memq.learn.similarity import SimilarityLearner

        return SimilarityLearner(**params)
    if name == "memrl":
        from memq.learn.memrl import MemRLLearner

        return MemRLLearner(**params)
    if name == "memento_q":
        from memq.learn.memento import MementoQLearner

        return MementoQLearner(**params)
    if name == "memq":
        from memq.learn.contextual import ContextualLearner

        return ContextualLearner(**params)
    raise InvalidInputError(f"unknown learner {name!r}; choose one of {', '.join(LEARNERS)}")
