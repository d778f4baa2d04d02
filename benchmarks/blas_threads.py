#!/usr/bin/env python3
"""Why ``memq serve`` caps numpy's BLAS at one thread per call (``--blas-threads``, docs/server.md).

A search multiplies the vector mirror by the query (numpy, OpenBLAS). This times that product, a
2,048 x 384 float32 matrix by a vector, from 1 and from 8 Python threads at once, with BLAS left at
its default thread count and capped at one thread per call (``threadpoolctl``): products per second
and CPU seconds per product. Results: ``benchmarks/results/blas-threads.json``.

Usage::

    .venv/bin/python benchmarks/blas_threads.py
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from memq_bench.results import cpu_info

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results" / "blas-threads.json"
ROWS, DIM = 2048, 384


def rate(mat: np.ndarray, vecs: np.ndarray, threads: int, calls: int) -> dict[str, float]:
    """Products a second and CPU seconds a product with ``threads`` Python threads calling at once."""

    def work() -> None:
        for i in range(calls):
            mat @ vecs[i % len(vecs)]

    pool = [threading.Thread(target=work) for _ in range(threads)]
    wall, cpu = time.perf_counter(), time.process_time()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = threads * calls
    return {"products_per_s": round(n / wall), "cpu_us_per_product": round(cpu / n * 1e6, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="products per thread (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="results JSON (default: %(default)s)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    mat = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vecs = rng.standard_normal((64, DIM)).astype(np.float32)
    default = max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    results: dict[str, Any] = {}
    for label, limit in ((f"blas {default} threads (default)", None), ("blas 1 thread", 1)):
        with threadpool_limits(limits=limit, user_api="blas"):
            results[label] = {f"{n} caller threads": rate(mat, vecs, n, args.calls) for n in (1, 8)}
    data = {
        "benchmark": "blas-threads",
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": ".venv/bin/python benchmarks/blas_threads.py",
        "machine": {
            "cpu_count": os.cpu_count(),
            "loadavg_start": [round(x, 2) for x in os.getloadavg()],
            **cpu_info(),
        },
        "parameters": {"rows": ROWS, "dim": DIM, "calls_per_thread": args.calls},
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
