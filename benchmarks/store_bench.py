#!/usr/bin/env python3
"""End-to-end store benchmark: memq's SQLite and PostgreSQL stores at 10k and 100k records.

What it measures, in one run, for each backend and size:

1. **add**: batch add throughput (records/s) through ``Memory.add`` in batches of 500 into a fresh
   store. Embedding is excluded: the embedder is a warm :class:`CachedEmbedder`, so every vector is
   an in-memory cache lookup (the lookup time is measured and reported beside the total).
2. **search**: latency p50/p95 (ms) of ``Memory.search`` with k=10, ``mode="hybrid"`` (the
   default) and ``mode="dense"``, each (a) with embedding excluded (query vectors pre-embedded in
   the warm cache; the whole ``Memory.search`` path is timed, with a per-step breakdown of the
   store calls) and (b) with embedding included (a plain, uncached single-thread MiniLM embeds each
   query, the way a live search runs).

Beside them, in the same run: the raw ANN index of the SQLite store alone
(:class:`memq.store.sqlite.vectors.VectorIndex`: add throughput, single-query search p50/p95, and
exact numpy search for reference) and the embedder alone (single-query latency on 1 thread, batch
throughput on 1 and 2 threads).

Data: real conversational turns from LongMemEval (S sample + oracle) and LoCoMo, deduplicated and
cut to 1,000 characters; these give ~42k distinct texts, so the corpus is topped up with distinct
paragraphs (line-split pieces) of the longer turns. Queries are LongMemEval and LoCoMo questions.
Every text is embedded once with all-MiniLM-L6-v2 into a persistent cache
(benchmarks/.cache/embeddings.sqlite), so re-runs do not re-embed.

Usage::

    .venv/bin/python benchmarks/store_bench.py                 # full run: results JSON + docs page
    .venv/bin/python benchmarks/store_bench.py --quick         # smoke run, writes into benchmarks/.cache/
    .venv/bin/python benchmarks/store_bench.py --embed-only    # only fill the embedding cache
    .venv/bin/python benchmarks/store_bench.py --doc-only      # regenerate the docs page from the JSON
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from memq_bench.results import cpu_info, cpu_words

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
CACHE_DIR = BENCH_DIR / ".cache"
DEFAULT_CACHE = CACHE_DIR / "embeddings.sqlite"
DEFAULT_OUTPUT = BENCH_DIR / "results" / "store.json"
QUICK_OUTPUT = CACHE_DIR / "store-quick.json"
DEFAULT_DOC = ROOT / "docs" / "benchmarks-store.md"
QUICK_DOC = CACHE_DIR / "benchmarks-store-quick.md"
FULL_COMMAND = ".venv/bin/python benchmarks/store_bench.py"

MAX_CHARS = 1000  # texts are cut to this many characters
MIN_PIECE_CHARS = 40  # shortest paragraph used to top the corpus up
SPLIT_FROM_CHARS = 300  # only turns longer than this are split into paragraphs
SEED = 20240607
ADD_BATCH = 500
K = 10
WARMUP_QUERIES = 10
ANN_ADD_CHUNK = 20_000  # the SQLite store adds to its index in chunks of this many rows
EMBED_SAMPLE = 1024  # texts for the embedder's batch throughput
TENANT = "bench"
HASHING_DIM = 384  # --vectors hashing: the dimension of all-MiniLM-L6-v2

SOURCES = (
    ("longmemeval_s", "longmemeval/longmemeval_s_cleaned_sample60.json"),
    ("longmemeval_oracle", "longmemeval/longmemeval_oracle.json"),
    ("locomo", "locomo/locomo10.json"),
)

console = Console()


# -- data -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    text: str
    source: str
    unit: str  # "turn" (a whole conversational turn) or "paragraph" (a piece of a long turn)
    role: str  # "user" / "assistant" (LongMemEval) or "speaker" (LoCoMo)


def data_root(override: str | None) -> Path:
    if override:
        return Path(override)
    env = os.environ.get("MEMQ_DATA")
    if env:
        return Path(env)
    for base in (ROOT, *ROOT.parents):
        candidate = base / "shared" / "data"
        if candidate.is_dir():
            return candidate
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    raise SystemExit("cannot find shared/data: pass --data PATH or set MEMQ_DATA")


def _turns(source: str, data: Any) -> Iterator[tuple[str, str]]:
    """Every turn of a dataset as (role, text), in file order."""
    if source.startswith("longmemeval"):
        for item in data:
            for session in item["haystack_sessions"]:
                for turn in session:
                    yield str(turn.get("role", "")), turn["content"]
    else:
        for conv in data:
            sessions = conv["conversation"]
            numbers = sorted(
                int(m.group(1)) for key in sessions if (m := re.fullmatch(r"session_(\d+)", key))
            )
            for n in numbers:
                for turn in sessions[f"session_{n}"]:
                    yield "speaker", turn["text"]


def load_sources(root: Path) -> dict[str, Any]:
    out = {}
    for name, rel in SOURCES:
        path = root / rel
        if not path.exists():
            raise SystemExit(f"missing data file {path}")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def build_corpus(sources: dict[str, Any], target: int) -> tuple[list[Doc], dict[str, Any]]:
    """``target`` distinct texts: whole turns first, then paragraphs of long turns; then shuffled.

    Returns the corpus (fixed-seed shuffle, so every size is a prefix with the same mix) and a
    description of how it was made.
    """
    seen: set[str] = set()
    turns: list[Doc] = []
    raw: list[tuple[str, str, str]] = []
    for name, _ in SOURCES:
        for role, text in _turns(name, sources[name]):
            raw.append((name, role, text))
            cut = text.strip()[:MAX_CHARS]
            if cut and cut not in seen:
                seen.add(cut)
                turns.append(Doc(cut, name, "turn", role))
    distinct_turns = len(turns)
    pieces: list[Doc] = []
    if len(turns) < target:
        done: set[str] = set()
        for name, role, text in raw:
            if len(turns) + len(pieces) >= target:
                break
            if len(text) <= SPLIT_FROM_CHARS or text in done:
                continue
            done.add(text)
            for line in text.split("\n"):
                piece = line.strip()[:MAX_CHARS]
                if len(piece) >= MIN_PIECE_CHARS and piece not in seen:
                    seen.add(piece)
                    pieces.append(Doc(piece, name, "paragraph", role))
                    if len(turns) + len(pieces) >= target:
                        break
    corpus = (turns + pieces)[:target]
    random.Random(SEED).shuffle(corpus)
    info = {
        "turns_total": len(raw),
        "distinct_turns": distinct_turns,
        "paragraphs_added": max(0, len(corpus) - distinct_turns),
        "corpus_size": len(corpus),
        "mean_chars": round(float(np.mean([len(d.text) for d in corpus])), 1) if corpus else 0.0,
        "by_source": {name: sum(1 for d in corpus if d.source == name) for name, _ in SOURCES if corpus},
        "paragraphs_by_role": {
            role: sum(1 for d in corpus if d.unit == "paragraph" and d.role == role)
            for role in sorted({d.role for d in corpus if d.unit == "paragraph"})
        },
    }
    if len(corpus) < target:
        console.print(f"[yellow]only {len(corpus):,} distinct texts available (asked for {target:,})")
    return corpus, info


def build_queries(sources: dict[str, Any], n: int) -> list[str]:
    """``n`` distinct questions, alternating LongMemEval and LoCoMo (each list shuffled, fixed seed)."""
    lme = list(
        dict.fromkeys(
            q["question"].strip()
            for name in ("longmemeval_s", "longmemeval_oracle")
            for q in sources[name]
            if q["question"].strip()
        )
    )
    loc = list(
        dict.fromkeys(
            qa["question"].strip()
            for conv in sources["locomo"]
            for qa in conv["qa"]
            if str(qa.get("question", "")).strip()
        )
    )
    rng = random.Random(SEED)
    rng.shuffle(lme)
    rng.shuffle(loc)
    out: list[str] = []
    seen: set[str] = set()
    for a, b in zip(lme, loc, strict=False):
        for q in (a, b):
            if q not in seen and len(out) < n:
                seen.add(q)
                out.append(q)
    return out


# -- helpers ---------------------------------------------------------------------------------------


def progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def pct(values: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def set_torch_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class TimedEmbedder:
    """Delegates to an embedder and adds up the time spent in it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.seconds = 0.0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_documents(texts)
        finally:
            self.seconds += time.perf_counter() - t0

    def embed_query(self, text: str) -> np.ndarray:
        t0 = time.perf_counter()
        try:
            return self.inner.embed_query(text)
        finally:
            self.seconds += time.perf_counter() - t0


