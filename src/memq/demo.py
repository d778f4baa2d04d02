"""``memq demo``: one real LoCoMo conversation into a fresh store, then a few questions.

Shows the write path (turn by turn, speaker and session date as world time) and the read path
(hybrid search with the evidence turns marked), and prints evidence recall@5 over the
conversation's questions of categories 1–4.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memq.bench.data import dataset_file
from memq.bench.locomo import CATEGORIES, LOCOMO_FILE, load_locomo
from memq.memory import Memory
from memq.types import NewRecord

BATCH = 64


def run_demo(
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
        with Progress(
            TextColumn("adding turns"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task("add", total=len(conv.turns))
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
