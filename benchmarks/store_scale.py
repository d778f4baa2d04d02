#!/usr/bin/env python3
"""memq's SQLite store at scale (issue 12): load N records (default 1,000,000), then time search.

What it measures, in this process alone (so its peak RSS is the store's plus the benchmark's texts):

* **load**: ``Memory.add`` in batches of 500 into a fresh SQLite store, records spread over 100 users
  of one tenant, vectors from memq's model-free ``HashingEmbedder`` (384-d, the size of
  all-MiniLM-L6-v2); the time inside the embedder is reported apart, so adds excluding embedding
  are known too;
* **first search** after the load, then hybrid and dense ``Memory.search`` p50/p95 (k = 10) over the
  whole tenant and within one user's records (1% of them), embedding excluded (query vectors come
  from a warm cache);
* **memory**: resident set size after the texts are built, after the load, and the peak
  (``getrusage`` max RSS) at the end;
* **reopen**: the store opened again (its saved indexes loaded, as a new process does) and its first
  search, once with its files in the page cache and once with them dropped from it.

Texts: the store benchmark's corpus (real LongMemEval and LoCoMo turns and paragraphs, ~100k
distinct). Past it, each further text joins the first half of one corpus text to the second half of
another (distinct pairs), so the vocabulary and lengths stay those of real conversation.

``store_peers.py`` runs it as a child process for its 1M line; it also runs alone::

    .venv/bin/python benchmarks/store_scale.py --size 1000000 --out /tmp/scale.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb

USERS = 100
K = sb.K
MIX_PRIME = 7919  # steps through the corpus to pick the second half of a synthetic text


# -- shared with store_peers.py ---------------------------------------------------------------------


def user_of(i: int, users: int = USERS) -> str:
    """The user record ``i`` (and query ``i``) belongs to: records spread round-robin over users."""
    return f"user-{i % users:03d}"


def items_for(texts: Sequence[str], start: int, users: int = USERS) -> list[dict[str, Any]]:
    """``Memory.add`` items for ``texts`` (record numbers from ``start``), each in its user's scope."""
    return [
        {"text": t, "kind": "episode", "scope": {"tenant": sb.TENANT, "user": user_of(start + i, users)}}
        for i, t in enumerate(texts)
    ]


def load(mem: Any, texts: Sequence[str], label: str, users: int = USERS) -> list[float]:
    """Add ``texts`` in batches of ``sb.ADD_BATCH`` with a progress bar; each batch's milliseconds."""
    times = []
    with sb.progress() as bar:
        task = bar.add_task(label, total=len(texts))
        for start in range(0, len(texts), sb.ADD_BATCH):
            batch = items_for(texts[start : start + sb.ADD_BATCH], start, users)
            t0 = time.perf_counter()
            mem.add(batch)
            times.append((time.perf_counter() - t0) * 1000)
            bar.advance(task, len(batch))
    return times


def time_searches(mem: Any, queries: Sequence[str], mode: str, users: int | None, label: str) -> list[float]:
    """Milliseconds of ``mem.search`` for each query (k = K); with ``users``, query ``i`` searches
    within ``user_of(i)``'s records only. A few warm-up searches first."""

    def scope(i: int) -> dict[str, str] | None:
        return None if users is None else {"tenant": sb.TENANT, "user": user_of(i, users)}

    for i, q in enumerate(queries[: sb.WARMUP_QUERIES]):
        mem.search(q, k=K, mode=mode, scope=scope(i))
    times = []
    with sb.progress() as bar:
        task = bar.add_task(label, total=len(queries))
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            mem.search(q, k=K, mode=mode, scope=scope(i))
            times.append((time.perf_counter() - t0) * 1000)
            bar.advance(task)
    return times


def latency(prefix: str, times: Sequence[float]) -> dict[str, float]:
    return {f"{prefix}_p50_ms": sb.pct(times, 50), f"{prefix}_p95_ms": sb.pct(times, 95)}


