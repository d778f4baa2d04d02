"""The ``memq bench locomo`` command (registered in ``memq_bench.cli``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from memq.errors import MemqError
from memq_bench.locomo import CATEGORIES
from memq_bench.results import ResultsFile, write_results

console = Console()
DEFAULT_CACHE = Path(".memq/cache/embeddings.sqlite")
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


def _table(results: ResultsFile, title: str, columns: dict[str, str]) -> Table:
    """Rows = (system, variant); ``columns`` maps metric keys to short headers."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("system", no_wrap=True)
    table.add_column("variant", no_wrap=True)
    for header in columns.values():
        table.add_column(header, justify="right", no_wrap=True, min_width=5)
    for r in results.results:
        cells = []
        for key in columns:
            v = r.metrics.get(key)
            cells.append("" if v is None else (f"{v:.1f}" if "_ms_" in key else f"{v:.3f}"))
        table.add_row(r.system, r.variant, *cells)
    return table


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
    seeds: Annotated[int, typer.Option(min=1, help="online: seeds of citation noise.")] = 3,
    promotion: Annotated[
        str,
        typer.Option(
            help="online/within: guarded (memq's default: the learner ranks once shown better), always "
            "(it ranks from its first fit), or both, comma-separated."
        ),
    ] = "guarded,always",
    out: Annotated[Path, typer.Option(help="Where to write the results JSON.")] = Path("results-locomo.json"),
    cache: Annotated[
        Path, typer.Option(help="Embedding cache file (each text is embedded once across systems and runs).")
    ] = DEFAULT_CACHE,
    embedder: Annotated[
        str, typer.Option(help="Embedder spec: minilm (default), hashing[:DIM], openai:MODEL:DIM.")
    ] = "minilm",
) -> None:
    """LoCoMo turn-level evidence recall@k and NDCG@10 per category, systems side by side."""
    from memq.embed import CachedEmbedder, embedder_from_spec
    from memq_bench.data import dataset_file
    from memq_bench.locomo import LOCOMO_FILE
    from memq_bench.locomo_bench import AUDIT_FILE, run_locomo
    from memq_bench.systems import system_names

    names = [x.strip() for x in systems.split(",") if x.strip()]
    bad = [n for n in names if n not in system_names()]
    if not names or bad:
        console.print(
            f"[red]error[/]: unknown system(s) {bad or systems!r}; choose from {', '.join(system_names())}"
        )
        raise typer.Exit(2)
    try:
        ks = sorted({int(x) for x in k.split(",") if x.strip()})
    except ValueError:
        ks = []
    if not ks or ks[0] < 1:
        console.print(f"[red]error[/]: --k takes positive integers like 5,10, got {k!r}")
        raise typer.Exit(2)
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    modes = tuple(m.strip() for m in promotion.split(",") if m.strip())
    if not modes or any(m not in ("guarded", "always") for m in modes):
        console.print(f"[red]error[/]: --promotion takes guarded, always or both, got {promotion!r}")
        raise typer.Exit(2)
    try:
        data_path = dataset_file(LOCOMO_FILE, data)
        audit_path = audit if audit is not None else data_path.parent / Path(AUDIT_FILE).name
        if "audit" in chosen and not audit_path.exists():
            console.print(f"[yellow]no audit file at {audit_path}: skipping the audit variant[/]")
            chosen = [v for v in chosen if v != "audit"]
        emb = CachedEmbedder(embedder_from_spec(embedder), max_entries=0, path=cache)
        args = {
            "command": "memq " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "systems": names,
            "k": ks,
            "conversations": conversations,
            "variants": chosen,
            "embedder": emb.model_id,
        }
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar:
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
        console.print(f"[red]error[/] ({exc.code}): {exc}")
        raise typer.Exit(2) from None
    write_results(out, results)
    n = len(results.extra["conversations"])
    console.print(
        _table(
            results, f"LoCoMo turn-level evidence recall, categories 1-4 ({n} conversations)", OVERALL_COLUMNS
        )
    )
    console.print(
        _table(
            results, f"recall@5 by category ({CATEGORY_LEGEND}; 5 is not in the overall)", CATEGORY_COLUMNS
        )
    )
    console.print(f"results: {out}")
