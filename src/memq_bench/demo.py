"""``memq demo``: what memq's learning buys, on real data, in a few minutes on two cores.

The default demo runs the BANKING77 poisoned-experience stream (``memq bench ttl`` in small): an
LLM-free agent answers a stream of 10,003 banking queries by retrieving k stored experiences and
voting on their labels; it learns from reward, and a share p of the experiences it stores carry a
wrong label. Learners ``similarity`` (no learning), ``memrl`` and ``memq`` are compared with the
``oracle`` (similarity over clean experiences only). It prints accuracy per quarter of the stream,
the final-window accuracy and the gap closed toward the oracle, and writes a results JSON and a
self-contained HTML report.

``memq demo --dataset locomo`` is the older walk-through: one real LoCoMo conversation into a fresh
store (turn by turn, speaker and session date as world time), a few questions with the evidence turns
marked, and evidence recall@5 over the conversation's questions of categories 1–4.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memq.memory import Memory
from memq.types import NewRecord
from memq_bench.data import dataset_file
from memq_bench.locomo import CATEGORIES, LOCOMO_FILE, load_locomo
from memq_bench.tables import bench_progress
from memq_bench.ttl import Dataset

BATCH = 64
BANKING77_TRAIN = "banking77/train.csv"


def run_locomo_demo(
    db: Path,
    *,
    data: str | None = None,
    conversation: int = 0,
    questions: int = 5,
    k: int = 5,
    console: Console | None = None,
) -> dict[str, float]:
    console = console or Console()
    conv = load_locomo(dataset_file(LOCOMO_FILE, data))[conversation]
    for suffix in ("", "-wal", "-shm", ".usearch", ".usearch.json"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    console.print(
        f"[bold]memq demo[/]: LoCoMo conversation [cyan]{conv.sample_id}[/] between "
        f"{conv.speakers[0]} and {conv.speakers[1]} — {len(conv.turns)} turns, {len(conv.questions)} questions"
    )
    started = time.perf_counter()
    with Memory(db, scope={"tenant": "demo", "session": conv.sample_id}) as mem:
        console.print("loading the embedder (all-MiniLM-L6-v2, offline) ...")
        mem.embedder.embed_query("warm up")
        with bench_progress(console, transient=True, eta=False) as bar:
            task = bar.add_task("adding turns", total=len(conv.turns))
            for i in range(0, len(conv.turns), BATCH):
                chunk = conv.turns[i : i + BATCH]
                mem.add(
                    [
                        NewRecord(
                            text=t.indexed_text(),
                            kind="episode",
                            metadata={"dia_id": t.dia_id, "speaker": t.speaker, "session": t.session},
                            valid_from=t.when,
                            provenance={
                                "source": f"locomo:{conv.sample_id}",
                                "source_message_ids": [t.dia_id],
                            },
                        )
                        for t in chunk
                    ]
                )
                bar.advance(task, len(chunk))
        added = time.perf_counter() - started
        console.print(f"added {len(conv.turns)} turns in {added:.1f}s → {db}")

        scored = [q for q in conv.questions if q.category in (1, 2, 3, 4) and q.evidence]
        shown = scored[:: max(1, len(scored) // questions)][:questions]
        for q in shown:
            result = mem.search(q.question, k=k)
            table = Table(
                title=f"[bold]{q.question}[/]  (gold: {q.answer}; {CATEGORIES[q.category]})",
                title_justify="left",
                show_header=True,
                expand=True,
            )
            table.add_column("#", width=3)
            table.add_column("turn", width=7)
            table.add_column("memory")
            table.add_column("evidence", width=8)
            for hit in result.hits:
                dia = hit.record.metadata.get("dia_id", "")
                mark = "[green]yes[/]" if dia in q.evidence else ""
                table.add_row(str(hit.rank), dia, hit.record.text[:160], mark)
            console.print(table)

        search_started = time.perf_counter()
        found = 0.0
        for q in scored:
            ids = {h.record.metadata.get("dia_id") for h in mem.search(q.question, k=k).hits}
            found += len(ids & set(q.evidence)) / len(set(q.evidence))
        per_query = (time.perf_counter() - search_started) / max(1, len(scored))
        recall = found / max(1, len(scored))
        console.print(
            f"evidence recall@{k} over {len(scored)} questions (categories 1–4): [bold]{recall:.3f}[/]  "
            f"(search {per_query * 1000:.0f} ms/query including embedding)"
        )
        console.print(
            f'try it: [cyan]memq --db {db} --tenant demo search "what does {conv.speakers[0]} paint?"[/]'
        )
    return {"recall": recall, "add_seconds": added, "search_ms": per_query * 1000}


# ------------------------------------------------------------------------------------------------
# The default demo: learning from reward on the BANKING77 poisoned-experience stream.

DEMO_LEARNERS = ("similarity", "memrl", "memq")
SPARK = "▁▂▃▄▅▆▇█"


def _spark(values: list[float], lo: float = 0.0, hi: float = 1.0, width: int = 40) -> str:
    """A one-line chart of a learning curve (each character one window, resampled to ``width``)."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        values = [values[int(i * step)] for i in range(width)]
    span = max(hi - lo, 1e-9)
    return "".join(SPARK[min(len(SPARK) - 1, max(0, int((v - lo) / span * len(SPARK))))] for v in values)