TIMED_STORE_CALLS = (
    "insert",
    "search_candidates",
    "visible",
    "log_retrieval",
)


class TimedStore:
    """Delegates to a store and adds up the time of the calls ``Memory`` makes on the hot paths."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.seconds = defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in TIMED_STORE_CALLS or not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0

        return timed


# -- embeddings ------------------------------------------------------------------------------------


def open_cache(path: Path, size_hint: int, vectors: str = "minilm") -> Any:
    from memq.embed import CachedEmbedder, HashingEmbedder, SentenceTransformerEmbedder

    if vectors == "hashing":  # model-free vectors: nothing to keep between runs, so no cache file
        return CachedEmbedder(HashingEmbedder(dim=HASHING_DIM), max_entries=size_hint + 10_000)
    bulk = SentenceTransformerEmbedder(threads=2, batch_size=64)
    return CachedEmbedder(bulk, max_entries=size_hint + 10_000, path=path)


def fill_cache(cache: Any, corpus: Sequence[Doc], queries: Sequence[str]) -> dict[str, Any]:
    """Embed whatever is not cached yet (docs in batches of 1,000, then queries)."""
    before = cache.misses
    t0 = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("embed corpus (cached)", total=len(corpus))
        for batch in chunks(corpus, 1000):
            cache.embed_documents([d.text for d in batch])
            bar.advance(task, len(batch))
        task = bar.add_task("embed queries (cached)", total=len(queries))
        for q in queries:
            cache.embed_query(q)
            bar.advance(task)
    return {"embedded_now": cache.misses - before, "seconds": round(time.perf_counter() - t0, 1)}


# -- the measurements ------------------------------------------------------------------------------


def measure_embedder(embedder: Any, queries: Sequence[str], sample: Sequence[str]) -> dict[str, Any]:
    """The embedder alone: single-query latency on 1 thread, batch throughput on 1 and 2 threads."""
    set_torch_threads(1)
    for q in queries[:5]:
        embedder.embed_query(q)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        embedder.embed_query(q)
        times.append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {
        "backend": "embedder",
        "size": None,
        "model": embedder.model_id,
        "query_embed_p50_ms": pct(times, 50),
        "query_embed_p95_ms": pct(times, 95),
        "batch_texts": len(sample),
        "batch_mean_chars": round(float(np.mean([len(t) for t in sample])), 1),
        "batch_size": getattr(embedder, "batch_size", None),
    }
    for threads in (1, 2):
        set_torch_threads(threads)
        embedder.embed_documents(list(sample[:64]))  # warm the thread pool
        t0 = time.perf_counter()
        embedder.embed_documents(list(sample))
        out[f"batch_docs_per_s_{threads}t"] = round(len(sample) / (time.perf_counter() - t0), 1)
    set_torch_threads(1)
    return out


def measure_ann(vectors: np.ndarray, qvecs: np.ndarray, size: int) -> dict[str, Any]:
    """The SQLite store's raw vector index (usearch HNSW, as configured by memq), plus exact numpy."""
    from memq.store.sqlite.vectors import VectorIndex

    index = VectorIndex(
        vectors.shape[1], hnsw_from=0
    )  # the graph at every size (memq: exact below HNSW_FROM)
    keys = np.arange(1, size + 1, dtype=np.int64)
    t0 = time.perf_counter()
    for start in range(0, size, ANN_ADD_CHUNK):
        index.add(keys[start : start + ANN_ADD_CHUNK], vectors[start : start + ANN_ADD_CHUNK])
    add_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "backend": "vector-index",
        "size": size,
        "ann_add_s": round(add_s, 3),
        "ann_add_rps": round(size / add_s, 1),
    }
    for n in (K, 200):
        for q in qvecs[:WARMUP_QUERIES]:
            index.search(q, n)
        times = []
        for q in qvecs:
            t0 = time.perf_counter()
            index.search(q, n)
            times.append((time.perf_counter() - t0) * 1000)
        out[f"ann_search_k{n}_p50_ms"] = pct(times, 50)
        out[f"ann_search_k{n}_p95_ms"] = pct(times, 95)
    times = []
    for q in qvecs:
        t0 = time.perf_counter()
        sims = vectors @ q
        top = np.argpartition(-sims, K)[:K]
        top[np.argsort(-sims[top])]
        times.append((time.perf_counter() - t0) * 1000)
    out["exact_numpy_k10_p50_ms"] = pct(times, 50)
    out["exact_numpy_k10_p95_ms"] = pct(times, 95)
    del index
    gc.collect()
    return out


