"""``memq bench ...``: benchmark commands. Each writes a results JSON and prints a table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memq.errors import MemqError

bench_app = typer.Typer(help="Benchmarks on real data (results JSON + a table).", no_args_is_help=True)
console = Console()

DEFAULT_CACHE = Path(".memq/cache/embeddings.sqlite")


@bench_app.command()
def ttl(
    data: Annotated[Path, typer.Option("--data", help="Training stream: a CSV with text and label columns.")],
    test: Annotated[Path | None, typer.Option(help="Held-out CSV, evaluated with memory frozen.")] = None,
    noise: Annotated[str, typer.Option(help="Poisoning rate(s) p, comma-separated, e.g. 0,0.3,0.5.")] = "0.3",
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per (learner, noise); report mean ± std.")] = 3,
    k: Annotated[int, typer.Option("--k", min=1, help="Records shown per step.")] = 3,
    learners: Annotated[
        str,
        typer.Option(help="Comma-separated: similarity, memrl, memento_q, memq (oracle is always added)."),
    ] = "similarity,memrl,memento_q,memq",
    max_steps: Annotated[int | None, typer.Option(min=1, help="Cut the stream for a quick run.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    out: Annotated[Path, typer.Option(help="Where to write the results JSON.")] = Path("results-ttl.json"),
    doc: Annotated[Path | None, typer.Option(help="Also write the markdown table to this file.")] = None,
    cache: Annotated[
        Path, typer.Option(help="Embedding cache (each text is embedded once).")
    ] = DEFAULT_CACHE,
) -> None:
    """Test-time learning on a poisoned-experience stream (any text,label CSV; BANKING77 by default in docs)."""
    from memq.bench.ttl import load_labelled_csv, run_benchmark
    from memq.learn import LEARNERS

    try:
        noises = [float(x) for x in noise.split(",") if x.strip()]
    except ValueError:
        console.print(f"[red]error[/]: --noise takes numbers like 0.3 or 0,0.3,0.5, got {noise!r}")
        raise typer.Exit(2) from None
    names = [x.strip() for x in learners.split(",") if x.strip()]
    bad = [n for n in names if n not in LEARNERS]
    if bad or not names or any(not 0 <= p < 1 for p in noises):
        console.print(f"[red]error[/]: learners must be among {', '.join(LEARNERS)} and 0 <= noise < 1")
        raise typer.Exit(2)
    try:
        train_ds = load_labelled_csv(data)
        test_ds = load_labelled_csv(test) if test else None
        total_runs = len(noises) * (len(names) + 1) * seeds
        n_texts = len(train_ds.texts) + (len(test_ds.texts) if test_ds else 0)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
            emb = bar.add_task("embedding (cached)", total=n_texts)
            runs = bar.add_task("stream runs", total=total_runs)
            report = run_benchmark(
                train_ds,
                test_ds,
                learners=names,
                noises=noises,
                seeds=seeds,
                k=k,
                max_steps=max_steps,
                jobs=jobs,
                cache_path=cache,
                on_embed=lambda n: bar.advance(emb, n),
                on_run=lambda r: bar.advance(runs, 1),
            )
    except MemqError as exc:
        console.print(f"[red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(2) from None
    import shlex
    import sys

    report["command"] = "memq " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = Table(title=f"test-time learning on {data.name}: k={k}, {seeds} seed(s), last 2,000 steps")
    for col in ("noise", "learner", "last 2,000", "overall", "gap closed", "test (frozen)"):
        table.add_column(col)
    for r in report["results"]:
        gap = r.get("gap_closed")
        table.add_row(
            f"{r['noise']:.1f}",
            r["learner"],
            f"{r['last2000_mean']:.3f} ± {r['last2000_std']:.3f}",
            f"{r['overall_mean']:.3f}",
            "" if gap is None else f"{gap:.2f}",
            f"{r['test_mean']:.3f}" if "test_mean" in r else "",
        )
    console.print(table)
    console.print(f"results: {out} ({report['seconds']:.0f}s)")
    if doc:
        _write_doc(report, doc)


def _write_doc(report: dict, doc: Path) -> None:
    import shlex
    import sys

    from memq.bench.ttl import markdown_page

    command = report.get("command") or "memq " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report["command"] = command
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(markdown_page(report, command))
    console.print(f"page: {doc}")


@bench_app.command(name="ttl-report")
def ttl_report(
    results: Annotated[Path, typer.Argument(help="A results JSON written by `memq bench ttl`.")],
    doc: Annotated[Path, typer.Option(help="The markdown page to (re)write.")] = Path("docs/results-ttl.md"),
) -> None:
    """Regenerate the results page from a committed JSON without re-running the benchmark."""
    _write_doc(json.loads(results.read_text()), doc)


# LongMemEval and FactConsolidation retrieval benchmarks (memq.bench.retrieval_cmds).
from memq.bench.retrieval_cmds import conflict as _conflict  # noqa: E402
from memq.bench.retrieval_cmds import longmemeval as _longmemeval  # noqa: E402

bench_app.command(name="longmemeval")(_longmemeval)
bench_app.command(name="conflict")(_conflict)
