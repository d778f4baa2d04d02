"""The ``memq bench longmemeval`` and ``memq bench conflict`` commands (registered in ``memq_bench.cli``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memq.errors import MemqError
from memq_bench.results import ResultsFile, write_results

console = Console()
DEFAULT_CACHE = Path(".memq/cache/embeddings.sqlite")
DEFAULT_SYSTEMS = "memq,memq-dense,memq-lexical,chroma,mem0"

SystemsOpt = Annotated[
    str,
    typer.Option("--systems", help="Comma-separated: memq presets (memq, memq-dense, ...), mem0, chroma."),
]
CacheOpt = Annotated[
    Path, typer.Option(help="Embedding cache file (each text is embedded once across systems).")
]
EmbedderOpt = Annotated[
    str, typer.Option(help="Embedder spec: minilm (default), hashing[:DIM], openai:MODEL:DIM.")
]


def _ints(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        values = []
    if not values or min(values) < 1:
        console.print(f"[red]error[/]: {what} takes positive integers like 5,10, got {text!r}")
        raise typer.Exit(2)
    return values


def _names(text: str) -> list[str]:
    from memq_bench.systems import system_names

    names = [x.strip() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in system_names()]
    if not names or bad:
        console.print(
            f"[red]error[/]: unknown system(s) {bad or text!r}; choose from {', '.join(system_names())}"
        )
        raise typer.Exit(2)
    return names


def _embedder(spec: str, cache: Path):
    from memq.embed import CachedEmbedder, embedder_from_spec

    return CachedEmbedder(embedder_from_spec(spec), max_entries=0, path=cache)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def _command() -> str:
    return "memq " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _table(results: ResultsFile, title: str, columns: list[str], online: bool | None = None) -> Table:
    """``online``: only the online rows (True), only the others (False), or every row (None)."""
    table = Table(title=title)
    table.add_column("system")
    table.add_column("variant")
    for c in columns:
        table.add_column(c, justify="right")
    for r in results.results:
        if online is not None and r.variant.startswith("online") != online:
            continue
        cells = []
        for c in columns:
            v = r.metrics.get(c)
            cells.append(
                "" if v is None else (f"{v:.1f}" if "_ms_" in c or c.endswith("_per_s") else f"{v:.3f}")
            )
        table.add_row(r.system, r.variant.removeprefix("supersession-"), *cells)
    return table


def longmemeval(
    systems: SystemsOpt = DEFAULT_SYSTEMS,
    data: Annotated[
        Path | None,
        typer.Option(
            help="LongMemEval S file (default: ../shared/data/longmemeval/longmemeval_s_cleaned_sample60.json)."
        ),
    ] = None,
    oracle: Annotated[
        Path | None,
        typer.Option(
            help="Oracle split for ingestion throughput (default: ../shared/data/longmemeval/longmemeval_oracle.json)."
        ),
    ] = None,
    oracle_limit: Annotated[
        int | None,
        typer.Option(min=0, help="Oracle questions to ingest (0 skips the throughput run; default all 500)."),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "5,10",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Only the first N questions of the S file (quick runs).")
    ] = None,
    roles: Annotated[
        str, typer.Option(help="Turns to index: user (official turn-level corpus) or all.")
    ] = "user",
    search_k: Annotated[
        int, typer.Option(min=1, help="Turns retrieved per question (sessions are ranked from them).")
    ] = 50,
    variants: Annotated[
        str,
        typer.Option(
            help="default (every system, one space per question), online (learner presets such as "
            "memq-memq: a citing agent's feedback on the questions at even positions, evaluated frozen "
            "on the odd ones, against the recipe alone), or both, comma-separated."
        ),
    ] = "default",
    seeds: Annotated[int, typer.Option(min=1, help="online: seeds of citation noise.")] = 3,
    promotion: Annotated[
        str,
        typer.Option(
            help="online: guarded (memq's default: the learner ranks once shown better), always "
            "(it ranks from its first fit), or both, comma-separated."
        ),
    ] = "guarded,always",
    fit_every: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="online: feedbacks between the learner's refits and promotion tests (default: the "
            "learner's own; memq's refits every 50, more than the 30 training questions give).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the results JSON.")] = Path(
        "results-longmemeval.json"
    ),
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """LongMemEval retrieval on the S sample: session recall_all/ndcg_any@k, turn recall_any@k, latency, ingest rate."""
    from memq_bench.data import dataset_file
    from memq_bench.lme_online import run_online_benchmark
    from memq_bench.longmemeval import ORACLE_FILE, S_FILE, load_longmemeval, run_benchmark

    names = _names(systems)
    ks = _ints(k, "--k")
    if roles not in ("user", "all"):
        console.print(f"[red]error[/]: --roles is user or all, got {roles!r}")
        raise typer.Exit(2)
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    modes = [m.strip() for m in promotion.split(",") if m.strip()]
    if not chosen or any(v not in ("default", "online") for v in chosen):
        console.print(f"[red]error[/]: --variants takes default, online or both, got {variants!r}")
        raise typer.Exit(2)
    if not modes or any(m not in ("guarded", "always") for m in modes):
        console.print(f"[red]error[/]: --promotion takes guarded, always or both, got {promotion!r}")
        raise typer.Exit(2)
    try:
        questions = load_longmemeval(dataset_file(S_FILE, data), limit)
        oracle_qs = None
        if oracle_limit != 0 and "default" in chosen:
            oracle_qs = load_longmemeval(dataset_file(ORACLE_FILE, oracle), oracle_limit)
        emb = _embedder(embedder, cache)
        args = {
            "command": _command(),
            "systems": names,
            "k": ks,
            "limit": limit,
            "questions": len(questions),
            "oracle_questions": len(oracle_qs or []),
            "roles": roles,
            "search_k": search_k,
            "embedder": emb.model_id,
            "variants": chosen,
        }
        if "online" in chosen:
            args |= {"seeds": seeds, "promotion": modes, "fit_every": fit_every}
        with _progress() as bar:
            results = None
            if "default" in chosen:
                results = run_benchmark(
                    questions,
                    oracle_qs,
                    names,
                    emb,
                    ks=ks,
                    roles=roles,
                    search_k=search_k,
                    args=args,
                    progress=bar,
                    checkpoint=lambda rf: write_results(out, rf),
                )
            if "online" in chosen:
                results = run_online_benchmark(
                    questions,
                    names,
                    emb,
                    ks=ks,
                    roles=roles,
                    search_k=search_k,
                    seeds=range(seeds),
                    promotions=modes,
                    fit_every=fit_every,
                    results=results,
                    args=args,
                    progress=bar,
                    checkpoint=lambda rf: write_results(out, rf),
                )
    except MemqError as exc:
        console.print(f"[red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(2) from None
    assert results is not None  # at least one variant ran
    write_results(out, results)
    title = f"LongMemEval (LME-S60, {len(questions)} questions, turns: {roles})"
    if "default" in chosen:
        cols = [f"session_recall_all@{x}" for x in ks] + [f"session_ndcg_any@{x}" for x in ks]
        cols += [f"turn_recall_any@{x}" for x in ks] + ["add_ms_p50", "search_ms_p50", "ingest_turns_per_s"]
        console.print(_table(results, title, cols, online=False))
    if "online" in chosen:
        cols = [f"session_recall_all@{x}" for x in ks] + [f"turn_recall_any@{x}" for x in ks]
        cols += [
            f"session_recall_all@{ks[0]}/gain",
            f"turn_recall_any@{ks[0]}/gain",
            "trained",
            "promoted",
            "served_share",
        ]
        console.print(
            _table(results, f"{title}, online: train on even, evaluate on odd positions", cols, online=True)
        )
    console.print(f"results: {out}")


def conflict(
    systems: SystemsOpt = DEFAULT_SYSTEMS,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Conflict_Resolution.json (default: ../shared/data/memoryagentbench/Conflict_Resolution.json)."
        ),
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "1,5,10",
    lengths: Annotated[
        str, typer.Option(help="Context lengths to run, comma-separated.")
    ] = "6k,32k,64k,262k",
    variants: Annotated[
        str,
        typer.Option(
            help="Variants: off, on (LLM-free supersession), reconcile (the LLM manager; needs --llm); "
            "on and reconcile: memq presets only."
        ),
    ] = "off,on,reconcile",
    chunk: Annotated[int, typer.Option(min=1, help="Facts per add call (reconcile: always 1).")] = 100,
    llm: Annotated[
        str | None,
        typer.Option(
            envvar="MEMQ_LLM",
            help="LLM for the reconcile variant: local (embedded Gemma 3 270M), openai:MODEL or "
            "openai:MODEL@BASE_URL. Without it the reconcile variant is skipped (noted in the results).",
        ),
    ] = None,
    max_facts: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Write only the first N facts of each context (every variant; bounds LLM cost). "
            "All questions are still asked.",
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the results JSON.")] = Path(
        "results-conflict.json"
    ),
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """MemoryAgentBench FactConsolidation: is a gold answer in the top-k facts, supersession off and on."""
    from memq_bench.conflict import CONFLICT_FILE, LENGTHS, VARIANTS, load_conflict, run_benchmark
    from memq_bench.data import dataset_file

    names = _names(systems)
    ks = _ints(k, "--k")
    wanted = [x.strip() for x in lengths.split(",") if x.strip()]
    chosen = [x.strip() for x in variants.split(",") if x.strip()]
    if (
        not wanted
        or any(x not in LENGTHS for x in wanted)
        or not chosen
        or any(v not in VARIANTS for v in chosen)
    ):
        console.print(
            f"[red]error[/]: --lengths among {', '.join(LENGTHS)}; --variants among {', '.join(VARIANTS)}"
        )
        raise typer.Exit(2)
    model = None
    try:
        rows = load_conflict(dataset_file(CONFLICT_FILE, data))
        emb = _embedder(embedder, cache)
        if llm and "reconcile" in chosen:
            from memq.llm.spec import llm_from_spec

            model = llm_from_spec(llm)
        args = {
            "command": _command(),
            "systems": names,
            "k": ks,
            "lengths": wanted,
            "variants": chosen,
            "chunk": chunk,
            "max_facts": max_facts,
            "llm": None if model is None else model.model_id,
            "embedder": emb.model_id,
        }
        with _progress() as bar:
            results = run_benchmark(
                rows,
                names,
                emb,
                ks=ks,
                lengths=wanted,
                variants=chosen,
                chunk=chunk,
                llm=model,
                max_facts=max_facts,
                args=args,
                progress=bar,
                checkpoint=lambda rf: write_results(out, rf),
            )
    except MemqError as exc:
        console.print(f"[red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(2) from None
    finally:
        close = getattr(model, "close", None)
        if callable(close):
            close()
    write_results(out, results)
    cols = [f"em@{x}/{n}" for x in ks[:2] for n in wanted] + [f"em@{x}" for x in ks]
    cols += ["add_ms_p50", "search_ms_p50"]
    if model is not None:
        cols += ["llm_calls", "llm_errors"]
    console.print(_table(results, "FactConsolidation (MemoryAgentBench): gold answer in top-k facts", cols))
    for note in results.extra.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"results: {out}")