class PgCluster:
    """A throwaway PostgreSQL 16 + pgvector (pgserver) in a temporary folder."""

    def __init__(self) -> None:
        import pgserver

        self.root = Path(tempfile.mkdtemp(prefix="memq-store-bench-pg-"))
        self.server = pgserver.get_server(self.root, cleanup_mode="stop")
        self.server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        self.base = self.server.get_uri()
        self._count = 0

    def fresh_url(self) -> str:
        import psycopg

        self._count += 1
        name = f"memq_bench_{os.getpid()}_{self._count}"
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        # pgserver's URI carries the socket folder in the query (``...?host=/tmp/...``): split that off
        # before replacing the database name
        main, sep, query = self.base.partition("?")
        return f"{main.rpartition('/')[0]}/{name}{sep}{query}"

    def drop(self, url: str) -> None:
        import psycopg

        name = url.partition("?")[0].rpartition("/")[2]
        with psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def versions(self) -> dict[str, str | None]:
        import psycopg

        with psycopg.connect(self.base, autocommit=True) as conn:
            ext = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            server = conn.execute("SHOW server_version").fetchone()
        return {"pgvector_extension": ext[0] if ext else None, "postgresql": server[0] if server else None}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.server.cleanup()
        shutil.rmtree(self.root, ignore_errors=True)


def store_bytes(backend: str, location: str) -> int | None:
    if backend == "sqlite":
        path = Path(location)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    import psycopg

    with psycopg.connect(location, autocommit=True) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(row[0]) if row else None


def add_all(mem: Any, docs: Sequence[Doc], bar: Progress, label: str) -> list[float]:
    """Add ``docs`` in batches; returns each batch's milliseconds."""
    times = []
    task = bar.add_task(label, total=len(docs))
    for batch in chunks(docs, ADD_BATCH):
        items = [
            {
                "text": d.text,
                "kind": "episode",
                "metadata": {"source": d.source, "role": d.role, "unit": d.unit},
            }
            for d in batch
        ]
        t0 = time.perf_counter()
        mem.add(items)
        times.append((time.perf_counter() - t0) * 1000)
        bar.advance(task, len(batch))
    return times


