"""The retrieval benchmark commands ``memq bench locomo``, ``longmemeval`` and ``conflict`` (registered in
``memq_bench.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memq.errors import MemqError
from memq_bench.cli_common import (
    DEFAULT_CACHE,
    PROMOTIONS,
    CacheOpt,
    EmbedderOpt,
    OutOpt,
    SeedsOpt,
    cached_embedder,
    choices,
    console,
    fail,
    positive_ints,
    progress,
    run_args,
    split,
    system_names,
    usage_error,
)
from memq_bench.locomo import CATEGORIES
from memq_bench.results import RunHooks, write_results
from memq_bench.tables import variant_table

LOCOMO_SYSTEMS = "memq,memq-dense,memq-lexical,memq-memrl,memq-memq,chroma,mem0"
OVERALL_COLUMNS = {
    "recall@1": "R@1",
    "recall@5": "R@5",
    "recall@10": "R@10",
    "recall@50": "R@50",
    "ndcg@10": "nDCG@10",
    "search_ms_p50": "search ms",
}
CATEGORY_COLUMNS = {f"recall@5/cat{c}": f"cat{c}" for c in sorted(CATEGORIES)}
CATEGORY_LEGEND = ", ".join(f"{c} {name}" for c, name in sorted(CATEGORIES.items()))


def locomo(
    systems: Annotated[
        str,
        typer.Option(
            "--systems",
            help="Comma-separated: memq presets (memq, memq-dense, memq-lexical, memq-hybrid, memq-memrl, "
            "memq-memq, ...), mem0, chroma.",
        ),
    ] = LOCOMO_SYSTEMS,
    data: Annotated[
        Path | None, typer.Option(help="locomo10.json (default: ../shared/data/locomo/locomo10.json).")
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            help="Audit file for the 'audit' variant (default: next to the data, locomo10_audit_errors.json)."
        ),
    ] = None,
    conversations: Annotated[
        str | None, typer.Option(help="Conversation numbers (1-10), e.g. 1-3,7 (default: all).")
    ] = None,
    k: Annotated[str, typer.Option("--k", help="Recall cut-offs, comma-separated.")] = "1,5,10,25,50",
    variants: Annotated[
        str,
        typer.Option(
            help="default (official evidence), audit (corrected evidence), online (learner presets: a "
            "citing agent's feedback on conversations 1-5, evaluated frozen on 6-10), within (feedback "
            "while answering each conversation: recall on its later questions)."
        ),
    ] = "default,audit,online",
    seeds: SeedsOpt = 3,
    promotion: Annotated[
        str,
        typer.Option(
            help="online/within: guarded (memq's default: the learner ranks once shown better), always "
            "(it ranks from its first fit), or both, comma-separated."
        ),
    ] = "guarded,always",
    out: OutOpt = Path("results-locomo.json"),
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """LoCoMo turn-level evidence recall@k and NDCG@10 per category, systems side by side."""
    from memq_bench.data import dataset_file
    from memq_bench.locomo import LOCOMO_FILE
    from memq_bench.locomo_bench import AUDIT_FILE, run_locomo

    names = system_names(systems)
    ks = positive_ints(k, "--k")
    chosen = split(variants)
    modes = tuple(choices(promotion, PROMOTIONS, "--promotion"))
    try:
        data_path = dataset_file(LOCOMO_FILE, data)
        audit_path = audit if audit is not None else data_path.parent / Path(AUDIT_FILE).name
        if "audit" in chosen and not audit_path.exists():
            console.print(f"[yellow]no audit file at {audit_path}: skipping the audit variant[/]")
            chosen = [v for v in chosen if v != "audit"]
        emb = cached_embedder(embedder, cache)
        args = run_args(names, ks, conversations=conversations, variants=chosen, embedder=emb.model_id)
        with progress() as bar:
            results = run_locomo(
                names,
                emb,
                data_path,
                audit_path=audit_path,
                conversations=conversations,
                ks=ks,
                variants=chosen,
                seeds=tuple(range(seeds)),
                promotions=modes,
                progress=bar,
                args=args,
            )
    except MemqError as exc:
        fail(exc)
    write_results(out, results)
    n = len(results.extra["conversations"])
    overall = f"LoCoMo turn-level evidence recall, categories 1-4 ({n} conversations)"
    console.print(variant_table(results, overall, OVERALL_COLUMNS, compact=True))
    by_category = f"recall@5 by category ({CATEGORY_LEGEND}; 5 is not in the overall)"
    console.print(variant_table(results, by_category, CATEGORY_COLUMNS, compact=True))
    console.print(f"results: {out}")


DEFAULT_SYSTEMS = "memq,memq-dense,memq-lexical,chroma,mem0"

SystemsOpt = Annotated[
    str,
    typer.Option("--systems", help="Comma-separated: memq presets (memq, memq-dense, ...), mem0, chroma."),
]
KOpt = Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")]


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
    k: KOpt = "5,10",
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
    seeds: SeedsOpt = 3,
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
    out: OutOpt = Path("results-longmemeval.json"),
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """LongMemEval retrieval on the S sample: session recall_all/ndcg_any@k, turn recall_any@k, latency, ingest rate."""
    from memq_bench.data import dataset_file
    from memq_bench.lme_online import run_online_benchmark
    from memq_bench.longmemeval import ORACLE_FILE, S_FILE, load_longmemeval, run_benchmark

    names = system_names(systems)
    ks = positive_ints(k, "--k")
    if roles not in ("user", "all"):
        usage_error(f"--roles is user or all, got {roles!r}")
    chosen = choices(variants, ("default", "online"), "--variants")
    modes = choices(promotion, PROMOTIONS, "--promotion")
    try:
        questions = load_longmemeval(dataset_file(S_FILE, data), limit)
        oracle_qs = None
        if oracle_limit != 0 and "default" in chosen:
            oracle_qs = load_longmemeval(dataset_file(ORACLE_FILE, oracle), oracle_limit)
        emb = cached_embedder(embedder, cache)
        args = run_args(
            names,
            ks,
            limit=limit,
            questions=len(questions),
            oracle_questions=len(oracle_qs or []),
            roles=roles,
            search_k=search_k,
            embedder=emb.model_id,
            variants=chosen,
        )
        if "online" in chosen:
            args |= {"seeds": seeds, "promotion": modes, "fit_every": fit_every}
        with progress() as bar:
            hooks = RunHooks(args, bar, lambda rf: write_results(out, rf))
            common: dict[str, Any] = {"ks": ks, "roles": roles, "search_k": search_k, "hooks": hooks}
            results = None
            if "default" in chosen:
                results = run_benchmark(questions, oracle_qs, names, emb, **common)
            if "online" in chosen:
                results = run_online_benchmark(
                    questions,
                    names,
                    emb,
                    seeds=range(seeds),
                    promotions=modes,
                    fit_every=fit_every,
                    results=results,
                    **common,
                )
    except MemqError as exc:
        fail(exc)
    assert results is not None  # at least one variant ran
    write_results(out, results)
    title = f"LongMemEval (LME-S60, {len(questions)} questions, turns: {roles})"
    if "default" in chosen:
        cols = [f"session_recall_all@{x}" for x in ks] + [f"session_ndcg_any@{x}" for x in ks]
        cols += [f"turn_recall_any@{x}" for x in ks] + ["add_ms_p50", "search_ms_p50", "ingest_turns_per_s"]
        console.print(variant_table(results, title, cols, online=False))
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
            variant_table(
                results, f"{title}, online: train on even, evaluate on odd positions", cols, online=True
            )
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
    k: KOpt = "1,5,10",
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
    out: OutOpt = Path("results-conflict.json"),
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """MemoryAgentBench FactConsolidation: is a gold answer in the top-k facts, supersession off and on."""
    from memq_bench.conflict import CONFLICT_FILE, LENGTHS, VARIANTS, load_conflict, run_benchmark
    from memq_bench.data import dataset_file

    names = system_names(systems)
    ks = positive_ints(k, "--k")
    wanted = choices(lengths, LENGTHS, "--lengths")
    chosen = choices(variants, VARIANTS, "--variants")
    model = None
    try:
        rows = load_conflict(dataset_file(CONFLICT_FILE, data))
        emb = cached_embedder(embedder, cache)
        if llm and "reconcile" in chosen:
            from memq.llm.spec import llm_from_spec

            model = llm_from_spec(llm)
        args = run_args(
            names,
            ks,
            lengths=wanted,
            variants=chosen,
            chunk=chunk,
            max_facts=max_facts,
            llm=None if model is None else model.model_id,
            embedder=emb.model_id,
        )
        with progress() as bar:
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
                hooks=RunHooks(args, bar, lambda rf: write_results(out, rf)),
            )
    except MemqError as exc:
        fail(exc)
    finally:
        close = getattr(model, "close", None)
        if callable(close):
            close()
    write_results(out, results)
    cols = [f"em@{x}/{n}" for x in ks[:2] for n in wanted] + [f"em@{x}" for x in ks]
    cols += ["add_ms_p50", "search_ms_p50"]
    if model is not None:
        cols += ["llm_calls", "llm_errors"]
    title = "FactConsolidation (MemoryAgentBench): gold answer in top-k facts"
    console.print(variant_table(results, title, cols))
    for note in results.extra.get("notes", []):
        console.print(f"note: {note}")
    console.print(f"results: {out}")
