"""``memq bench all``: every benchmark of the catalog as its own process, then the page and the report.

Running each benchmark as ``python -m memq bench <name> ... --out DIR/<name>.json`` keeps this module
independent of the benchmarks' code and keeps a crash in one from taking the others down.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from memq.errors import InvalidInputError
from memq_bench.catalog import BENCHMARKS, BY_NAME, Benchmark

RESULTS_DIR = Path("benchmarks/results")
QUICK_DIR = Path(".memq/bench-quick")
DOC = Path("docs/results.md")


@dataclass
class Outcome:
    name: str
    status: str  # ok | failed | timeout | unavailable
    seconds: float
    out: Path


def _names(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


def plan(only: str | None, skip: str | None) -> list[Benchmark]:
    """The catalog benchmarks to run, in catalog order; unknown names are an error."""
    wanted, dropped = _names(only), _names(skip)
    unknown = [n for n in (*wanted, *dropped) if n not in BY_NAME]
    if unknown:
        raise InvalidInputError(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}"
        )
    return [b for b in BENCHMARKS if (not wanted or b.name in wanted) and b.name not in dropped]


def command_for(bench: Benchmark, out: Path, *, quick: bool) -> list[str]:
    args = list(bench.quick if quick else (*bench.args, *bench.doc_args))
    return [sys.executable, "-m", "memq", "bench", bench.name, *args, "--out", str(out)]


def run_all(
    benchmarks: Sequence[Benchmark],
    *,
    quick: bool = False,
    results_dir: Path | None = None,
    doc: Path | None = None,
    report: Path | None = None,
    run: bool = True,
    timeout: float | None = None,
    available: Sequence[str] | None = None,
    console: Console | None = None,
) -> bool:
    """Run ``benchmarks`` one after another, then regenerate the page and the HTML report.

    ``available``: the ``memq bench`` commands this install has (None: assume all). Returns False if
    any benchmark failed, timed out or is not available.
    """
    from memq.errors import MemqError
    from memq_bench.report import write_report
    from memq_bench.results_md import write_results_md
    from memq_bench.view import load_results

    console = console or Console()
    results_dir = results_dir or (QUICK_DIR if quick else RESULTS_DIR)
    doc = doc or (results_dir / "results.md" if quick else DOC)
    report = report or results_dir / "report.html"
    results_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    for i, bench in enumerate(benchmarks if run else []):
        out = results_dir / f"{bench.name}.json"
        if available is not None and bench.name not in available:
            console.print(f"[yellow]skip[/] {bench.name}: `memq bench {bench.name}` is not in this install")
            outcomes.append(Outcome(bench.name, "unavailable", 0.0, out))
            continue
        cmd = command_for(bench, out, quick=quick)
        shown = " ".join(["memq", *cmd[3:]])
        console.rule(f"[bold]{i + 1}/{len(benchmarks)} {bench.name}[/]: {shown}")
        started = time.perf_counter()
        try:
            rc = subprocess.run(cmd, timeout=timeout, check=False).returncode
            status = "ok" if rc == 0 else f"failed (exit {rc})"
        except subprocess.TimeoutExpired:
            status = f"timeout ({timeout:.0f} s)"
        outcomes.append(Outcome(bench.name, status, time.perf_counter() - started, out))
    files = []
    rank = {b.name: i for i, b in enumerate(BENCHMARKS)}  # catalog order first, then the rest by name
    for path in sorted(results_dir.glob("*.json"), key=lambda p: (rank.get(p.stem, len(rank)), p.name)):
        try:
            load_results(path)
        except MemqError:
            continue
        files.append(path)
    write_results_md(results_dir, doc)
    write_report(files, report)
    if outcomes:
        table = Table(title="memq bench all" + (" --quick" if quick else ""))
        for col in ("benchmark", "status", "seconds", "results"):
            table.add_column(col)
        for o in outcomes:
            colour = "green" if o.status == "ok" else "red"
            table.add_row(o.name, f"[{colour}]{o.status}[/]", f"{o.seconds:.0f}", str(o.out))
        console.print(table)
    console.print(f"page: {doc}\nreport: {report.resolve()}")
    return all(o.status == "ok" for o in outcomes)
