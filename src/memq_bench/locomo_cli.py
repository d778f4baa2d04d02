"""The ``memq bench locomo`` command (registered in ``memq_bench.cli``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
)
from memq_bench.locomo import CATEGORIES
from memq_bench.results import write_results
from memq_bench.tables import variant_table

DEFAULT_SYSTEMS = "memq,memq-dense,memq-lexical,memq-memrl,memq-memq,chroma,mem0"
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
    ] = DEFAULT_SYSTEMS,
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
