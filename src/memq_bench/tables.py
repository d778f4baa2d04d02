"""Terminal output every benchmark can share: a rich table of a results file and a standard progress bar.

```python
from memq_bench.tables import bench_progress, print_results

with bench_progress(console) as bar:
    task = bar.add_task("questions", total=len(questions))
    ...; bar.advance(task)
print_results(results_file, console)          # or metrics=["recall@5", "ndcg@10", "search_ms_p50"]
```
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich import box
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

from memq_bench.results import ResultsFile
from memq_bench.view import best_values, fmt_value, labels, metric_names, quality_metrics


def bench_progress(console: Console | None = None, *, transient: bool = False, eta: bool = True) -> Progress:
    """Description, bar, done/total, elapsed and (``eta``) remaining time — the same look on every long run."""
    remaining = (TextColumn("eta"), TimeRemainingColumn()) if eta else ()
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *remaining,
        console=console,
        transient=transient,
    )


def default_metrics(rf: ResultsFile, max_columns: int = 9) -> list[str]:
    """Unsliced quality metrics (no ``_std``), then add/search p50 latency, up to ``max_columns``."""
    names = metric_names(rf.results)
    quality = quality_metrics(rf.results)
    cost = [n for n in ("add_ms_p50", "search_ms_p50") if n in names]
    keep = max(1, max_columns - len(cost))
    return quality[:keep] + cost


def results_table(
    rf: ResultsFile, *, metrics: Sequence[str] | None = None, title: str | None = None
) -> Table:
    """One row per result (system, plus dataset/variant where they vary), one column per metric.

    The best value of each quality or latency column is bold.
    """
    cols = list(metrics) if metrics is not None else default_metrics(rf)
    table = Table(title=title or f"{rf.benchmark}: {len(rf.results)} result(s)")
    table.add_column("system")
    for name in cols:
        table.add_column(name, justify="right")
    best = best_values(rf.results, cols, skip=("oracle",))
    for label, r in zip(labels(rf.results), rf.results, strict=True):
        cells = []
        for name in cols:
            v = r.metrics.get(name)
            text = fmt_value(name, v)
            cells.append(f"[bold]{text}[/]" if v is not None and best.get(name) == v else text)
        table.add_row(label, *cells)
    return table


def variant_table(
    rf: ResultsFile,
    title: str,
    columns: Mapping[str, str] | Sequence[str],
    *,
    online: bool | None = None,
    compact: bool = False,
) -> Table:
    """One row per (system, variant), one column per metric key of ``columns`` (key -> header, or keys alone).

    ``online``: only the online rows (True), only the others (False), or every row (None).
    ``compact``: a narrow layout (no outer padding, cells never wrapped) for many columns.
    Latencies (``_ms_``) and rates (``_per_s``) show one decimal, everything else three.
    """
    headers = columns if isinstance(columns, Mapping) else {c: c for c in columns}
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False) if compact else Table(title=title)
    table.add_column("system", no_wrap=compact)
    table.add_column("variant", no_wrap=compact)
    for header in headers.values():
        table.add_column(header, justify="right", no_wrap=compact, min_width=5 if compact else None)
    for r in rf.results:
        if online is not None and r.variant.startswith("online") != online:
            continue
        cells = []
        for key in headers:
            v = r.metrics.get(key)
            wide = "_ms_" in key or key.endswith("_per_s")
            cells.append("" if v is None else (f"{v:.1f}" if wide else f"{v:.3f}"))
        table.add_row(r.system, r.variant.removeprefix("supersession-"), *cells)
    return table


def print_results(
    rf: ResultsFile,
    console: Console | None = None,
    *,
    metrics: Sequence[str] | None = None,
    title: str | None = None,
) -> None:
    (console or Console()).print(results_table(rf, metrics=metrics, title=title))