def measure_store(
    backend: str,
    size: int,
    docs: Sequence[Doc],
    queries: Sequence[str],
    cache: Any,
    live: Any,
    new_location: Callable[[], str],
    drop_location: Callable[[str], None],
    add_variant: bool,
) -> dict[str, Any]:
    """Add ``docs`` to a fresh store through Memory, then time searches on it."""
    from memq import Memory
    from memq.store import open_store

    out: dict[str, Any] = {"backend": backend, "size": size}
    location = new_location()
    timed_cache = TimedEmbedder(cache)
    store = TimedStore(open_store(location))
    mem = Memory(store, embedder=timed_cache, scope=TENANT)
    with progress() as bar:
        batch_ms = add_all(mem, docs, bar, f"{backend} {size:,}: add")
        total_s = sum(batch_ms) / 1000
        lookup_s = timed_cache.seconds
        out.update(
            add_total_s=round(total_s, 2),
            add_rps=round(size / total_s, 1),
            add_embed_lookup_s=round(lookup_s, 2),
            add_store_insert_s=round(store.seconds["insert"], 2),
            add_rps_excl_lookup=round(size / (total_s - lookup_s), 1),
            add_batch_p50_ms=pct(batch_ms, 50),
            add_batch_p95_ms=pct(batch_ms, 95),
            add_first10_batch_mean_ms=round(float(np.mean(batch_ms[:10])), 1),
            add_last10_batch_mean_ms=round(float(np.mean(batch_ms[-10:])), 1),
        )
        out["store_bytes"] = store_bytes(backend, location)

        # the first search pays for whatever the store has not built during the adds
        t0 = time.perf_counter()
        mem.search(queries[0], k=K)
        out["first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        for q in queries[:WARMUP_QUERIES]:
            mem.search(q, k=K)
            mem.search(q, k=K, mode="dense")

        live_timed = TimedEmbedder(live)
        mem_live = Memory(store, embedder=live_timed, scope=TENANT)
        for mode in ("hybrid", "dense"):
            parts: dict[str, list[float]] = defaultdict(list)
            totals = []
            task = bar.add_task(f"{backend} {size:,}: search {mode} (cached vectors)", total=len(queries))
            for q in queries:
                store.reset()
                timed_cache.seconds = 0.0
                t0 = time.perf_counter()
                mem.search(q, k=K, mode=mode)
                ms = (time.perf_counter() - t0) * 1000
                totals.append(ms)
                in_store = 0.0
                for name in TIMED_STORE_CALLS[1:]:
                    parts[name].append(store.seconds[name] * 1000)
                    in_store += store.seconds[name] * 1000
                parts["embed_lookup"].append(timed_cache.seconds * 1000)
                parts["rest"].append(ms - in_store - timed_cache.seconds * 1000)
                bar.advance(task)
            out[f"{mode}_p50_ms"] = pct(totals, 50)
            out[f"{mode}_p95_ms"] = pct(totals, 95)
            for name, values in parts.items():
                out[f"{mode}_{name}_mean_ms"] = round(float(np.mean(values)), 3)

            totals, embeds = [], []
            task = bar.add_task(f"{backend} {size:,}: search {mode} (live MiniLM)", total=len(queries))
            for q in queries:
                live_timed.seconds = 0.0
                t0 = time.perf_counter()
                mem_live.search(q, k=K, mode=mode)
                totals.append((time.perf_counter() - t0) * 1000)
                embeds.append(live_timed.seconds * 1000)
                bar.advance(task)
            out[f"{mode}_live_p50_ms"] = pct(totals, 50)
            out[f"{mode}_live_p95_ms"] = pct(totals, 95)
            out[f"{mode}_live_embed_mean_ms"] = round(float(np.mean(embeds)), 3)
        mem.close()
        drop_location(location)

        if add_variant:
            # The same load into another fresh store, changed in one way:
            # * sqlite: the vector index is opened (by one search) after the first batch, so every
            #   add also brings the HNSW index level, as in an agent that searches while it adds;
            # * postgres: the HNSW index is dropped after the first batch, to show what maintaining
            #   it on every insert costs.
            location = new_location()
            mem = Memory(open_store(location), embedder=cache, scope=TENANT)
            label = f"{backend} {size:,}: add, " + ("index open" if backend == "sqlite" else "no HNSW index")
            task_ms = add_all(mem, docs[:ADD_BATCH], bar, label)
            if backend == "sqlite":
                mem.search(queries[0], k=K)
            else:
                import psycopg

                from memq.store.postgres.schema import HNSW_INDEX

                with psycopg.connect(location, autocommit=True) as conn:
                    conn.execute(f"DROP INDEX {HNSW_INDEX}")
            task_ms += add_all(mem, docs[ADD_BATCH:], bar, label)
            name = "add_index_open" if backend == "sqlite" else "add_no_hnsw"
            out[f"{name}_rps"] = round(size / (sum(task_ms) / 1000), 1)
            out[f"{name}_last10_batch_mean_ms"] = round(float(np.mean(task_ms[-10:])), 1)
            mem.close()
            drop_location(location)
    gc.collect()
    return out


# -- reporting -------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    return str(value)


def _entries(data: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    return [r for r in data["results"] if r["backend"] == backend]


def _store_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    order = {b: i for i, b in enumerate(data["parameters"]["backends"])}
    rows = [r for r in data["results"] if r["backend"] in order]
    return sorted(rows, key=lambda r: (r["size"], order[r["backend"]]))


MAIN_COLUMNS = (
    ("add rec/s", "add_rps"),
    ("hybrid p50", "hybrid_p50_ms"),
    ("hybrid p95", "hybrid_p95_ms"),
    ("dense p50", "dense_p50_ms"),
    ("dense p95", "dense_p95_ms"),
    ("live hybrid p50", "hybrid_live_p50_ms"),
    ("live hybrid p95", "hybrid_live_p95_ms"),
    ("live dense p50", "dense_live_p50_ms"),
    ("live dense p95", "dense_live_p95_ms"),
    ("first search", "first_search_ms"),
)


def console_tables(data: dict[str, Any]) -> list[Table]:
    """Two narrow tables (a wide one does not fit a terminal): adds and cached search, then live search."""
    first = Table(title="adds and search with cached query vectors (ms)")
    second = Table(title="live search: query embedded on 1 thread, uncached (ms)")
    for table in (first, second):
        table.add_column("backend")
        table.add_column("records", justify="right")
    for title, _ in MAIN_COLUMNS[:5] + MAIN_COLUMNS[9:]:
        first.add_column(title.replace("hybrid", "hyb"), justify="right")
    for title, _ in MAIN_COLUMNS[5:9]:
        second.add_column(title.replace("hybrid", "hyb").replace("live ", ""), justify="right")
    second.add_column("embed mean", justify="right")
    for r in _store_rows(data):
        head = [r["backend"], f"{r['size']:,}"]
        first.add_row(*head, *[_fmt(r.get(key)) for _, key in MAIN_COLUMNS[:5] + MAIN_COLUMNS[9:]])
        second.add_row(
            *head,
            *[_fmt(r.get(key)) for _, key in MAIN_COLUMNS[5:9]],
            _fmt(r.get("hybrid_live_embed_mean_ms")),
        )
    return [first, second]


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def live_embedder(p: dict[str, Any]) -> str:
    """What embedded the queries of the live columns (and the embedder-alone row)."""
    if p.get("vectors") == "hashing":
        return f"memq's model-free `HashingEmbedder` ({p.get('embedding_dim', HASHING_DIM)}-d, no model)"
    return "`SentenceTransformerEmbedder(threads=1)` (all-MiniLM-L6-v2 on torch)"


def render_doc(data: dict[str, Any]) -> str:
    p = data["parameters"]
    c = data["corpus"]
    v = data["versions"]
    m = data["machine"]
    lines = [
        "# Store benchmark: "
        + " vs ".join({"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(b, b) for b in p["backends"])
        + ", "
        + " and ".join(f"{n:,}" for n in p["sizes"])
        + " records",
        "",
        "<!-- generated by benchmarks/store_bench.py from benchmarks/results/store.json; do not edit by hand -->",
        "",
        f"Generated {data['created']} by:",
        "",
        "```",
        data["command"],
        "```",
        "",
        "`--doc-only` regenerates this page from the JSON; `--quick` is a smoke run "
        f"({QUICK_HINT}) that writes into `benchmarks/.cache/`.",
        "",
        "## What is measured",
        "",
        f"* **add**: `Memory.add` in batches of {p['add_batch']} into a fresh store, wall clock over the whole "
        "load. Embedding is excluded: the embedder is a warm `CachedEmbedder`, so each vector costs only an "
        "in-memory cache lookup (its total is reported separately and is small).",
        f"* **search** (k={p['k']}): `Memory.search` end to end — candidates, fusion, hydrating records and "
        "writing the retrieval log (on by default) — over "
        f"{p['queries']} questions, after {p['warmup_queries']} warm-up queries. `hybrid` is the default "
        "(dense + BM25 candidates, weighted fusion, link spreading); `dense` is dense only. In the plain columns the query vector comes from "
        "the warm cache (embedding excluded; the whole `Memory.search` call is timed, not just the store); "
        f"in the *live* columns an uncached {live_embedder(p)} embeds each query, as a live search does.",
        "* **first search**: the first `Memory.search` after the load: whatever the store did not build "
        "while adding (SQLite keeps its vector and lexical indexes current on add; PostgreSQL defers its "
        "HNSW index on a bulk load and builds it on the first dense search).",
        "* **vector index alone**: `memq.store.sqlite.vectors.VectorIndex` (usearch HNSW, "
        f"M={p['hnsw_connectivity']}, ef_construction={p['hnsw_expansion_add']}, "
        f"ef_search={p['hnsw_expansion_search']}) with the same vectors: add throughput (in chunks of "
        f"{p['ann_add_chunk']:,}, all cores, as the store adds) and single-query search on one thread, "
        "beside exact numpy search.",
        f"* **embedder alone**: {live_embedder(p)}, single-query latency on 1 thread; batch throughput on "
        f"{p['embed_sample']:,} corpus texts with 1 and 2 torch threads (the hashing embedder uses none).",
        "",
        "All numbers come from one run on one machine; "
        "p50/p95 are percentiles over the queries, in milliseconds.",
        "",
        "## Results",
        "",
    ]
    rows = [
        [r["backend"], f"{r['size']:,}", *[_fmt(r.get(key)) for _, key in MAIN_COLUMNS]]
        for r in _store_rows(data)
    ]
    lines += _md_table(
        ["backend", "records", *[t + (" ms" if "rec/s" not in t else "") for t, _ in MAIN_COLUMNS]], rows
    )
    lines += [
        "",
        "### Where the time goes",
        "",
        "Mean milliseconds per search (cached query vectors), split by the store calls `Memory.search` makes: "
        "*candidates* (`search_candidates`: each signal's candidates with the light rows ranking needs — "
        "scores, links, times, utility — in one store call), *visible* (the shown records hydrated). *rest* "
        "is `Memory`'s own work: option parsing, fusion, the feature matrix of the window and building the result.",
        "",
    ]
    rows = []
    for r in _store_rows(data):
        for mode in ("hybrid", "dense"):
            rows.append(
                [
                    r["backend"],
                    f"{r['size']:,}",
                    mode,
                    _fmt(r.get(f"{mode}_p50_ms"), 2),
                    _fmt(r.get(f"{mode}_search_candidates_mean_ms"), 2),
                    _fmt(r.get(f"{mode}_visible_mean_ms"), 2),
                    _fmt(r.get(f"{mode}_log_retrieval_mean_ms"), 2),
                    _fmt(r.get(f"{mode}_embed_lookup_mean_ms"), 2),
                    _fmt(r.get(f"{mode}_rest_mean_ms"), 2),
                    _fmt(r.get(f"{mode}_live_embed_mean_ms"), 2),
                ]
            )
    lines += _md_table(
        [
            "backend",
            "records",
            "mode",
            "p50",
            "candidates (+ rows)",
            "visible (hydrate)",
            "retrieval log",
            "cache lookup",
            "rest",
            "live: embed",
        ],
        rows,
    )
    lines += ["", "### Adds", ""]
    rows = [
        [
            r["backend"],
            f"{r['size']:,}",
            _fmt(r.get("add_rps")),
            _fmt(r.get("add_rps_excl_lookup")),
            _fmt(r.get("add_total_s")),
            _fmt(r.get("add_embed_lookup_s"), 2),
            _fmt(r.get("add_first10_batch_mean_ms")),
            _fmt(r.get("add_last10_batch_mean_ms")),
            _fmt(r.get("add_index_open_rps", r.get("add_no_hnsw_rps"))),
            _fmt((r.get("store_bytes") or 0) / 2**20),
        ]
        for r in _store_rows(data)
    ]
    lines += _md_table(
        [
            "backend",
            "records",
            "rec/s",
            "rec/s without cache lookup",
            "total s",
            "cache lookup s",
            f"first 10 batches, ms/batch of {p['add_batch']}",
            "last 10 batches, ms/batch",
            "rec/s, variant",
            "store MiB",
        ],
        rows,
    )
    lines += [
        "",
        "*rec/s, variant* (when run): the same load into another fresh store, changed in one way. SQLite: "
        "a search after the first batch (the store keeps its indexes current on add either way). "
        "PostgreSQL: the HNSW index was dropped after the first batch.",
        "",
        "### Vector index and embedder alone",
        "",
    ]
    rows = [
        [
            f"{r['size']:,}",
            _fmt(r.get("ann_add_rps")),
            _fmt(r.get("ann_search_k10_p50_ms"), 3),
            _fmt(r.get("ann_search_k10_p95_ms"), 3),
            _fmt(r.get("ann_search_k200_p50_ms"), 3),
            _fmt(r.get("ann_search_k200_p95_ms"), 3),
            _fmt(r.get("exact_numpy_k10_p50_ms"), 3),
            _fmt(r.get("exact_numpy_k10_p95_ms"), 3),
        ]
        for r in sorted(_entries(data, "vector-index"), key=lambda r: r["size"])
    ]
    lines += _md_table(
        [
            "vectors",
            "HNSW add vec/s",
            "HNSW k=10 p50 ms",
            "k=10 p95 ms",
            "HNSW k=200 p50 ms",
            "k=200 p95 ms",
            "exact numpy k=10 p50 ms",
            "exact p95 ms",
        ],
        rows,
    )
    lines += [""]
    for e in _entries(data, "embedder"):
        lines += _md_table(
            [
                "embedder",
                "query p50 ms (1 thread)",
                "query p95 ms",
                "batch docs/s, 1 thread",
                "batch docs/s, 2 threads",
            ],
            [
                [
                    e["model"],
                    _fmt(e["query_embed_p50_ms"], 2),
                    _fmt(e["query_embed_p95_ms"], 2),
                    _fmt(e["batch_docs_per_s_1t"]),
                    _fmt(e["batch_docs_per_s_2t"]),
                ]
            ],
        )
        lines += [
            "",
            f"(batch: {e['batch_texts']:,} corpus texts of {e['batch_mean_chars']:.0f} characters on average, "
            f"batch size {e['batch_size']}.)",
        ]
    lines += ["", "## Reading the numbers", ""]
    lines += reading(data)
    lines += [
        "",
        "## Data",
        "",
        f"The corpus is real conversational text: the turns of LongMemEval (the S sample of 60 questions "
        f"and the full oracle split) and of LoCoMo's 10 conversations, {c['turns_total']:,} turns in all. "
        f"Each text is stripped and cut to {p['max_chars']:,} characters, then deduplicated: that leaves "
        f"only **{c['distinct_turns']:,} distinct turns**, fewer than the {c['corpus_size']:,} texts the "
        "corpus is built to (the largest size measured is a prefix of it). "
        f"The corpus is topped up with **{c['paragraphs_added']:,} paragraphs**: single lines (at least "
        f"{p['min_piece_chars']} characters, distinct from every text already taken) of the turns longer than "
        f"{p['split_from_chars']} characters, taken in file order (by role: "
        + ", ".join(f"{k} {n:,}" for k, n in c.get("paragraphs_by_role", {}).items())
        + "). "
        f"The {c['corpus_size']:,} texts (mean {c['mean_chars']:.0f} characters; by source: "
        + ", ".join(f"{k} {n:,}" for k, n in c["by_source"].items())
        + ") are shuffled with a fixed seed, and each size is a prefix of that order, so both sizes have "
        "the same mix of whole turns and paragraphs.",
        "",
        f"Queries: {p['queries']} distinct questions, alternating between LongMemEval `question` fields and "
        "LoCoMo `qa[].question` fields (each list shuffled with a fixed seed). Every record goes into one "
        "tenant with kind `episode` and a small metadata dict (source, role, unit), so every search covers "
        "the whole store.",
        "",
        (
            f"Embeddings: {live_embedder(p)}, for the stored texts and the queries; no model ran. The store "
            "does the same work per vector whatever the numbers in it; dense *quality* means nothing here."
            if p.get("vectors") == "hashing"
            else "Embeddings: every text was embedded once with all-MiniLM-L6-v2 (384-d) and kept in "
            "`benchmarks/.cache/embeddings.sqlite` (git-ignored); re-runs only look them up. "
            f"This run embedded {data['embedding_cache']['embedded_now']:,} uncached texts before measuring "
            f"anything (the whole pass over the cache took {data['embedding_cache']['seconds']:,.0f} s)."
        ),
        "",
        "## Machine and versions",
        "",
        f"* {m['cpu_count']} CPU cores{cpu_words(m) or ' (unknown processor)'}, {m['platform']}, "
        f"Python {m['python']}, SQLite {v.get('sqlite')}.",
        "* " + ", ".join(f"{k} {val}" for k, val in v.items() if k != "sqlite" and val is not None) + ".",
        f"* PostgreSQL ran locally (pgserver) on the same {m['cpu_count']} cores as the benchmark "
        "process, over a local socket, with default settings.",
        "* The machine was shared with other work: the 1/5/15-minute load average was "
        f"{', '.join(map(str, m.get('loadavg_start') or []))} when the measurements started and "
        f"{', '.join(map(str, m.get('loadavg_end') or []))} when they ended (the benchmark itself accounts "
        "for about 1 of it), so some numbers may be slowed by it; treat differences under ~20% as noise.",
    ]
    g = data.get("git") or {}
    if g.get("commit"):
        line = f"* memq at commit `{g['commit']}`"
        if g.get("uncommitted_src"):
            line += ", plus uncommitted changes in " + ", ".join(f"`{x}`" for x in g["uncommitted_src"])
        lines += [line + "."]
    for note in data.get("notes", []):
        lines += [f"* {note}"]
    return "\n".join(lines) + "\n"


QUICK_HINT = "2,000 records, 50 queries"


def write_page(doc: Path, text: str) -> None:
    """Write the generated part of the page, keeping the sections after it that this script does not
    write (store_peers.py's, hand-written ones: :func:`store_sections.kept_tail`)."""
    from store_sections import kept_tail

    tail = kept_tail(doc.read_text()) if doc.exists() else ""
    doc.write_text(text + ("\n" + tail if tail else ""))


def _get(data: dict[str, Any], backend: str, size: int | None) -> dict[str, Any] | None:
    for r in data["results"]:
        if r["backend"] == backend and r["size"] == size:
            return r
    return None


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b else "-"


def reading(data: dict[str, Any]) -> list[str]:
    """A short reading of the numbers. Every number and comparison here is computed from the JSON."""
    p = data["parameters"]
    sizes = sorted(p["sizes"])
    big, small = sizes[-1], sizes[0]
    backends = [b for b in p["backends"] if _get(data, b, big)]
    emb = next(iter(_entries(data, "embedder")), None)
    out: list[str] = []

    # 1. what dominates a live search
    parts = []
    for b in backends:
        r = _get(data, b, big)
        assert r is not None
        live, embed, cached = r["hybrid_live_p50_ms"], r["hybrid_live_embed_mean_ms"], r["hybrid_p50_ms"]
        parts.append(
            f"{b} {live:.0f} ms p50, of which embedding the query takes {embed:.0f} ms on average "
            f"({100 * embed / live:.0f}%) and the rest of the search {cached:.0f} ms p50 with a cached vector"
        )
    if parts:
        dominated = [
            b
            for b in backends
            if (r := _get(data, b, big)) and r["hybrid_live_embed_mean_ms"] > r["hybrid_p50_ms"]
        ]
        verdict = (
            "the embedder, not the store, is the larger part of a live search on " + " and ".join(dominated)
            if dominated
            else "the store path, not the embedder, is the larger part of a live search"
        )
        out.append(
            f"* **Live search.** At {big:,} records a live hybrid search takes "
            + "; ".join(parts)
            + f": {verdict}."
            + (
                f" The embedder alone embeds one query in {emb['query_embed_p50_ms']:.0f} ms p50 "
                f"({emb['query_embed_p95_ms']:.0f} ms p95) on one thread."
                if emb
                else ""
            )
            + " A hybrid search costs more than a dense one because it also runs the lexical step and ranks "
            "the candidates of both signals."
        )

    # 2. adds
    if len(backends) >= 2:
        rs = {b: _get(data, b, big) for b in backends}
        fast = max(backends, key=lambda b: rs[b]["add_rps"])  # type: ignore[index]
        slow = min(backends, key=lambda b: rs[b]["add_rps"])  # type: ignore[index]
        out.append(
            f"* **Adds.** At {big:,} records {fast} loads {rs[fast]['add_rps']:,.0f} records/s and {slow} "
            f"{rs[slow]['add_rps']:,.0f} records/s ({_ratio(rs[fast]['add_rps'], rs[slow]['add_rps'])}). "
            "Embedding is out of these numbers: the warm cache's lookups took "
            + ", ".join(
                f"{rs[b]['add_embed_lookup_s']:.1f} s of {rs[b]['add_total_s']:.0f} s on {b}"
                for b in backends
            )
            + "."
        )
    pg = _get(data, "postgres", big)
    if pg:
        out.append(
            f"  PostgreSQL spends {pg['add_store_insert_s']:.0f} s of its {pg['add_total_s']:.0f} s inside "
            f"the store's insert ({pg['add_first10_batch_mean_ms']:,.0f} ms per batch of {p['add_batch']} at "
            f"the start, {pg['add_last10_batch_mean_ms']:,.0f} ms at the end)."
            + (
                f" Without the HNSW index the same load ran at {pg['add_no_hnsw_rps']:,.0f} records/s."
                if pg.get("add_no_hnsw_rps")
                else ""
            )
        )
    sq = _get(data, "sqlite", big)
    ann = _get(data, "vector-index", big)
    if sq:
        text = (
            "  SQLite keeps its vector index current on add (exact search over an in-memory mirror below "
            f"{p['sqlite_exact_threshold']:,} vectors; at that count the HNSW graph is built in one batch, then "
            "grown with each batch) and its lexical index too; the first search after the load took "
            f"{sq['first_search_ms']:,.0f} ms at {big:,} records"
        )
        if ann:
            text += f" (the graph alone adds {big:,} vectors in {ann['ann_add_s']:.1f} s)"
        text += "."
        if sq.get("add_index_open_rps"):
            text += (
                f" With a search after the first batch the same load ran at {sq['add_index_open_rps']:,.0f} "
                f"records/s (against {sq['add_rps']:,.0f})."
            )
        out.append(text)

    # 3. the SQLite dense step, exact and HNSW, against the raw index
    sq_small = _get(data, "sqlite", small)
    ann_small = _get(data, "vector-index", small)
    if sq_small and ann_small and small <= p["sqlite_exact_threshold"]:
        dense_small = sq_small["dense_search_candidates_mean_ms"]
        out.append(
            f"* **SQLite's dense step, exact (below {p['sqlite_exact_threshold']:,} vectors).** At {small:,} "
            f"records its candidates and their rows take {dense_small:.1f} ms per query, while an exact numpy "
            f"search over the same vectors takes {ann_small['exact_numpy_k10_p50_ms']:.2f} ms p50: the time goes "
            "to the store's work around the arithmetic (finding the scope's vectors, the visibility check and "
            "the light rows of the candidates, from the light-row mirror or by rowid), not to the similarity "
            "itself."
        )
    if sq and ann and big > p["sqlite_exact_threshold"]:
        dense_big = sq["dense_search_candidates_mean_ms"]
        raw = ann["ann_search_k200_p50_ms"]
        out.append(
            f"* **SQLite's dense step, HNSW (above {p['sqlite_exact_threshold']:,} vectors).** At {big:,} records "
            f"its candidates and their rows take {dense_big:.1f} ms per query, of which the raw index search "
            f"for the 200 candidates it fetches (4 x the pool of 50) takes {raw:.2f} ms p50; the rest is their "
            "exact rescoring and the candidates' visibility and light rows (from the light-row mirror, or one "
            "SQL read by rowid for the rows it lacks)."
        )

    # 4. the fixed costs around the candidates
    rows = []
    for b in backends:
        r = _get(data, b, big)
        assert r is not None
        rows.append(
            f"{b}: candidates with their rows {r['hybrid_search_candidates_mean_ms']:.1f} ms, hydrating the "
            f"shown records {r['hybrid_visible_mean_ms']:.1f} ms, retrieval log "
            f"{r['hybrid_log_retrieval_mean_ms']:.1f} ms, the rest (`Memory`) {r['hybrid_rest_mean_ms']:.1f} ms"
        )
    if rows:
        out.append(
            f"* **Inside a search** (hybrid, {big:,} records, means): " + "; ".join(rows) + ". Ranking reads "
            "light rows of the candidates (`search_candidates`); only the shown k records are hydrated "
            "(`visible`); the retrieval log is a write transaction on every search "
            "(`MemoryConfig(log_retrievals=False)` turns it off)."
        )

    # 5. the embedder
    if emb:
        out.append(
            f"* **Embedder.** Batch embedding runs at {emb['batch_docs_per_s_1t']:,.0f} docs/s on one thread and "
            f"{emb['batch_docs_per_s_2t']:,.0f} docs/s on two"
            + (
                ", slower than every store inserts pre-embedded records here: embedding, not the store, "
                "bounds how fast new text can be added on this machine."
                if all(
                    r["add_rps"] > max(emb["batch_docs_per_s_1t"], emb["batch_docs_per_s_2t"])
                    for r in _store_rows(data)
                )
                else "."
            )
        )
    return out


# -- main ------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """The machine of a run; the CPU as :func:`memq_bench.results.cpu_info` records it (files written
    before it have a ``processor`` instead, which :func:`memq_bench.results.cpu_words` reads too)."""
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **cpu_info(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """A benchmark's results JSON (indented, newline-terminated), its folder made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def small_parser(
    description: str, size: int, size_help: str, queries: int, output: Path
) -> argparse.ArgumentParser:
    """The options of a one-measurement script (dense_fetch.py, mirror_ab.py): --size, --queries,
    --data, --output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--size", type=int, default=size, help=f"{size_help} (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=queries, help="questions (default: %(default)s)")
    parser.add_argument("--data", default=None, help="folder holding the datasets (default: ../shared/data)")
    parser.add_argument("--output", type=Path, default=output, help="results JSON (default: %(default)s)")
    return parser


def save_results(
    output: Path,
    benchmark: str,
    command: str,
    argv: Sequence[str] | None,
    started: float,
    parameters: dict[str, Any],
    results: Any,
    machine: dict[str, Any] | None = None,
) -> None:
    """A one-measurement script's results JSON: what ran (``command`` with ``argv``, by default the
    process's arguments), when, for
    how long since ``started`` (perf_counter), where (``machine`` adds to machine_info()), at which
    commit, with which parameters."""
    data = {
        "benchmark": benchmark,
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([command, *(argv if argv is not None else sys.argv[1:])]),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {**machine_info(), **(machine or {})},
        "git": git_state(),
        "parameters": parameters,
        "results": results,
    }
    write_json(output, data)
    print(f"wrote {output}")


def git_state() -> dict[str, Any]:
    """The commit measured, and the library files that differed from it (uncommitted work). The
    repository is the one the imported ``memq`` lives in: a run of another worktree's code
    (``PYTHONPATH=/path/to/worktree/src``, as an A/B does) records that worktree's commit, not this
    checkout's."""
    import subprocess

    import memq

    repo = Path(memq.__file__).resolve().parents[2]
    if not (repo / ".git").exists():  # memq installed as a package: the checkout this script runs from
        repo = ROOT

    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    # porcelain lines are "XY path": not stripped, or the first line's leading space would shift its path
    changed = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines() if line]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "uncommitted_src": changed}