def _subsample(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of ``n`` rows (embedding only what the cut stream uses)."""
    if n is None or n >= len(ds.texts):
        return ds
    idx = sorted(np.random.default_rng(seed).permutation(len(ds.texts))[:n].tolist())
    return Dataset(ds.path, [ds.texts[i] for i in idx], [ds.labels[i] for i in idx])


def run_ttl_demo(
    *,
    data: str | Path | None = None,
    noise: float = 0.3,
    seeds: int = 1,
    k: int = 3,
    max_steps: int | None = None,
    jobs: int = 2,
    out_dir: Path = Path(".memq/demo"),
    cache: Path = Path(".memq/cache/embeddings.sqlite"),
    console: Console | None = None,
) -> dict[str, Any]:
    """Run the stream with similarity, memrl and memq (plus the oracle) and summarise the curves.

    Returns the final-window accuracy and gap closed per learner and the paths written.
    """
    from memq_bench.report import write_report
    from memq_bench.results import write_results
    from memq_bench.ttl import load_labelled_csv, run_with_progress, to_results_file

    console = console or Console()
    started = time.perf_counter()
    ds = _subsample(load_labelled_csv(dataset_file(BANKING77_TRAIN, data)), max_steps)
    console.print(
        f"[bold]memq demo[/]: an agent answers a stream of {len(ds.texts):,} banking queries "
        f"({len(set(ds.labels))} intents) from {Path(ds.path).parent.name}/{Path(ds.path).name} by retrieving "
        f"k={k} stored experiences and voting on their labels; reward 1 if right. "
        f"{noise:.0%} of the experiences it stores are poisoned with a wrong label."
    )
    console.print(
        "learners: [cyan]similarity[/] (no learning), [cyan]memrl[/] (MemRL's Q-values), "
        "[cyan]memq[/] (memq's contextual utility model); [cyan]oracle[/] = similarity over clean "
        f"experiences only. {seeds} seed(s); embedding with all-MiniLM-L6-v2 (cached in {cache})."
    )
    report = run_with_progress(
        ds,
        None,
        console=console,
        learners=list(DEMO_LEARNERS),
        noises=[noise],
        seeds=seeds,
        k=k,
        max_steps=None,
        jobs=jobs,
        cache_path=cache,
    )
    report["command"] = "memq demo" + (f" --max-steps {max_steps}" if max_steps else "")
    rf = to_results_file(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    results_path = write_results(out_dir / "ttl-demo.json", rf)
    report_path = write_report(
        [results_path], out_dir / "report.html", title="memq demo: learning from reward"
    )

    curves = {c["system"]: c["accuracy"] for c in rf.extra["curves"]}
    steps = rf.results[0].config["steps"] if rf.results else 0
    last = min(2000, steps)
    table = Table(
        title=f"accuracy on the stream (p = {noise}, {steps:,} steps, {seeds} seed(s))", title_justify="left"
    )
    table.add_column("learner")
    for q in range(1, 5):
        table.add_column(f"Q{q}", justify="right")
    table.add_column(f"last {last:,}", justify="right")
    table.add_column("gap closed", justify="right")
    summary: dict[str, Any] = {"final": {}, "gap_closed": {}}
    for r in rf.results:
        m = r.metrics
        gap = m.get("gap_closed")
        summary["final"][r.system] = m["acc_last2000"]
        summary["gap_closed"][r.system] = gap
        style = "bold" if r.system == "memq" else ""
        table.add_row(
            r.system,
            *(f"{m[f'acc_q{q}']:.3f}" if f"acc_q{q}" in m else "" for q in range(1, 5)),
            f"[{style}]{m['acc_last2000']:.3f}[/]" if style else f"{m['acc_last2000']:.3f}",
            "" if gap is None else f"{gap:.0%}",
        )
    console.print(table)
    window = rf.extra["curve_window"]
    console.print(f"learning curves (accuracy per {window}-step window, bar height 0 → 1):")
    for r in rf.results:
        console.print(f"  {r.system:<11} {_spark(curves.get(r.system, []))}")
    final, gaps = summary["final"], summary["gap_closed"]
    if {"similarity", "memq", "oracle"} <= set(final):
        console.print(
            f"On the last {last:,} steps memq answers {final['memq']:.1%} right against {final['similarity']:.1%} "
            f"for plain similarity and {final['oracle']:.1%} for the oracle"
            + (f": it closes {gaps['memq']:.0%} of the gap." if gaps.get("memq") is not None else ".")
            + (f" memrl closes {gaps['memrl']:.0%}." if gaps.get("memrl") is not None else "")
        )
    seconds = time.perf_counter() - started
    console.print(f"results JSON: {results_path.resolve()}")
    console.print(f"HTML report:  [bold]{report_path.resolve()}[/]  (open it in a browser; works offline)")
    console.print(
        f"done in {seconds:.0f} s. The full benchmark (3 noise levels, 4 learners, 3 seeds, held-out test): "
        "[cyan]memq bench ttl --noise 0,0.3,0.5[/]; every benchmark: [cyan]memq bench all[/]"
    )
    summary.update(results=results_path, report=report_path, seconds=seconds, steps=steps)
    return summary
