"""The embedder protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

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
