"""``memq bench ...``: benchmark commands. Each writes a results JSON and prints a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from memq.errors import MemqError
from memq_bench.cli_common import DEFAULT_CACHE, command_line, console, fail, split, usage_error

bench_app = typer.Typer(help="Benchmarks on real data (results JSON + a table).", no_args_is_help=True)
demo_app = typer.Typer(help="memq's demos: learning from reward (BANKING77), or a LoCoMo walk-through.")

BANKING77_TRAIN, BANKING77_TEST = "banking77/train.csv", "banking77/test.csv"


@bench_app.command()
def ttl(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Training stream: a CSV with text and label columns (default: BANKING77 train.csv "
            "under ../shared/data, with its test.csv as --test).",
        ),
    ] = None,
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
    out: Annotated[
        Path, typer.Option(help="Where to write the results JSON (schema: docs/results.md).")
    ] = Path("results-ttl.json"),
    doc: Annotated[Path | None, typer.Option(help="Also write the markdown page to this file.")] = None,
    cache: Annotated[
        Path, typer.Option(help="Embedding cache (each text is embedded once).")
    ] = DEFAULT_CACHE,
) -> None:
    """Test-time learning on a poisoned-experience stream (any text,label CSV; BANKING77 by default)."""
    from memq.learn import LEARNERS
    from memq_bench.data import dataset_file
    from memq_bench.results import write_results
    from memq_bench.ttl import load_labelled_csv, run_with_progress, to_results_file

    try:
        noises = [float(x) for x in split(noise)]
    except ValueError:
        usage_error(f"--noise takes numbers like 0.3 or 0,0.3,0.5, got {noise!r}")
    names = split(learners)
    bad = [n for n in names if n not in LEARNERS]
    if bad or not names or not noises or any(not 0 <= p < 1 for p in noises):
        usage_error(f"learners must be among {', '.join(LEARNERS)} and 0 <= noise < 1")
    try:
        if data is None:
            data = dataset_file(BANKING77_TRAIN)
            test = test or dataset_file(BANKING77_TEST)
        train_ds = load_labelled_csv(data)
        test_ds = load_labelled_csv(test) if test else None
        report = run_with_progress(
            train_ds,
            test_ds,
            console=console,
            learners=names,
            noises=noises,
            seeds=seeds,
            k=k,
            max_steps=max_steps,
            jobs=jobs,
            cache_path=cache,
        )
    except MemqError as exc:
        fail(exc)
    report["command"] = command_line()
    rf = to_results_file(report)
    write_results(out, rf)
    _ttl_table(rf, f"test-time learning on {data.name}: k={k}, {seeds} seed(s), last 2,000 steps")
    console.print(f"results: {out} ({report['seconds']:.0f}s)")
    if doc:
        _write_doc(rf, doc)


def _ttl_table(rf, title: str) -> None:
    table = Table(title=title)
    for col in ("noise", "learner", "last 2,000", "overall", "gap closed", "test (frozen)"):
        table.add_column(col)
    for r in rf.results:
        m = r.metrics
        gap = m.get("gap_closed")
        table.add_row(
            f"{r.config['noise']:.1f}",
            r.system,
            f"{m['acc_last2000']:.3f} ± {m['acc_last2000_std']:.3f}",
            f"{m['acc_overall']:.3f}",
            "" if gap is None else f"{gap:.2f}",
            f"{m['acc_test']:.3f}" if "acc_test" in m else "",
        )
    console.print(table)


def _write_doc(rf, doc: Path) -> None:
    from memq_bench.ttl_report import markdown_page

    command = rf.args.get("command") or command_line()
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(markdown_page(rf, command))
    console.print(f"page: {doc}")


def _run_cli(fn: Any) -> Any:
    try:
        return fn()
    except (MemqError, OSError, ValueError) as exc:
        fail(exc)


@bench_app.command(name="ttl-report")
def ttl_report(
    results: Annotated[Path, typer.Argument(help="A results JSON written by `memq bench ttl`.")],
    doc: Annotated[Path, typer.Option(help="The markdown page to (re)write.")] = Path("docs/results-ttl.md"),
) -> None:
    """Regenerate the TTL results page from a committed JSON without re-running the benchmark."""
    from memq_bench.view import load_results

    try:
        rf = load_results(results)
    except MemqError as exc:
        fail(exc)
    _write_doc(rf, doc)


@bench_app.command()
def report(
    results: Annotated[list[Path], typer.Argument(help="Results JSON files (any mix of benchmarks).")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    title: Annotated[str, typer.Option(help="Page title.")] = "memq benchmark report",
) -> None:
    """One self-contained HTML report (inline SVG charts, no scripts, opens offline) from results files."""
    from memq_bench.report import write_report

    try:
        path = write_report(results, out, title=title)
    except MemqError as exc:
        fail(exc)
    console.print(f"report: {path.resolve()}")


@bench_app.command(name="results-md")
def results_md(
    results_dir: Annotated[Path, typer.Option("--results-dir", help="Folder of results JSON files.")] = Path(
        "benchmarks/results"
    ),
    out: Annotated[Path, typer.Option(help="The markdown page to (re)write.")] = Path("docs/results.md"),
) -> None:
    """Regenerate docs/results.md (every benchmark's table) from the results JSON files."""
    from memq_bench.results_md import write_results_md

    if not results_dir.is_dir():
        usage_error(f"{results_dir} is not a folder")
    console.print(f"page: {write_results_md(results_dir, out)}")


@bench_app.command()
def show(
    results: Annotated[Path, typer.Argument(help="A results JSON file.")],
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metric names (default: the headline ones).")
    ] = None,
) -> None:
    """Print a results file as a table in the terminal."""
    from memq_bench.tables import print_results
    from memq_bench.view import load_results

    try:
        rf = load_results(results)
    except MemqError as exc:
        fail(exc)
    cols = split(metrics) if metrics else None
    print_results(rf, console, metrics=cols, title=f"{rf.benchmark} ({results})")


