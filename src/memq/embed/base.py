"""The embedder protocol, and the lazy model loading the local embedders share."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Generic, Protocol, TypeVar, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors.

    ``model_id`` names the embedding space (stores refuse vectors from another space);
    ``dim`` is the vector length. Both must be known without embedding anything.
    """

    model_id: str
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """Embed texts to store: shape (len(texts), dim), float32, unit norm."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query: shape (dim,), float32, unit norm."""
        ...


M = TypeVar("M")


class LazyModel(Generic[M]):
    """Mixin: a model built by ``_create`` on first use (``_load``), once even when threads race;
    ``loaded`` says whether it is built yet. Call ``LazyModel.__init__`` before the first ``_load``."""

    def __init__(self) -> None:
        self._model: M | None = None
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> M:
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = self._create()
            return self._model

    def _create(self) -> M:
        raise NotImplementedError
