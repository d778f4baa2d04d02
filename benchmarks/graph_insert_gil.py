#!/usr/bin/env python3
"""How far an HNSW insert on a worker thread runs beside the caller's work (issue 12, adds).

memq's SQLite store hands each batch's graph insert (usearch, memq's graph settings) to a worker
thread and goes on with the next batch (``VectorIndex.add`` / ``settle``). usearch releases the GIL
for an insert, but its first thread takes it back after each row it inserts, and its threads split
the rows evenly. This script measures what that does: a graph of ``--base`` random unit vectors,
then batches of ``--batch`` rows inserted on a worker thread while the calling thread either

* sleeps (``time.sleep``: the GIL is free), or
* runs a pure-Python loop (holds the GIL, as the writer's validation and row encoding do),

for 1, 2 and 4 insert threads, and once more with the interpreter's switch interval at 0.5 ms
instead of 5 ms. Each cell is the median of ``--repeats`` batches; the figure is milliseconds per
inserted row. Results: ``benchmarks/results/graph-insert-gil.json`` (the store page,
docs/benchmarks-store.md, quotes them).

Usage::

    .venv/bin/python benchmarks/graph_insert_gil.py            # the committed run (about a minute)
    .venv/bin/python benchmarks/graph_insert_gil.py --base 20000 --output /tmp/gil.json
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb

ROOT = sb.ROOT
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "graph-insert-gil.json"
COMMAND = ".venv/bin/python benchmarks/graph_insert_gil.py"
DIM = 384
THREADS = (1, 2, 4)


def _sleeping(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.001)


def _python_loop(stop: threading.Event) -> None:
    while not stop.is_set():
        total = 0
        for i in range(2_000):
            total += i


CALLERS: dict[str, Callable[[threading.Event], None]] = {"sleeps": _sleeping, "runs Python": _python_loop}


def insert_ms_per_row(graph: Any, vectors: np.ndarray, first_key: int, threads: int, caller: str) -> float:
    """One batch inserted on a worker thread while this thread does ``caller``'s work."""
    stop = threading.Event()
    keys = np.arange(first_key, first_key + len(vectors), dtype=np.uint64)
    with ThreadPoolExecutor(1) as worker:
        t0 = time.perf_counter()
        pending = worker.submit(graph.add, keys, vectors, threads=threads)
        pending.add_done_callback(lambda _: stop.set())
        CALLERS[caller](stop)
        pending.result()
        seconds = time.perf_counter() - t0
    return seconds * 1000 / len(vectors)


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def run(base: int, batch: int, repeats: int) -> list[dict[str, Any]]:
    from memq.store.sqlite.vectors import _new_graph

    rng = np.random.default_rng(0)
    graph = _new_graph(DIM)
    graph.add(np.arange(base, dtype=np.uint64), unit_vectors(rng, base), threads=0)
    next_key = base
    cases = [(caller, threads, 0.005) for caller in CALLERS for threads in THREADS]
    cases += [("runs Python", threads, 0.0005) for threads in THREADS]
    times: dict[tuple[str, int, float], list[float]] = {case: [] for case in cases}
    default_interval = sys.getswitchinterval()
    try:
        for _ in range(repeats):  # interleaved: a slow spell of the machine hits every case
            for caller, threads, interval in cases:
                sys.setswitchinterval(interval)
                times[(caller, threads, interval)].append(
                    insert_ms_per_row(graph, unit_vectors(rng, batch), next_key, threads, caller)
                )
                next_key += batch
    finally:
        sys.setswitchinterval(default_interval)
    return [
        {
            "caller": caller,
            "insert_threads": threads,
            "switch_interval_ms": interval * 1000,
            "ms_per_row": round(statistics.median(values), 3),
            "runs": [round(v, 3) for v in values],
        }
        for (caller, threads, interval), values in times.items()
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time a usearch graph insert on a worker thread beside a sleeping or Python-running "
        "caller (the GIL's part in memq's adds with the index live).",
        epilog=f"example:\n  {COMMAND} --base 20000 --output /tmp/gil.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--base", type=int, default=80_000, help="vectors in the graph first (default: %(default)s)"
    )
    parser.add_argument("--batch", type=int, default=500, help="rows per timed insert (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="batches per case (default: %(default)s)")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.base < 1 or args.batch < 1 or args.repeats < 1:
        parser.error("--base, --batch and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    results = run(args.base, args.batch, args.repeats)
    data = {
        "benchmark": "graph-insert-gil",
        "created": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([COMMAND, *map(shlex.quote, sys.argv[1:] if argv is None else argv)]),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": sb.machine_info(),
        "versions": sb.package_versions(),
        "git": sb.git_state(),
        "parameters": {"base": args.base, "batch": args.batch, "repeats": args.repeats, "dim": DIM},
        "results": results,
    }
    sb.write_json(args.output, data)
    for r in results:
        print(
            f"caller {r['caller']:<12} insert threads {r['insert_threads']}  switch interval "
            f"{r['switch_interval_ms']:g} ms: {r['ms_per_row']:.3f} ms a row"
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
