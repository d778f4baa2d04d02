"""What the benchmark commands share: their common options, parsing of comma-separated lists, the
cached embedder, the recorded command line and the one way a command fails (a red line, exit 2).

Imports only typer and rich: ``memq bench --help`` stays cheap; what a helper needs is imported when
it runs.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

    from memq.embed import CachedEmbedder

console = Console()
DEFAULT_CACHE = Path(".memq/cache/embeddings.sqlite")

CacheOpt = Annotated[
    Path, typer.Option(help="Embedding cache file (each text is embedded once across systems and runs).")
]
EmbedderOpt = Annotated[
    str, typer.Option(help="Embedder spec: minilm (default), hashing[:DIM], openai:MODEL:DIM.")
]
SeedsOpt = Annotated[int, typer.Option(min=1, help="online: seeds of citation noise.")]
OutOpt = Annotated[Path, typer.Option(help="Where to write the results JSON.")]
PROMOTIONS = ("guarded", "always")


def usage_error(message: str) -> NoReturn:
    """A bad option value: ``error: <message>`` and exit 2."""
    console.print(f"[red]error[/]: {message}")
    raise typer.Exit(2)


def fail(exc: Exception) -> NoReturn:
    """A failed run: ``error (<code>): <message>`` (memq's error code, else the exception type) and exit 2."""
    console.print(f"[red]error[/] ({getattr(exc, 'code', type(exc).__name__)}): {exc}")
    raise typer.Exit(2) from None


def split(text: str) -> list[str]:
    """The stripped, non-empty items of a comma-separated option."""
    return [x.strip() for x in text.split(",") if x.strip()]


def positive_ints(text: str, option: str) -> list[int]:
    """Sorted distinct positive integers from ``5,10``; a usage error otherwise."""
    try:
        values = sorted({int(x) for x in split(text)})
    except ValueError:
        values = []
    if not values or values[0] < 1:
        usage_error(f"{option} takes positive integers like 5,10, got {text!r}")
    return values


def choices(text: str, allowed: Sequence[str], option: str) -> list[str]:
    """The items of ``text``, each one of ``allowed`` (at least one); a usage error otherwise."""
    chosen = split(text)
    if not chosen or any(x not in allowed for x in chosen):
        if len(allowed) == 2:
            listed = f"{allowed[0]}, {allowed[1]} or both"
        else:
            listed = f"one or more of {', '.join(allowed)}"
        usage_error(f"{option} takes {listed}, got {text!r}")
    return chosen


def system_names(text: str) -> list[str]:
    """Benchmark systems (memq presets and peers) from ``--systems``; a usage error names the choices."""
    from memq_bench.systems import system_names as known

    names = split(text)
    bad = [n for n in names if n not in known()]
    if not names or bad:
        usage_error(f"unknown system(s) {bad or text!r}; choose from {', '.join(known())}")
    return names


def cached_embedder(spec: str, cache: Path, *, max_entries: int = 0) -> CachedEmbedder:
    """The embedder ``spec`` behind a SQLite cache at ``cache`` (``max_entries``: its in-memory LRU, 0 for none)."""
    from memq.embed import CachedEmbedder, embedder_from_spec

    return CachedEmbedder(embedder_from_spec(spec), max_entries=max_entries, path=cache)


def progress(*, transient: bool = False) -> Progress:
    """The benchmark commands' progress bar: description, bar, done/total, elapsed time."""
    from memq_bench.tables import bench_progress

    return bench_progress(console, transient=transient, eta=False)


def command_line() -> str:
    """The command as typed (``memq bench ...``), recorded in every results file."""
    return "memq " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_args(systems: list[str], ks: list[int], **more: Any) -> dict[str, Any]:
    """The ``args`` a retrieval benchmark records in its results file: the command as typed, the
    systems and the cut-offs, then ``more`` in the order given."""
    return {"command": command_line(), "systems": systems, "k": ks, **more}
