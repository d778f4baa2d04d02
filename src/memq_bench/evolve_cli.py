"""``memq evolve``: search memq's configuration space on a benchmark split into search / held-out halves.

Forwarded lazily from ``memq evolve`` (memq.cli); method in :mod:`memq_bench.evolve`, docs in docs/rl.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from memq.errors import MemqError
from memq_bench.cli_common import DEFAULT_CACHE, cached_embedder, command_line, console, fail, progress, split

evolve_app = typer.Typer(help="Search memq's design space (Optuna TPE) on a benchmark; writes a config.")
BENCHES = ("locomo",)


def _range(text: str, total: int) -> tuple[int, ...]:
    from memq_bench.locomo_bench import parse_conversations

    return parse_conversations(text, total)


def _design_cells(row: dict[str, Any]) -> list[str]:
    s, w = row["search"], row["write"]
    extras = []
    if "recency_half_life_days" in s:
        extras.append(f"recency {s['recency_half_life_days']:.0f}d×{s['recency_weight']:.2f}")
    if "mmr_lambda" in s:
        extras.append(f"mmr {s['mmr_lambda']:.2f}")
    manager = w["manager"] + (f" {w['threshold']:.2f}" if "threshold" in w else "")
    return [
        s.get("fusion", "weighted"),
        f"{s['weights']['dense']:.2f}" if "weights" in s else "0.40",
        f"{s.get('link_weight', 0.5):.2f}",
        str(s.get("candidates", "auto")),
        ", ".join(extras) or "-",
        f"{w['embedder']} / {manager}",
    ]


@evolve_app.command()
def evolve(
    bench: Annotated[str, typer.Option(help=f"Benchmark to search on: {', '.join(BENCHES)}.")] = "locomo",
    trials: Annotated[
        int | None, typer.Option(min=1, help="Configurations to try (default 40; 6 with --quick).")
    ] = None,
    quick: Annotated[
        bool, typer.Option(help="A smoke run: conversation 1 to search, 6 held out, 6 trials.")
    ] = False,
    search: Annotated[str | None, typer.Option(help="Search-half conversations (default 1-5).")] = None,
    held_out: Annotated[str | None, typer.Option(help="Held-out conversations (default 6-10).")] = None,
    embedders: Annotated[
        str, typer.Option(help="Embedders in the space, comma-separated (minilm, e5-small, mpnet, ...).")
    ] = "minilm",
    managers: Annotated[
        str,
        typer.Option(
            help="Write managers in the space: append, dedupe, learned (needs --policy), reconcile (needs --llm)."
        ),
    ] = "append,dedupe",
    policy: Annotated[Path | None, typer.Option(help="A policy file for the `learned` manager.")] = None,
    llm: Annotated[
        str | None, typer.Option(help="LLM spec for the reconcile manager (local, openai:MODEL@URL).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the TPE sampler.")] = 0,
    out: Annotated[
        Path, typer.Option(help="Results JSON (Pareto front, every trial, held-out rows).")
    ] = Path("evolve.json"),
    config_out: Annotated[
        Path, typer.Option("--config-out", help="The chosen configuration (MemoryConfig JSON).")
    ] = Path("memq-config.json"),
    data: Annotated[Path | None, typer.Option(help="locomo10.json (default ../shared/data/locomo/).")] = None,
    cache: Annotated[Path, typer.Option(help="Embedding cache file.")] = DEFAULT_CACHE,
) -> None:
    """Search retrieval and write settings for the best recall@5 / latency trade-off; report it on held-out data."""
    from memq.config import MemoryConfig
    from memq.errors import InvalidInputError
    from memq_bench.evolve import run_evolve, to_results, write_config
    from memq_bench.results import write_results

    try:
        if bench not in BENCHES:
            raise InvalidInputError(f"--bench must be one of {', '.join(BENCHES)}, got {bench!r}")
        convs, embedder_for = _setup(data, cache)
        search_idx = _range(search or ("1" if quick else "1-5"), len(convs))
        held_idx = _range(held_out or ("6" if quick else "6-10"), len(convs))
        n_trials = trials or (6 if quick else 40)
        names = split(managers)
        unknown = [m for m in names if m not in ("append", "dedupe", "learned", "reconcile")]
        if unknown or not names:
            raise InvalidInputError(
                f"unknown manager(s) {unknown}; choose from append, dedupe, learned, reconcile"
            )
        if "learned" in names:
            if policy is None:
                raise InvalidInputError("the learned manager needs --policy PATH")
            from memq.rl.policy import load_policy

            load_policy(policy)
            names = [f"learned:{policy}" if m == "learned" else m for m in names]
        the_llm = None
        if llm:
            from memq.llm.spec import llm_from_spec

            the_llm = llm_from_spec(llm)
        with progress() as bar:
            result = run_evolve(
                convs,
                embedder_for,
                trials=n_trials,
                search_half=search_idx,
                held_out=held_idx,
                embedders=split(embedders),
                managers=names,
                llm=the_llm,
                seed=seed,
                progress=bar,
            )
        write_config(result.chosen, config_out)
        result.config = MemoryConfig.load(config_out).model_dump(mode="json", exclude_defaults=True)
    except (MemqError, OSError, ValueError) as exc:
        fail(exc)
    args = {
        "command": command_line(),  # argv[1] is "evolve"
        "bench": bench,
        "trials": n_trials,
        "search_conversations": [i + 1 for i in search_idx],
        "held_out_conversations": [i + 1 for i in held_idx],
        "seed": seed,
    }
    rf = to_results(result, args)
    write_results(out, rf)
    _print(result)
    console.print(f"config: {config_out}   results: {out}   ({result.seconds:.0f}s)")


def _setup(data: Path | None, cache: Path):
    from memq_bench.data import dataset_file
    from memq_bench.locomo import LOCOMO_FILE, load_locomo

    path = data or dataset_file(LOCOMO_FILE)
    try:
        convs = load_locomo(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read LoCoMo data from {path}: {exc}") from exc
    made: dict[str, Any] = {}

    def embedder_for(spec: str):
        if spec not in made:
            made[spec] = cached_embedder(spec, cache, max_entries=200_000)
        return made[spec]

    return convs, embedder_for


def _print(result) -> None:
    table = Table(
        title=f"Pareto front on the search half ({len(result.front)} of {len(result.trials)} trials)"
    )
    for col in (
        "trial",
        *result.objectives,
        "fusion",
        "w dense",
        "link",
        "pool",
        "recency / mmr",
        "embedder / manager",
    ):
        table.add_column(col)
    for row in sorted(result.front, key=lambda r: -r["metrics"]["recall@5"]):
        m = row["metrics"]
        objs = [f"{m[o]:.3f}" if o == "recall@5" else f"{m[o]:.1f}" for o in result.objectives]
        table.add_row(str(row["trial"]), *objs, *_design_cells(row))
    console.print(table)
    held = Table(title="Held-out half (never seen by the search)")
    for col in ("configuration", "recall@5", "recall@10", "search ms p50"):
        held.add_column(col)
    for name, m in (("today's default", result.default_held_out), ("evolved", result.chosen_held_out)):
        held.add_row(name, f"{m['recall@5']:.3f}", f"{m['recall@10']:.3f}", f"{m['search_ms_p50']:.1f}")
    console.print(held)
