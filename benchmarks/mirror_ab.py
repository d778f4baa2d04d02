#!/usr/bin/env python3
"""What the SQLite store's light-row mirror saves a search: the same store, the same questions, the
mirror on and off in turn for every question.

``--size`` texts of the store benchmark's corpus (hashing vectors, ``store_scale``'s 100 users) are
added through ``Memory.add`` to a fresh SQLite store, which keeps the rows it adds in its mirror. Then
each of ``--queries`` questions is searched, for each lane (hybrid and dense, over the tenant and
within one user's 1%), once with the mirror and once with it switched off for the call
(``store.mirror_rows = 0``: the candidates' light rows read from SQLite by rowid, what a reopened store
pays for rows it has not read yet); which goes first alternates by question, so neither gets the other's
warm caches. Reported: each lane's search p50 both ways, the p50 of the store call that reads the
light rows (``_light_rows``), and the memory one row takes in the mirror (traced by ``tracemalloc``
while ``MEMORY_ROWS`` of the store's rows are put into an empty mirror).

Results: ``benchmarks/results/mirror.json``; ``docs/algorithms.md`` quotes them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import store_bench as sb
import store_scale as sc

DEFAULT_OUTPUT = sb.ROOT / "benchmarks" / "results" / "mirror.json"
COMMAND = ".venv/bin/python benchmarks/mirror_ab.py"
MEMORY_ROWS = 20_000
LANES = (("hybrid", False), ("hybrid", True), ("dense", False), ("dense", True))


def bytes_per_row(store: Any) -> tuple[int, int]:
    """(rows, bytes a row): up to ``MEMORY_ROWS`` rows read from the store into an empty mirror while
    ``tracemalloc`` counts what stays allocated once the rows read are dropped (the entries and the
    strings they hold)."""
    import tracemalloc

    from memq.store.sqlite import mirror

    held = mirror.RowMirror(mark=0)
    tracemalloc.start()
    try:
        rows = store._read(f"SELECT {mirror.COLUMNS} {mirror.FROM} ORDER BY r.rowid LIMIT ?", (MEMORY_ROWS,))
        held.put(map(mirror.entry_of, rows), held.epoch, len(rows) + 1)
        del rows
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return len(held), round(used / max(len(held), 1))


def main(argv: list[str] | None = None) -> int:
    parser = sb.small_parser(__doc__.split("\n\n")[0], 100_000, "records", 300, DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    from memq import Memory
    from memq.embed import CachedEmbedder, HashingEmbedder
    from memq.store.sqlite import SQLiteStore

    started = time.perf_counter()
    load_start = os.getloadavg()
    sources = sb.load_sources(sb.data_root(args.data))
    corpus, _ = sb.build_corpus(sources, args.size)
    texts = [d.text for d in corpus][: args.size]
    questions = sb.build_queries(sources, args.queries + sb.WARMUP_QUERIES)
    del sources, corpus
    embedder = CachedEmbedder(HashingEmbedder(dim=sb.HASHING_DIM), max_entries=len(questions) + 10)
    for q in questions:
        embedder.embed_query(q)
    with tempfile.TemporaryDirectory(prefix="memq-mirror-ab-") as tmp:
        store = SQLiteStore(Path(tmp) / "m.db")
        mem = Memory(store, embedder=embedder, scope=sb.TENANT)
        sc.load(mem, texts, f"add {len(texts):,}")
        rows_call: dict[bool, list[float]] = {True: [], False: []}
        read_rows = store._light_rows

        def timed_rows(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out = read_rows(*a, **k)
            rows_call[store.mirror_rows > 0].append((time.perf_counter() - t0) * 1000)
            return out

        store._light_rows = timed_rows  # type: ignore[method-assign]
        kept = store.mirror_rows
        lanes: dict[str, dict[bool, list[float]]] = {}
        with sb.progress() as bar:
            task = bar.add_task("searches, mirror on and off in turn", total=len(LANES) * len(questions))
            for mode, scoped in LANES:
                ms: dict[bool, list[float]] = {True: [], False: []}
                for i, q in enumerate(questions):
                    scope = {"tenant": sb.TENANT, "user": sc.user_of(i)} if scoped else None
                    for mirror in (True, False) if i % 2 == 0 else (False, True):
                        store.mirror_rows = kept if mirror else 0
                        t0 = time.perf_counter()
                        mem.search(q, k=sb.K, mode=mode, scope=scope)
                        if i >= sb.WARMUP_QUERIES:
                            ms[mirror].append((time.perf_counter() - t0) * 1000)
                    bar.advance(task)
                lanes[f"{'scoped_' if scoped else ''}{mode}"] = ms
        store.mirror_rows = kept
        mirror = store._mirror
        held = 0 if mirror is None else len(mirror)
        memory = bytes_per_row(store)
        mem.close()
    results = {
        lane: {
            "mirror_p50_ms": round(float(np.median(ms[True])), 3),
            "sql_rows_p50_ms": round(float(np.median(ms[False])), 3),
            "saved_p50_ms": round(float(np.median(ms[False]) - np.median(ms[True])), 3),
        }
        for lane, ms in lanes.items()
    }
    results["memory"] = {"rows": memory[0], "bytes_per_row": memory[1]}
    results["light_rows_call"] = {
        "mirror_p50_ms": round(float(np.median(rows_call[True])), 3),
        "sql_rows_p50_ms": round(float(np.median(rows_call[False])), 3),
    }
    for lane, r in results.items():
        print(lane, json.dumps(r))
    parameters = {
        "size": len(texts),
        "users": sc.USERS,
        "queries": len(questions) - sb.WARMUP_QUERIES,
        "k": sb.K,
        "vectors": f"HashingEmbedder({sb.HASHING_DIM})",
        "mirror_rows_held": held,
    }
    machine = {"loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())}
    sb.save_results(args.output, "mirror", COMMAND, argv, started, parameters, results, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
