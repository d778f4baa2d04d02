"""The SQLite store's vector index: an HNSW graph (usearch) kept beside the database file.

The rows in SQLite are the truth; the index is a cache of their vectors that can always be
rebuilt. It is keyed by the row's integer ``rowid`` and tracks two watermarks:

* ``rows``: every row with ``rowid <= rows`` that has a vector is in the index;
* ``removed``: every entry of the ``vec_removed`` log with ``seq <= removed`` is applied.

``catch_up`` brings the index level with the database (rows other processes wrote, purges they
made). The index is saved with its watermarks on close; a process killed before saving leaves an
older file whose watermarks say how far it got, so opening only adds what is missing. A file that
cannot be read, or whose entry count disagrees with its watermarks, is rebuilt from the rows.
Why usearch: see docs/benchmarks-ann.md.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 128
HNSW_EXPANSION_SEARCH = 64


@dataclass
class Watermark:
    rows: int = 0
    removed: int = 0
    space: str = ""  # model id + dim; a change (re-embed) forces a rebuild


class VectorIndex:
    def __init__(self, dim: int) -> None:
        from usearch.index import Index

        self.dim = dim
        self._index = Index(
            ndim=dim,
            metric="ip",
            dtype="f32",
            connectivity=HNSW_CONNECTIVITY,
            expansion_add=HNSW_EXPANSION_ADD,
            expansion_search=HNSW_EXPANSION_SEARCH,
        )
        self.mark = Watermark()
        # a dense mirror of the vectors for exact search over a subset (usearch's get() of many keys
        # returns one array per key and costs ~4 µs each; a take() from this matrix costs ~0.1 µs)
        self._mat = np.empty((0, dim), dtype=np.float32)
        self._slot = np.full(0, -1, dtype=np.int64)  # rowid -> row of _mat (-1: absent); rowids are dense
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._index)

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys) == 0:
            return
        keys = np.asarray(keys, dtype=np.uint64)
        fresh = ~np.asarray(self._index.contains(keys), dtype=bool).reshape(-1)
        if fresh.any():
            new_vecs = np.ascontiguousarray(vectors[fresh], dtype=np.float32)
            self._index.add(keys[fresh], new_vecs, threads=0)
            self._mirror(keys[fresh], new_vecs)

    def _mirror(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.int64)
        need = int((self._slot >= 0).sum()) + len(keys)
        if need > len(self._mat):
            grown = np.empty((max(need, 2 * len(self._mat), 1024), self.dim), dtype=np.float32)
            grown[: len(self._mat)] = self._mat
            self._free.extend(range(len(grown) - 1, len(self._mat) - 1, -1))
            self._mat = grown
        top = int(keys.max()) + 1
        if top > len(self._slot):
            slot = np.full(max(top, 2 * len(self._slot)), -1, dtype=np.int64)
            slot[: len(self._slot)] = self._slot
            self._slot = slot
        slots = np.array([self._free.pop() for _ in range(len(keys))], dtype=np.int64)
        self._slot[keys] = slots
        self._mat[slots] = vectors

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._index.remove(np.asarray(keys, dtype=np.uint64))
            keys = np.asarray(keys, dtype=np.int64)
            keys = keys[keys < len(self._slot)]
            slots = self._slot[keys]
            self._free.extend(int(x) for x in slots[slots >= 0])
            self._slot[keys] = -1

    def search(self, vector: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``n`` (keys, cosine similarities), best first."""
        n = min(n, len(self._index))
        if n <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        matches = self._index.search(np.asarray(vector, dtype=np.float32), n, threads=1)
        return np.asarray(matches.keys, dtype=np.int64), 1.0 - np.asarray(matches.distances, dtype=np.float32)

    def vectors(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The stored vectors of ``keys`` that are present, as (present keys, matrix)."""
        keys = np.asarray(keys, dtype=np.int64)
        keys = keys[(keys >= 0) & (keys < len(self._slot))]
        slots = self._slot[keys]
        have = slots >= 0
        return keys[have], self._mat[slots[have]]

    def all_keys(self) -> np.ndarray:
        return np.asarray(self._index.keys, dtype=np.int64)

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write index then watermark, each atomically (temp file + rename)."""
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        self._index.save(str(tmp))
        os.replace(tmp, path)
        meta = {
            "rows": self.mark.rows,
            "removed": self.mark.removed,
            "space": self.mark.space,
            "count": len(self),
        }
        side = _sidecar(path)
        tmp_side = side.with_name(side.name + f".tmp{os.getpid()}")
        tmp_side.write_text(json.dumps(meta))
        os.replace(tmp_side, side)

    @classmethod
    def load(cls, path: Path, dim: int, space: str) -> VectorIndex | None:
        """The saved index, or None when it is missing, unreadable or inconsistent."""
        side = _sidecar(path)
        try:
            meta = json.loads(side.read_text())
            if meta.get("space") != space or not path.exists():
                return None
            index = cls(dim)
            index._index.load(str(path))
            if len(index) != int(meta["count"]) or index._index.ndim != dim:
                return None
            keys = np.asarray(index._index.keys, dtype=np.uint64)
            if len(keys):
                index._mirror(keys.astype(np.int64), np.vstack(index._index.get(keys)).astype(np.float32))
            index.mark = Watermark(rows=int(meta["rows"]), removed=int(meta["removed"]), space=space)
            return index
        except (OSError, ValueError, KeyError, RuntimeError, TypeError):
            return None


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")