def package_versions() -> dict[str, Any]:
    import sqlite3

    return {
        "memq": version_of("memq"),
        "usearch": version_of("usearch"),
        "psycopg": version_of("psycopg"),
        "pgvector (python)": version_of("pgvector"),
        "torch": version_of("torch"),
        "sentence-transformers": version_of("sentence-transformers"),
        "numpy": version_of("numpy"),
        "sqlite": sqlite3.sqlite_version,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Benchmark memq's stores end to end: batch add throughput and search latency "
            "(hybrid and dense, with and without query embedding) on SQLite and PostgreSQL, beside "
            "the raw vector index and the MiniLM embedder alone. Writes benchmarks/results/store.json "
            "and docs/benchmarks-store.md."
        ),
        epilog=(
            "examples:\n"
            f"  {FULL_COMMAND}                      # full run (10k and 100k, both backends)\n"
            f"  {FULL_COMMAND} --quick              # smoke run ({QUICK_HINT}), into benchmarks/.cache/\n"
            f"  {FULL_COMMAND} --backends sqlite    # SQLite only\n"
            f"  {FULL_COMMAND} --embed-only         # fill the embedding cache (slow the first time)\n"
            f"  {FULL_COMMAND} --doc-only           # regenerate the docs page from the JSON\n"
            "\nThe first run embeds the whole corpus on the CPU (tens of minutes on 2 cores); the\n"
            "vectors are cached in benchmarks/.cache/embeddings.sqlite, so later runs only look them up."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--sizes",
        default="10000,100000",
        help="comma-separated store sizes in records (default: %(default)s)",
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgres",
        help="comma-separated backends: sqlite, postgres (default: %(default)s)",
    )
    parser.add_argument(
        "--queries", type=int, default=200, help="number of search queries (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_HINT}; results go to benchmarks/.cache/ unless --output/--doc are given",
    )
    parser.add_argument(
        "--no-add-variant",
        action="store_true",
        help=(
            "skip the second load per backend and size (SQLite: vector index open during adds; "
            "PostgreSQL: no HNSW index); saves several minutes"
        ),
    )
    parser.add_argument(
        "--vectors",
        choices=("minilm", "hashing"),
        default="minilm",
        help=(
            "where the vectors come from: minilm (all-MiniLM-L6-v2 through the embedding cache; "
            f"default) or hashing (memq's model-free HashingEmbedder, {HASHING_DIM}-d, the same size: "
            "no model runs and no cache to fill, for store-only measurements; the live columns then "
            "time the hashing embedder, not MiniLM)"
        ),
    )
    parser.add_argument("--data", default=None, help="folder holding the datasets (default: ../shared/data)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"embedding cache file (default: {DEFAULT_CACHE.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results JSON (default: {DEFAULT_OUTPUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--doc", type=Path, default=None, help=f"markdown page (default: {DEFAULT_DOC.relative_to(ROOT)})"
    )
    parser.add_argument("--embed-only", action="store_true", help="only fill the embedding cache, then stop")
    parser.add_argument("--doc-only", action="store_true", help="only regenerate the markdown from the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = "2000"
        args.queries = min(args.queries, 50)
    args.output = args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    args.doc = args.doc or (QUICK_DOC if args.quick else DEFAULT_DOC)
    try:
        args.size_list = sorted({int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    args.backend_list = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backend_list) - {"sqlite", "postgres"}
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}; use sqlite and/or postgres")
    if not args.size_list or min(args.size_list) < ADD_BATCH:
        parser.error(f"sizes must be at least {ADD_BATCH}")
    if args.queries < WARMUP_QUERIES:
        parser.error(f"--queries must be at least {WARMUP_QUERIES}")
    return args


def command_line(args: argparse.Namespace) -> str:
    """The command that repeats this measurement (paths to data, cache and outputs left out)."""
    parts = [FULL_COMMAND]
    if args.quick:
        parts.append("--quick")
    else:
        if args.sizes != "10000,100000":
            parts.append(f"--sizes {args.sizes}")
        if args.queries != 200:
            parts.append(f"--queries {args.queries}")
    if args.backends != "sqlite,postgres":
        parts.append(f"--backends {args.backends}")
    if args.no_add_variant:
        parts.append("--no-add-variant")
    if args.vectors != "minilm":
        parts.append(f"--vectors {args.vectors}")
    return " ".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.doc_only:
        data = json.loads(args.output.read_text())
        write_page(args.doc, render_doc(data))
        console.print(*console_tables(data))
        console.print(f"wrote {args.doc}")
        return 0

    from memq.embed import HashingEmbedder, SentenceTransformerEmbedder
    from memq.store.sqlite import store as sqlite_store
    from memq.store.sqlite import vectors as sqlite_vectors

    corpus_target = max(100_000, *args.size_list)
    sources = load_sources(data_root(args.data))
    corpus, corpus_info = build_corpus(sources, corpus_target)
    if len(corpus) < max(args.size_list):
        console.print(f"[red]the corpus has only {len(corpus):,} texts")
        return 2
    queries = build_queries(sources, args.queries)
    max_size = max(args.size_list)
    docs_needed = corpus[:max_size]
    console.print(
        f"corpus: {corpus_info['distinct_turns']:,} distinct turns + {corpus_info['paragraphs_added']:,} "
        f"paragraphs; {len(queries)} queries; sizes {args.size_list}; backends {args.backend_list}"
    )

    cache = open_cache(args.cache, max_size + len(queries), args.vectors)
    fill = fill_cache(cache, docs_needed, queries)
    console.print(f"embedding cache: {fill['embedded_now']:,} texts embedded now, {fill['seconds']} s")
    if args.embed_only:
        return 0

    notes: list[str] = []
    load_start = [round(x, 2) for x in os.getloadavg()]
    versions = package_versions()
    pg: PgCluster | None = None
    backends = list(args.backend_list)
    if "postgres" in backends:
        try:
            from memq.store.postgres import PostgresStore  # noqa: F401

            pg = PgCluster()
            versions.update(pg.versions())
        except Exception as exc:
            notes.append(f"PostgreSQL was skipped: {type(exc).__name__}: {exc}")
            console.print(f"[yellow]{notes[-1]}")
            backends.remove("postgres")

    live = (
        HashingEmbedder(dim=HASHING_DIM)
        if args.vectors == "hashing"
        else SentenceTransformerEmbedder(threads=1)
    )
    set_torch_threads(1)
    rng = random.Random(SEED)
    sample = [d.text for d in rng.sample(list(docs_needed), min(EMBED_SAMPLE, len(docs_needed)))]
    results: list[dict[str, Any]] = []
    console.print("[bold]embedder alone")
    results.append(measure_embedder(live, queries, sample))

    all_vectors = cache.embed_documents([d.text for d in docs_needed])
    qvecs = np.stack([cache.embed_query(q) for q in queries])
    sqlite_dir = Path(tempfile.mkdtemp(prefix="memq-store-bench-"))
    counter = iter(range(1_000_000))

    def sqlite_location() -> str:
        return str(sqlite_dir / f"bench-{next(counter)}.db")

    def sqlite_drop(location: str) -> None:
        for p in Path(location).parent.glob(Path(location).name + "*"):
            p.unlink(missing_ok=True)

    try:
        for size in args.size_list:
            console.print(f"[bold]vector index alone, {size:,} vectors")
            results.append(measure_ann(all_vectors[:size], qvecs, size))
            for backend in backends:
                console.print(f"[bold]{backend}, {size:,} records")
                if backend == "sqlite":
                    new, drop = sqlite_location, sqlite_drop
                else:
                    assert pg is not None
                    new, drop = pg.fresh_url, pg.drop
                results.append(
                    measure_store(
                        backend,
                        size,
                        docs_needed[:size],
                        queries,
                        cache,
                        live,
                        new,
                        drop,
                        add_variant=not args.no_add_variant,
                    )
                )
    finally:
        shutil.rmtree(sqlite_dir, ignore_errors=True)
        if pg is not None:
            pg.close()

    data = {
        "benchmark": "store",
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(args),
        "quick": args.quick,
        "machine": {
            **machine_info(),
            "loadavg_start": load_start,
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions,
        "git": git_state(),
        "parameters": {
            "sizes": args.size_list,
            "backends": args.backend_list,
            "queries": len(queries),
            "k": K,
            "add_batch": ADD_BATCH,
            "warmup_queries": WARMUP_QUERIES,
            "max_chars": MAX_CHARS,
            "min_piece_chars": MIN_PIECE_CHARS,
            "split_from_chars": SPLIT_FROM_CHARS,
            "seed": SEED,
            "embed_sample": len(sample),
            "ann_add_chunk": ANN_ADD_CHUNK,
            "hnsw_connectivity": sqlite_vectors.HNSW_CONNECTIVITY,
            "hnsw_expansion_add": sqlite_vectors.HNSW_EXPANSION_ADD,
            "hnsw_expansion_search": sqlite_vectors.HNSW_EXPANSION_SEARCH,
            "sqlite_exact_threshold": sqlite_store.EXACT_THRESHOLD,
            "vectors": args.vectors,
            "embedding_model": live.model_id,
            "embedding_dim": live.dim,
        },
        "corpus": corpus_info,
        "embedding_cache": fill,
        "notes": notes,
        "results": results,
    }
    write_json(args.output, data)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    write_page(args.doc, render_doc(data))
    console.print(*console_tables(data))
    console.print(f"wrote {args.output} and {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