def rss_mib() -> float:
    """Resident set size of this process now, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def sqlite_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name))


# -- texts ------------------------------------------------------------------------------------------


def extend_texts(base: Sequence[str], size: int, seed: int = sb.SEED) -> tuple[list[str], int]:
    """``size`` distinct texts: ``base`` first, then halves of two base texts joined (first half of
    one, second half of another, cut at a word boundary). Returns the texts and how many were made."""
    out = list(base[:size])
    seen = set(out)
    n = len(base)
    rng = random.Random(seed)
    made = 0
    while len(out) < size:
        a = rng.randrange(n)
        b = (a * MIX_PRIME + rng.randrange(1, n)) % n
        wa, wb = base[a].split(), base[b].split()
        text = " ".join(wa[: max(1, len(wa) // 2)] + wb[len(wb) // 2 :])[: sb.MAX_CHARS]
        if text and text not in seen:
            seen.add(text)
            out.append(text)
            made += 1
    return out, made


# -- the measurement --------------------------------------------------------------------------------


def measure(size: int, n_queries: int, data: str | None, workdir: Path) -> dict[str, Any]:
    from memq import Memory
    from memq.embed import CachedEmbedder, HashingEmbedder
    from memq.store import open_store

    sources = sb.load_sources(sb.data_root(data))
    corpus, _ = sb.build_corpus(sources, min(size, 100_000))
    texts, synthetic = extend_texts([d.text for d in corpus], size)
    del corpus
    queries = sb.build_queries(sources, n_queries)
    del sources
    out: dict[str, Any] = {
        "size": size,
        "users": USERS,
        "synthetic_texts": synthetic,
        "mean_chars": round(float(np.mean([len(t) for t in texts])), 1),
        "rss_texts_mib": rss_mib(),
    }
    hashing = sb.TimedEmbedder(HashingEmbedder(dim=sb.HASHING_DIM))
    path = workdir / "scale.db"
    mem = Memory(open_store(path), embedder=hashing, scope=sb.TENANT)
    batch_ms = load(mem, texts, f"sqlite {size:,}: add (hashing vectors)")
    total_s = sum(batch_ms) / 1000
    out.update(
        add_total_s=round(total_s, 1),
        add_embed_s=round(hashing.seconds, 1),
        add_rps=round(size / total_s, 1),
        add_rps_excl_embed=round(size / (total_s - hashing.seconds), 1),
        add_first10_batch_mean_ms=round(float(np.mean(batch_ms[:10])), 1),
        add_last10_batch_mean_ms=round(float(np.mean(batch_ms[-10:])), 1),
        rss_after_load_mib=rss_mib(),
    )
    del texts
    # searches: query vectors from a warm cache, so embedding is excluded
    cache = CachedEmbedder(HashingEmbedder(dim=sb.HASHING_DIM), max_entries=len(queries) + 10)
    for q in queries:
        cache.embed_query(q)
    mem_cached = Memory(mem.store, embedder=cache, scope=sb.TENANT)
    t0 = time.perf_counter()
    mem_cached.search(queries[0], k=K)
    out["first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    for mode in ("hybrid", "dense"):
        out.update(latency(mode, time_searches(mem_cached, queries, mode, None, f"{size:,}: {mode}")))
        times = time_searches(mem_cached, queries, mode, USERS, f"{size:,}: {mode}, one user (1%)")
        out.update(latency(f"scoped_{mode}", times))
    mem.close()
    out["store_bytes"] = sqlite_bytes(path)
    out["peak_rss_mib"] = peak_rss_mib()  # before the reopen below, which maps its indexes' files
    del mem, mem_cached
    out["reopen_first_search_ms"] = reopen_first_search_ms(path, cache, queries[1])
    out["reopen_cold_first_search_ms"] = reopen_first_search_ms(path, cache, queries[2], cold=True)
    return out


def drop_from_page_cache(path: Path) -> bool:
    """Ask the OS to drop the store's files (the database, its WAL, the saved indexes) from its page
    cache, as after a reboot or a long idle spell: each is flushed first (dirty pages stay cached)
    and then advised ``POSIX_FADV_DONTNEED``. False where the OS has no such call."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for file in sorted(path.parent.glob(path.name + "*")):
        fd = os.open(file, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def reopen_first_search_ms(path: Path, embedder: Any, query: str, *, cold: bool = False) -> float | None:
    """Milliseconds to open the store at ``path`` again (its saved indexes loaded, as a new process
    does) and answer one search; the store is closed after. ``cold``: its files dropped from the
    page cache first (None where that cannot be done)."""
    from memq import Memory
    from memq.store import open_store

    if cold:
        gc.collect()  # a store closed before still maps its index files until collected
        if not drop_from_page_cache(path):
            return None
    t0 = time.perf_counter()
    mem = Memory(open_store(path), embedder=embedder, scope=sb.TENANT)
    mem.search(query, k=K)
    ms = round((time.perf_counter() - t0) * 1000, 1)
    mem.close()
    return ms


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Load N records into a fresh memq SQLite store (hashing vectors, 100 users of one "
            "tenant) and time search at that size, with this process's peak RSS. store_peers.py "
            "runs it as a child for its 1M line."
        ),
        epilog="example:\n  .venv/bin/python benchmarks/store_scale.py --size 1000000 --out /tmp/scale.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="records (default: %(default)s)")
    parser.add_argument("--queries", type=int, default=200, help="search queries (default: %(default)s)")
    parser.add_argument("--data", default=None, help="folder holding the datasets (default: ../shared/data)")
    parser.add_argument("--out", type=Path, required=True, help="where to write this run's JSON")
    args = parser.parse_args(argv)
    if args.size < sb.ADD_BATCH or args.queries < sb.WARMUP_QUERIES:
        parser.error(f"--size must be at least {sb.ADD_BATCH} and --queries at least {sb.WARMUP_QUERIES}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="memq-store-scale-"))
    try:
        result = measure(args.size, args.queries, args.data, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    sb.console.print(
        f"{args.size:,} records: hybrid p50 {result['hybrid_p50_ms']} ms, dense p50 {result['dense_p50_ms']} ms, "
        f"peak RSS {result['peak_rss_mib']:,.0f} MiB; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
