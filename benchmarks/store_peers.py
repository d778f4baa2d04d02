#!/usr/bin/env python3
"""memq beside chroma and raw usearch, in one run with the same vectors: the measurements of issue 12.

In one process, on the same vectors and queries (k = 10):

* **raw usearch**: an HNSW index with memq's settings (int8, connectivity 16, expansion 64) alone,
  single-query search on one thread: the arithmetic memq's dense search wraps;
* **memq** (SQLite): ``Memory.add`` of N records (default 100,000) in batches of 500 into a fresh
  store, records spread over 100 users of one tenant (1% each); the first search after that load;
  hybrid and dense ``Memory.search`` p50/p95 over the tenant and within one user's records, embedding
  excluded (query vectors from a warm cache); then 10,000 more adds into the loaded store, with its
  index live; then the first search after reopening the store, with its files in the page cache and
  dropped from it;
* **chroma** (``chromadb``, persistent client, HNSW over inner product): the same records
  (embedding, text, ``{"user": ...}``) in batches of 5,000; dense ``query`` p50/p95 over the whole
  collection and with ``where={"user": ...}`` (the same 1% scope).

All three stay loaded while their searches are timed in interleaved rounds (``--rounds``, default 3:
each round runs every system's every measurement over its own ``--queries`` questions in turn; no
question repeats, so no cache sees one twice), so a busy spell of a shared machine falls on each of
them alike; p50/p95 are over all rounds, and each round's p50 is kept.

Vectors: memq's model-free ``HashingEmbedder`` by default (``--vectors minilm`` takes MiniLM vectors
from the embedding cache, embedding what is missing first). Then, as a child process (``store_scale.py``, so its peak RSS is its own): memq at 1,000,000
records with vectors from memq's model-free ``HashingEmbedder``.

Results go to ``benchmarks/results/store-peers.json``; a section of ``docs/benchmarks-store.md``
(the issue's targets against what was measured, pass or fail per line, with the load test's figure
from ``benchmarks/results/load.json``) is regenerated from it. Run the load test
(``benchmarks/load_test.py``) first or after, then ``--doc-only`` to refresh the section.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb
import store_scale as sc
from store_sections import render_section, write_section

ROOT = sb.ROOT
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "store-peers.json"
QUICK_OUTPUT = sb.CACHE_DIR / "store-peers-quick.json"
QUICK_DOC = sb.CACHE_DIR / "benchmarks-store-quick.md"
COMMAND = ".venv/bin/python benchmarks/store_peers.py"
LIVE_ADDS = 10_000  # records added to the loaded store, with its index live
CHROMA_BATCH = 5_000  # under chroma's max batch size (5,461 here)
ROUNDS = 3  # interleaved rounds of every search measurement
QUICK = {"size": 3_000, "queries": 30, "scale_size": 6_000, "live_adds": 1_000}


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- raw usearch ------------------------------------------------------------------------------------


def load_usearch(vectors: np.ndarray) -> tuple[Any, dict[str, Any]]:
    """usearch alone, as memq configures its graph, with the same vectors (added on all cores)."""
    from usearch.index import Index

    from memq.store.sqlite import vectors as sv

    index = Index(
        ndim=vectors.shape[1],
        metric="ip",
        dtype="i8",
        connectivity=sv.HNSW_CONNECTIVITY,
        expansion_add=sv.HNSW_EXPANSION_ADD,
        expansion_search=sv.HNSW_EXPANSION_SEARCH,
    )
    sb.console.print(f"[bold]raw usearch: {len(vectors):,} vectors")
    t0 = time.perf_counter()
    index.add(np.arange(len(vectors), dtype=np.uint64), vectors, threads=0)
    return index, {"add_s": round(time.perf_counter() - t0, 2)}


# -- memq -------------------------------------------------------------------------------------------


def load_memq(texts: Sequence[str], cache: Any, path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A fresh SQLite store filled through ``Memory.add``, and the first search after the load."""
    from memq import Memory
    from memq.store import open_store

    size = len(texts)
    timed = sb.TimedEmbedder(cache)
    mem = Memory(open_store(path), embedder=timed, scope=sb.TENANT)
    sb.console.print(f"[bold]memq (SQLite): {size:,} records, {sc.USERS} users")
    batch_ms = sc.load(mem, texts, f"memq {size:,}: add")
    total_s = sum(batch_ms) / 1000
    out: dict[str, Any] = {
        "add_total_s": round(total_s, 2),
        "add_rps": round(size / total_s, 1),
        "add_embed_lookup_s": round(timed.seconds, 2),
        "add_rps_excl_lookup": round(size / (total_s - timed.seconds), 1),
        "add_first10_batch_mean_ms": round(float(np.mean(batch_ms[:10])), 1),
        "add_last10_batch_mean_ms": round(float(np.mean(batch_ms[-10:])), 1),
    }
    t0 = time.perf_counter()
    mem.search("first search after the load", k=sb.K)
    out["first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    mirror = getattr(mem.store, "_mirror", None)
    out["mirror_rows_after_load"] = 0 if mirror is None else len(mirror)  # light rows held in memory
    return mem, timed, out


def memq_after(
    mem: Any, timed: Any, size: int, extra: Sequence[str], queries: Sequence[str], cache: Any, path: Path
) -> dict[str, Any]:
    """More adds into the loaded store (its vector and lexical indexes live), then what a new process
    pays: open the file, load the saved indexes, search."""

    timed.seconds = 0.0
    live_ms = []
    with sb.progress() as bar:
        task = bar.add_task(f"memq: {len(extra):,} adds into {size:,}, index live", total=len(extra))
        for start in range(0, len(extra), sb.ADD_BATCH):
            batch = sc.items_for(extra[start : start + sb.ADD_BATCH], size + start)
            t0 = time.perf_counter()
            mem.add(batch)
            live_ms.append((time.perf_counter() - t0) * 1000)
            bar.advance(task, len(batch))
    live_s = sum(live_ms) / 1000
    out: dict[str, Any] = {
        "live_adds": len(extra),
        "live_add_rps": round(len(extra) / live_s, 1),
        "live_add_rps_excl_lookup": round(len(extra) / (live_s - timed.seconds), 1),
        "live_add_embed_s": round(timed.seconds, 2),
    }
    mem.search(queries[1], k=sb.K)
    mem.close()
    out["reopen_first_search_ms"] = sc.reopen_first_search_ms(path, cache, queries[2])
    out["reopen_cold_first_search_ms"] = sc.reopen_first_search_ms(path, cache, queries[3], cold=True)
    out["store_bytes"] = sc.sqlite_bytes(path)
    return out


# -- chroma -----------------------------------------------------------------------------------------


def load_chroma(texts: Sequence[str], vectors: np.ndarray, workdir: Path) -> tuple[Any, Any, dict[str, Any]]:
    """chroma holding the same records (embedding, text, ``{"user": ...}``)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(
        path=str(workdir / "chroma"), settings=Settings(anonymized_telemetry=False)
    )
    col = client.create_collection("memq-bench", configuration={"hnsw": {"space": "ip"}})
    size = len(texts)
    sb.console.print(f"[bold]chroma: {size:,} records")
    t0 = time.perf_counter()
    with sb.progress() as bar:
        task = bar.add_task(f"chroma {size:,}: add", total=size)
        for start in range(0, size, CHROMA_BATCH):
            end = min(start + CHROMA_BATCH, size)
            col.add(
                ids=[str(i) for i in range(start, end)],
                embeddings=vectors[start:end],
                documents=list(texts[start:end]),
                metadatas=[{"user": sc.user_of(i)} for i in range(start, end)],
            )
            bar.advance(task, end - start)
    out: dict[str, Any] = {"add_s": round(time.perf_counter() - t0, 2)}
    out["add_rps"] = round(size / out["add_s"], 1)
    out["hnsw"] = col.configuration_json.get("hnsw")
    return client, col, out


# -- the searches, in interleaved rounds --------------------------------------------------------------


def search_lanes(
    index: Any, mem: Any, col: Any, queries: Sequence[str], qvecs: np.ndarray, size: int
) -> dict[tuple[str, str], Callable[[int], object]]:
    """(system, measurement) -> one timed call for query ``i``; ``scoped`` ones search user ``i``'s 1%."""

    def memq(mode: str, scoped: bool, mirror: bool = True) -> Callable[[int], object]:
        """``mirror=False``: the candidates' light rows read from SQLite, as a reopened store reads the
        rows it has not seen yet (the mirror is switched off for the call, not emptied)."""

        def run(i: int) -> object:
            scope = {"tenant": sb.TENANT, "user": sc.user_of(i)} if scoped else None
            if mirror:
                return mem.search(queries[i], k=sb.K, mode=mode, scope=scope)
            kept, mem.store.mirror_rows = mem.store.mirror_rows, 0
            try:
                return mem.search(queries[i], k=sb.K, mode=mode, scope=scope)
            finally:
                mem.store.mirror_rows = kept

        return run

    def chroma(scoped: bool) -> Callable[[int], object]:
        def run(i: int) -> object:
            res = col.query(
                query_embeddings=[qvecs[i]], n_results=sb.K, where={"user": sc.user_of(i)} if scoped else None
            )
            if len(res["ids"][0]) != min(sb.K, size // sc.USERS if scoped else size):
                raise SystemExit(f"chroma returned {len(res['ids'][0])} results for query {i}")
            return res

        return run

    return {
        ("usearch", "k10"): lambda i: index.search(qvecs[i], sb.K, threads=1),
        ("usearch", "k200"): lambda i: index.search(qvecs[i], 200, threads=1),
        ("memq", "hybrid"): memq("hybrid", False),
        ("memq", "scoped_hybrid"): memq("hybrid", True),
        ("memq", "dense"): memq("dense", False),
        ("memq", "scoped_dense"): memq("dense", True),
        ("memq", "hybrid_sql_rows"): memq("hybrid", False, mirror=False),
        ("memq", "scoped_hybrid_sql_rows"): memq("hybrid", True, mirror=False),
        ("chroma", "dense"): chroma(False),
        ("chroma", "scoped_dense"): chroma(True),
    }


def time_rounds(
    lanes: dict[tuple[str, str], Callable[[int], object]], queries: int, rounds: int
) -> dict[str, dict[str, Any]]:
    """Every lane over ``queries`` questions, ``rounds`` times in turn (a lane's rounds are spread
    over the whole measurement, so a busy spell of a shared machine hits every system alike). Round
    ``r`` asks questions ``r * queries`` to ``(r + 1) * queries - 1``: no question repeats, so no
    cache gets a question it has seen; the warm-up questions (after the rounds' ones) of every lane
    first. p50/p95 over all rounds' times, and each round's p50."""
    for run in lanes.values():
        for i in range(rounds * queries, rounds * queries + sb.WARMUP_QUERIES):
            run(i)
    times: dict[tuple[str, str], list[list[float]]] = {lane: [] for lane in lanes}
    with sb.progress() as bar:
        task = bar.add_task(
            f"searches: {len(lanes)} lanes x {rounds} rounds", total=len(lanes) * rounds * queries
        )
        for r in range(rounds):
            for lane, run in lanes.items():
                ms = []
                for i in range(r * queries, (r + 1) * queries):
                    t0 = time.perf_counter()
                    run(i)
                    ms.append((time.perf_counter() - t0) * 1000)
                times[lane].append(ms)
                bar.advance(task, queries)
    out: dict[str, dict[str, Any]] = {}
    for (system, name), per_round in times.items():
        flat = [t for ms in per_round for t in ms]
        out.setdefault(system, {}).update(
            sc.latency(name, flat), **{f"{name}_round_p50_ms": [sb.pct(ms, 50) for ms in per_round]}
        )
    return out


# -- the 1M child -----------------------------------------------------------------------------------


def run_scale(size: int, queries: int, data: str | None, workdir: Path) -> dict[str, Any]:
    sb.console.print(f"[bold]memq at {size:,} records (child process: benchmarks/store_scale.py)")
    out = workdir / "scale.json"
    cmd = [sys.executable, str(Path(__file__).with_name("store_scale.py")), "--size", str(size)]
    cmd += ["--queries", str(queries), "--out", str(out)] + (["--data", data] if data else [])
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"store_scale.py failed with exit code {proc.returncode}")
    result = json.loads(out.read_text())
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    return result


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "memq's SQLite store beside chroma and raw usearch, in one run with the same vectors and "
            "queries: unscoped and 1%-scope search, first search after a bulk load, adds with the "
            "index live, and memq at 1M records with peak RSS (issue 12). Writes "
            "benchmarks/results/store-peers.json and a section of docs/benchmarks-store.md."
        ),
        epilog=(
            "examples:\n"
            f"  {COMMAND}                            # the committed run (100k, 1M; hashing vectors)\n"
            f"  {COMMAND} --quick                    # smoke run (3,000 and 6,000 records), into benchmarks/.cache/\n"
            f"  {COMMAND} --scale-size 0             # without the 1M child\n"
            f"  {COMMAND} --doc-only                 # regenerate the section (e.g. after load_test.py)\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--size", type=int, default=100_000, help="records side by side (default: %(default)s)"
    )
    parser.add_argument("--queries", type=int, default=200, help="search queries (default: %(default)s)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="rounds of every search measurement, interleaved across systems (default: %(default)s)",
    )
    parser.add_argument(
        "--scale-size",
        type=int,
        default=1_000_000,
        help="records for memq alone, hashing vectors, in a child process; 0 skips it (default: %(default)s)",
    )
    parser.add_argument(
        "--live-adds",
        type=int,
        default=LIVE_ADDS,
        help="records added to the loaded store with its index live (default: %(default)s)",
    )
    parser.add_argument(
        "--vectors",
        choices=("minilm", "hashing"),
        default="hashing",
        help=(
            "vectors for the side-by-side part (default: %(default)s): minilm (through the embedding cache --cache; texts "
            "missing from it are embedded first, slow on a CPU) or hashing (memq's model-free "
            f"HashingEmbedder, {sb.HASHING_DIM}-d). The 1M part always uses hashing."
        ),
    )
    parser.add_argument("--data", default=None, help="folder holding the datasets (default: ../shared/data)")
    parser.add_argument(
        "--cache",
        type=Path,
        default=sb.DEFAULT_CACHE,
        help=f"embedding cache for --vectors minilm (default: {sb.DEFAULT_CACHE.relative_to(ROOT)})",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run; results go to benchmarks/.cache/")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"results JSON (default: {DEFAULT_OUTPUT.relative_to(ROOT)})",
    )
    parser.add_argument(
        "--doc", type=Path, default=None, help=f"docs page (default: {sb.DEFAULT_DOC.relative_to(ROOT)})"
    )
    parser.add_argument("--doc-only", action="store_true", help="only regenerate the section from the JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.scale_size, args.live_adds = QUICK["size"], QUICK["scale_size"], QUICK["live_adds"]
        args.queries = min(args.queries, QUICK["queries"])
        args.rounds = min(args.rounds, 2)
    args.output = args.output or (QUICK_OUTPUT if args.quick else DEFAULT_OUTPUT)
    args.doc = args.doc or (QUICK_DOC if args.quick else sb.DEFAULT_DOC)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.size < sc.USERS * sb.K or args.queries < sb.WARMUP_QUERIES:
        parser.error(f"--size must be at least {sc.USERS * sb.K} and --queries at least {sb.WARMUP_QUERIES}")
    if args.scale_size and args.scale_size < sb.ADD_BATCH:
        parser.error(f"--scale-size must be 0 or at least {sb.ADD_BATCH}")
    return args


def command_line(args: argparse.Namespace) -> str:
    parts = [COMMAND] + (["--quick"] if args.quick else [])
    if not args.quick:
        defaults = {
            "size": 100_000,
            "queries": 200,
            "rounds": ROUNDS,
            "scale_size": 1_000_000,
            "live_adds": LIVE_ADDS,
        }
        parts += [
            f"--{k.replace('_', '-')} {getattr(args, k)}"
            for k, v in defaults.items()
            if getattr(args, k) != v
        ]
    return " ".join([*parts, f"--vectors {args.vectors}"])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.doc_only:
        write_section(args.doc, render_section(json.loads(args.output.read_text())))
        sb.console.print(f"wrote the section of {args.doc}")
        return 0
    load_start = loadavg()
    started = time.perf_counter()
    sources = sb.load_sources(sb.data_root(args.data))
    corpus, corpus_info = sb.build_corpus(sources, args.size + args.live_adds)
    texts, synthetic = sc.extend_texts([d.text for d in corpus], args.size + args.live_adds)
    wanted = args.queries * args.rounds + sb.WARMUP_QUERIES
    queries = sb.build_queries(sources, wanted)  # every round its own, none repeats
    if len(queries) < wanted:
        raise SystemExit(
            f"the datasets hold {len(queries)} distinct questions; --queries x --rounds needs {wanted}"
        )
    del sources, corpus
    cache = sb.open_cache(args.cache, len(texts) + len(queries), args.vectors)
    fill = sb.fill_cache(cache, [sb.Doc(t, "", "", "") for t in texts], queries)  # the live adds' too
    vectors = cache.embed_documents(texts[: args.size])
    qvecs = np.stack([cache.embed_query(q) for q in queries])
    workdir = Path(tempfile.mkdtemp(prefix="memq-store-peers-"))
    results: dict[str, Any] = {}
    try:
        index, results["usearch"] = load_usearch(vectors)
        db = workdir / "memq.db"
        mem, timed, results["memq"] = load_memq(texts[: args.size], cache, db)
        client, col, results["chroma"] = load_chroma(texts[: args.size], vectors, workdir)
        lanes = search_lanes(index, mem, col, queries, qvecs, args.size)
        for system, figures in time_rounds(lanes, args.queries, args.rounds).items():
            results[system].update(figures)
        del col, client, index
        gc.collect()
        extra = texts[args.size :]
        results["memq"].update(memq_after(mem, timed, args.size, extra, queries, cache, db))
        load_mid = loadavg()
        if args.scale_size:
            results["memq_scale"] = run_scale(args.scale_size, args.queries, args.data, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    data = {
        "benchmark": "store-peers",
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command_line(args),
        "quick": args.quick,
        "seconds": round(time.perf_counter() - started, 1),
        "machine": {
            **sb.machine_info(),
            "loadavg_start": load_start,
            "loadavg_before_scale": load_mid,
            "loadavg_end": loadavg(),
        },
        "versions": {**sb.package_versions(), "chromadb": sb.version_of("chromadb")},
        "git": sb.git_state(),
        "parameters": {
            "size": args.size,
            "users": sc.USERS,
            "queries": args.queries,  # per round; every round asks its own
            "distinct_queries": len(queries),
            "k": sb.K,
            "add_batch": sb.ADD_BATCH,
            "chroma_batch": CHROMA_BATCH,
            "live_adds": args.live_adds,
            "scale_size": args.scale_size,
            "vectors": args.vectors,
            "embedding_model": cache.model_id,
            "embedding_dim": cache.dim,
            "synthetic_texts": synthetic,
            "warmup_queries": sb.WARMUP_QUERIES,
            "rounds": args.rounds,
        },
        "corpus": corpus_info,
        "embedding_cache": fill,
        "results": results,
    }
    sb.write_json(args.output, data)
    write_section(args.doc, render_section(data))
    sb.console.print(f"wrote {args.output} and the section of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
