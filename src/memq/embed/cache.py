"""A content-addressed embedding cache around any :class:`~memq.embed.base.Embedder`.

The key of a text is ``sha256(model_id + "\\0" + kind + "\\0" + text)`` with ``kind`` either
``"doc"`` or ``"query"`` (an embedder may treat the two differently, e.g. with prefixes). Vectors
live in an in-memory LRU and, optionally, in a SQLite file so that repeated runs (benchmarks,
re-imports) never embed the same text twice. Only the misses of a call go to the inner embedder,
in one batch, each distinct text once.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from memq._closing import Closing
from memq.embed.base import Embedder
from memq.embed.hashing import check_texts
from memq.errors import EmbeddingError, InvalidInputError

log = logging.getLogger(__name__)

EmbedKind = Literal["doc", "query"]
_SQL_CHUNK = 500  # keys per SELECT ... IN (...), well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memq_embedding_cache (
    key BLOB PRIMARY KEY,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL
) WITHOUT ROWID
"""


def cache_key(model_id: str, kind: EmbedKind, text: str) -> bytes:
    """The 32-byte content hash a vector is cached under."""
    return hashlib.sha256(f"{model_id}\0{kind}\0{text}".encode()).digest()


class CachedEmbedder(Closing):
    """Wraps ``inner``; same ``model_id`` and ``dim``.

    ``max_entries`` bounds the in-memory LRU (0 disables it); the SQLite file at ``path``, if
    given, is unbounded and shared safely between threads and processes (WAL mode).

    Counters: every vector returned is either a ``miss`` (computed by the inner embedder in this
    call) or a ``hit`` (taken from memory, from disk, or from an identical text earlier in the
    same call), so ``hits + misses`` is the number of vectors returned.
    """

    def __init__(self, inner: Embedder, max_entries: int = 100_000, path: str | Path | None = None) -> None:
        if max_entries < 0:
            raise InvalidInputError(f"max_entries must be >= 0, got {max_entries}")
        self.inner = inner
        self.model_id: str = inner.model_id
        self.dim: int = int(inner.dim)
        self.max_entries = max_entries
        self.path = None if path is None else str(path)
        self.hits = 0
        self.misses = 0
        self._memory: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self._db = self._open(self.path)

    def __repr__(self) -> str:
        return f"CachedEmbedder({self.inner!r}, max_entries={self.max_entries}, path={self.path!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise EmbeddingError(f"cannot open the embedding cache at {path!r}: {exc}") from exc
        return db

    def close(self) -> None:
        """Close the SQLite file (the in-memory cache keeps working)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __len__(self) -> int:
        """Entries in the in-memory LRU."""
        return len(self._memory)

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    # -- Embedder --------------------------------------------------------------------------------

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [cache_key(self.model_id, "doc", t) for t in items]
        found = self._lookup(keys)
        missing: dict[bytes, str] = {}
        for key, text in zip(keys, items, strict=True):
            if key not in found and key not in missing:
                missing[key] = text
        if missing:
            computed = np.asarray(self.inner.embed_documents(list(missing.values())), dtype=np.float32)
            if computed.shape != (len(missing), self.dim):
                raise EmbeddingError(
                    f"{self.model_id}: inner embedder returned shape {computed.shape} "
                    f"for {len(missing)} texts, expected {(len(missing), self.dim)}"
                )
            fresh = dict(zip(missing, computed, strict=True))
            self._store(fresh)
            found.update(fresh)
        with self._lock:
            self.misses += len(missing)
            self.hits += len(items) - len(missing)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        key = cache_key(self.model_id, "query", text)
        vector = self._lookup([key]).get(key)
        if vector is not None:
            with self._lock:
                self.hits += 1
            return np.array(vector, dtype=np.float32)  # a copy: callers may not touch the cache
        computed = np.asarray(self.inner.embed_query(text), dtype=np.float32)
        if computed.shape != (self.dim,):
            raise EmbeddingError(
                f"{self.model_id}: inner embedder returned shape {computed.shape} for a query, "
                f"expected ({self.dim},)"
            )
        self._store({key: computed})
        with self._lock:
            self.misses += 1
        return computed.copy()

    # -- internals -------------------------------------------------------------------------------

    def _remember(self, key: bytes, vector: np.ndarray) -> None:
        if self.max_entries == 0:
            return
        self._memory[key] = vector
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_entries:
            self._memory.popitem(last=False)

    def _lookup(self, keys: Iterable[bytes]) -> dict[bytes, np.ndarray]:
        """Vectors already cached (memory first, then disk), by key."""
        found: dict[bytes, np.ndarray] = {}
        wanted: list[bytes] = []
        with self._lock:
            for key in keys:
                if key in found:
                    continue
                vector = self._memory.get(key)
                if vector is not None:
                    self._memory.move_to_end(key)
                    found[key] = vector
                elif key not in wanted:
                    wanted.append(key)
            if wanted and self._db is not None:
                for key, vector in self._read_disk(wanted).items():
                    found[key] = vector
                    self._remember(key, vector)
        return found

    def _read_disk(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        assert self._db is not None
        out: dict[bytes, np.ndarray] = {}
        try:
            for start in range(0, len(keys), _SQL_CHUNK):
                chunk = keys[start : start + _SQL_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, dim, vector FROM memq_embedding_cache WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, dim, blob in rows:
                    if dim == self.dim and len(blob) == 4 * self.dim:
                        vector = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                        vector.setflags(write=False)
                        out[bytes(key)] = vector
        except sqlite3.Error as exc:  # a broken cache must not break embedding
            log.warning("embedding cache %s: read failed (%s); treating as misses", self.path, exc)
        return out

    def _store(self, fresh: dict[bytes, np.ndarray]) -> None:
        with self._lock:
            for key, vector in fresh.items():
                vector = np.array(vector, dtype=np.float32)  # own copy, frozen
                vector.setflags(write=False)
                fresh[key] = vector
                self._remember(key, vector)
            if self._db is None:
                return
            rows = [(key, self.dim, vector.astype("<f4").tobytes()) for key, vector in fresh.items()]
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO memq_embedding_cache (key, dim, vector) VALUES (?, ?, ?)",
                        rows,
                    )
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.warning(
                    "embedding cache %s: write failed (%s); vectors kept in memory only", self.path, exc
                )
