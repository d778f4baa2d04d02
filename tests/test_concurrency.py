"""Several processes on one store, and writers killed mid-batch.

The processes use the hashing embedder: these tests are about the store's transactions and its
vector index, not embedding quality, and loading MiniLM in every process would only add time.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from memq import Memory
from memq.embed import HashingEmbedder

PROCESSES = 4
ADDS_PER_PROCESS = 500


def _adder(url: str, worker: int, start: mp.Event, errors: mp.Queue) -> None:  # type: ignore[type-arg]
    try:
        mem = Memory(url, embedder=HashingEmbedder(dim=64), scope="shared")
        start.wait(30)
        for i in range(ADDS_PER_PROCESS):
            mem.add(f"worker {worker} note {i} about topic {i % 17}", metadata={"worker": worker, "i": i})
        mem.close()
    except BaseException as exc:  # report every failure to the parent, whatever it is
        errors.put(f"worker {worker}: {type(exc).__name__}: {exc}")
        raise


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_four_processes_adding_concurrently_lose_nothing(db_url: str) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    errors = ctx.Queue()
    # create the schema and the embedding space first, as an application would on deploy
    with Memory(db_url, embedder=HashingEmbedder(dim=64), scope="shared") as mem:
        mem.add("seed record")
    procs = [ctx.Process(target=_adder, args=(db_url, w, start, errors)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    start.set()
    for p in procs:
        p.join(300)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    with Memory(db_url, embedder=HashingEmbedder(dim=64), scope="shared") as mem:
        records = list(mem.iter(limit=1000))
        assert len(records) == PROCESSES * ADDS_PER_PROCESS + 1
        seen = {(r.metadata["worker"], r.metadata["i"]) for r in records if "worker" in r.metadata}
        assert seen == {(w, i) for w in range(PROCESSES) for i in range(ADDS_PER_PROCESS)}
        hit = mem.search("worker 3 note 499 about topic 6", k=1, mode="dense").records[0]
        assert hit.metadata == {"worker": 3, "i": 499}
        if hasattr(mem.store, "verify_index"):
            assert mem.store.verify_index()


BATCH = 50


def _batch_writer(path: str, first_batch: int) -> None:
    mem = Memory(path, embedder=HashingEmbedder(dim=64), scope="crash")
    batch = first_batch
    while True:
        mem.add([f"batch {batch} item {i}" for i in range(BATCH)], metadata={"batch": batch})
        batch += 1


def test_sigkill_mid_batch_leaves_only_whole_batches(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.db")
    rng = random.Random(7)
    ctx = mp.get_context("fork")
    next_batch = 0
    for round_ in range(20):
        proc = ctx.Process(target=_batch_writer, args=(path, next_batch))
        proc.start()
        time.sleep(0.3 + rng.random() * 0.7)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            counts: dict[int, int] = dict(
                conn.execute("SELECT json_extract(metadata, '$.batch'), count(*) FROM records GROUP BY 1")
            )
        with Memory(path, embedder=HashingEmbedder(dim=64), scope="crash") as mem:
            assert mem.stats().records == sum(counts.values())
            assert all(c == BATCH for c in counts.values()), f"round {round_}: partial batch in {counts}"
            assert mem.store.verify_index(), f"round {round_}: vector index disagrees with rows"
            if counts:
                last = max(counts)
                found = mem.search(f"batch {last} item 7", k=1, filters={"metadata.batch": last}).records
                assert found and found[0].text == f"batch {last} item 7"
            next_batch = max(counts, default=-1) + 1
    assert next_batch > 20, "the writer should have committed batches between kills"
