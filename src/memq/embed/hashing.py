"""Small shared helpers for embedders, and a deterministic feature-hashing embedder.

:class:`HashingEmbedder` needs no model and no network: it hashes lower-cased word unigrams and
bigrams into ``dim`` signed buckets. Texts sharing words get a positive cosine; it has no notion of
meaning. Use it for tests and for wiring checks, not for retrieval quality.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np

from memq.errors import EmbeddingError, InvalidInputError

_WORD = re.compile(r"\w+", re.UNICODE)


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validate an ``embed_documents`` argument and return it as a list.

    A bare ``str`` is refused: iterating it would silently embed single characters.
    """
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("embed_documents takes a sequence of strings, not a single string")
    try:
        items = list(texts)
    except TypeError as exc:
        raise InvalidInputError(
            f"embed_documents takes a sequence of strings, got {type(texts).__name__}"
        ) from exc
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidInputError(f"texts[{i}] must be a str, got {type(item).__name__}")
    return items


def l2_normalize_rows(vectors: np.ndarray, *, source: str) -> np.ndarray:
    """Return float32 rows scaled to unit length; zero or non-finite rows are an EmbeddingError."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim != 2:
        raise EmbeddingError(f"{source} returned an array of shape {arr.shape}, expected 2-d")
    if arr.size and not np.isfinite(arr).all():
        raise EmbeddingError(f"{source} returned non-finite values (NaN or inf)")
    norms = np.linalg.norm(arr.astype(np.float64), axis=1, keepdims=True)
    if arr.shape[0] and (norms == 0).any():
        bad = int(np.flatnonzero(norms[:, 0] == 0)[0])
        raise EmbeddingError(f"{source} returned an all-zero vector (row {bad}); it cannot be normalised")
    return np.ascontiguousarray(arr / norms, dtype=np.float32) if arr.shape[0] else arr


def _bucket(feature: str, dim: int) -> tuple[int, float]:
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


class HashingEmbedder:
    """Deterministic, dependency-free embedder (feature hashing of words and word bigrams)."""

    def __init__(self, dim: int = 256) -> None:
        if dim < 2:
            raise InvalidInputError(f"dim must be >= 2, got {dim}")
        self.dim = dim
        self.model_id = f"memq-hashing-v1:{dim}"

    def __repr__(self) -> str:
        return f"HashingEmbedder(dim={self.dim})"

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.dim, dtype=np.float64)
        words = [w.lower() for w in _WORD.findall(text)]
        features = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
        if not features:  # empty or punctuation-only text: still a stable unit vector
            features = ["\0raw:" + text]
        for feature in features:
            index, sign = _bucket(feature, self.dim)
            vec[index] += sign
        norm = np.linalg.norm(vec)
        if norm == 0:  # features cancelled out exactly; fall back to the raw text
            index, sign = _bucket("\0raw:" + text, self.dim)
            vec[index], norm = sign, 1.0
        return (vec / norm).astype(np.float32)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vector(t) for t in items])

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        return self._vector(text)