def _command_names() -> list[str]:
    return [
        c.name or (c.callback.__name__.replace("_", "-") if c.callback else "")
        for c in bench_app.registered_commands
    ]


@bench_app.command(name="all")
def all_(
    only: Annotated[
        str | None, typer.Option(help="Comma-separated benchmarks to run (default: all).")
    ] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated benchmarks to leave out.")] = None,
    quick: Annotated[
        bool,
        typer.Option(help="Smoke run on small slices, written to .memq/bench-quick/ (docs untouched)."),
    ] = False,
    results_dir: Annotated[
        Path | None,
        typer.Option(help="Where the results JSON go (default benchmarks/results, or .memq/bench-quick)."),
    ] = None,
    doc: Annotated[
        Path | None, typer.Option(help="The results page (default docs/results.md, or in the quick folder).")
    ] = None,
    html: Annotated[
        Path | None, typer.Option("--report", help="The HTML report (default <results-dir>/report.html).")
    ] = None,
    no_run: Annotated[
        bool, typer.Option("--no-run", help="Run nothing; only regenerate the page and the report.")
    ] = False,
    timeout: Annotated[
        float | None, typer.Option(min=1, help="Seconds allowed per benchmark (default: no limit).")
    ] = None,
) -> None:
    """Run every benchmark with its documented defaults, then rewrite docs/results.md and the HTML report.

    Each runs as its own process: ``memq bench <name> --out <results-dir>/<name>.json``. A failed
    benchmark keeps its previous results file; the command exits 1 if any failed.
    """
    from memq_bench.all import plan, run_all

    try:
        selected = plan(only, skip)
    except MemqError as exc:
        fail(exc)
    ok = run_all(
        selected,
        quick=quick,
        results_dir=results_dir,
        doc=doc,
        report=html,
        run=not no_run,
        timeout=timeout,
        available=_command_names(),
        console=console,
    )
    raise typer.Exit(0 if ok else 1)


# The LongMemEval, FactConsolidation and LoCoMo retrieval benchmarks (memq_bench.retrieval_cmds).
from memq_bench.retrieval_cmds import conflict as _conflict  # noqa: E402
from memq_bench.retrieval_cmds import longmemeval as _longmemeval  # noqa: E402

bench_app.command(name="longmemeval")(_longmemeval)
bench_app.command(name="conflict")(_conflict)

from memq_bench.embedders import embedders_command as _embedders  # noqa: E402

bench_app.command(name="embedders")(_embedders)

from memq_bench.retrieval_cmds import locomo as _locomo  # noqa: E402

bench_app.command(name="locomo")(_locomo)

# `memq evolve` and `memq rl ...` (forwarded from memq.cli like bench and demo).
from memq_bench.evolve_cli import evolve_app  # noqa: E402, F401
from memq_bench.rl_cli import rl_app  # noqa: E402, F401


@demo_app.command()
def demo(
    dataset: Annotated[
        str,
        typer.Option(
            help="banking77: learning from reward on a poisoned-experience stream (default); "
            "locomo: one LoCoMo conversation into a store, then questions."
        ),
    ] = "banking77",
    data: Annotated[
        str | None,
        typer.Option(
            help="Dataset file (default: banking77/train.csv or locomo/locomo10.json under ../shared/data)."
        ),
    ] = None,
    noise: Annotated[
        float, typer.Option(min=0, max=0.99, help="banking77: share p of poisoned experiences.")
    ] = 0.3,
    seeds: Annotated[int, typer.Option(min=1, help="banking77: seeds per learner.")] = 1,
    max_steps: Annotated[
        int | None, typer.Option(min=20, help="banking77: cut the stream to a random subset of this size.")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="banking77: worker processes.")] = 2,
    out_dir: Annotated[
        Path, typer.Option(help="banking77: where the results JSON and the HTML report go.")
    ] = Path(".memq/demo"),
    cache: Annotated[
        Path, typer.Option(help="banking77: embedding cache (each text is embedded once).")
    ] = DEFAULT_CACHE,
    db: Annotated[Path, typer.Option(help="locomo: the demo store (replaced if present).")] = Path(
        "memq-demo.db"
    ),
    conversation: Annotated[int, typer.Option(help="locomo: which conversation (0-9).")] = 0,
) -> None:
    """Watch memq learn from reward on BANKING77 (a few minutes on 2 cores), or a LoCoMo walk-through."""
    from memq_bench import demo as demos

    if dataset == "locomo":
        _run_cli(lambda: demos.run_locomo_demo(db, data=data, conversation=conversation, console=console))
    elif dataset == "banking77":
        _run_cli(
            lambda: demos.run_ttl_demo(
                data=data,
                noise=noise,
                seeds=seeds,
                max_steps=max_steps,
                jobs=jobs,
                out_dir=out_dir,
                cache=cache,
                console=console,
            )
        )
    else:
        from memq.errors import InvalidInputError

        fail(InvalidInputError(f"--dataset must be banking77 or locomo, got {dataset!r}"))
