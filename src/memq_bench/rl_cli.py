"""``memq rl ...``: train a write policy by RL, evaluate it on held-out contexts, export rollouts for TRL.

Forwarded lazily from ``memq rl`` (memq.cli); docs/rl.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from memq.errors import MemqError
from memq_bench.cli_common import (
    DEFAULT_CACHE,
    EmbedderOpt,
    cached_embedder,
    command_line,
    console,
    fail,
    progress,
    split,
)

rl_app = typer.Typer(
    help="Write policies trained by reinforcement learning (FactConsolidation): train, eval, export.",
    no_args_is_help=True,
)
CONFLICT_FILE = "memoryagentbench/Conflict_Resolution.json"

DataOpt = Annotated[
    Path | None,
    typer.Option(help="Conflict_Resolution.json (default: ../shared/data/memoryagentbench/, or $MEMQ_DATA)."),
]
CacheOpt = Annotated[Path, typer.Option(help="Embedding cache (each text is embedded once).")]


def _setup(data: Path | None, cache: Path, embedder: str):
    from memq_bench.conflict import load_conflict
    from memq_bench.data import dataset_file

    rows = load_conflict(data or dataset_file(CONFLICT_FILE))
    return rows, cached_embedder(embedder, cache, max_entries=200_000)


def _lengths(text: str) -> list[str]:
    from memq.errors import InvalidInputError
    from memq_bench.conflict import LENGTHS

    out = split(text)
    if not out or any(x not in LENGTHS for x in out):
        raise InvalidInputError(f"lengths are among {', '.join(LENGTHS)}, got {text!r}")
    return out


def _held_out_table(results, title: str) -> None:
    table = Table(title=title)
    cols = [
        c
        for c in ("sh_64k", "mh_64k", "64k", "sh_262k", "mh_262k", "262k")
        if any(f"em@1/{c}" in r.metrics for r in results)
    ]
    for head in ("system", "variant", *[f"em@1/{c}" for c in cols]):
        table.add_column(head)
    for r in results:
        if r.variant == "training":
            continue
        table.add_row(r.system, r.variant, *[f"{r.metrics.get(f'em@1/{c}', float('nan')):.3f}" for c in cols])
    console.print(table)


@rl_app.command("train")
def train_cmd(
    seeds: Annotated[str, typer.Option(help="Comma-separated training seeds (one policy each).")] = "0,1,2",
    updates: Annotated[int, typer.Option(min=1, help="GRPO updates per seed.")] = 40,
    episodes: Annotated[
        int | None, typer.Option("--episodes-per-update", min=1, help="Groups per update, B (default 16).")
    ] = None,
    group: Annotated[
        int | None, typer.Option("--group-size", min=2, help="Samples per group, G (default 8).")
    ] = None,
    lr: Annotated[float | None, typer.Option(min=0, help="Adam step size (default 0.03).")] = None,
    mode: Annotated[
        str, typer.Option(help="decision: a group is G actions at one step; episode: G whole episodes.")
    ] = "decision",
    beta: Annotated[float, typer.Option(min=0, help="KL penalty to the starting policy.")] = 0.0,
    model: Annotated[str, typer.Option(help="Policy: linear or mlp.")] = "linear",
    record_cost: Annotated[float, typer.Option(min=0, help="λ: cost per current record (per item).")] = 0.05,
    eval_lengths: Annotated[
        str, typer.Option(help="Held-out contexts evaluated after training ('' = none).")
    ] = "64k,262k",
    max_facts: Annotated[
        int | None, typer.Option(min=1, help="Held-out: first N facts per context only.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Results JSON (curves + held-out em@k).")] = Path("rl.json"),
    policy_dir: Annotated[Path, typer.Option(help="Where the policy files go.")] = Path("."),
    data: DataOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """Train write policies with GRPO on FactConsolidation 6k/32k, then evaluate on 64k/262k."""
    from memq.rl.grpo import GRPOConfig
    from memq_bench.results import write_results
    from memq_bench.rl_bench import EpisodeSpec, evaluate_held_out, to_results, train_seeds

    try:
        seed_list = [int(s) for s in split(seeds)]
        lengths = _lengths(eval_lengths) if eval_lengths.strip() else []
        if model not in ("linear", "mlp") or mode not in ("decision", "episode"):
            raise ValueError(f"--model is linear or mlp, --mode decision or episode; got {model!r}, {mode!r}")
        rows, emb = _setup(data, cache, embedder)
        given = {"episodes_per_update": episodes, "group_size": group, "lr": lr}
        config = GRPOConfig(
            updates=updates,
            mode=mode,
            beta=beta,
            model=model,
            **{k: v for k, v in given.items() if v is not None},
        )
        spec = EpisodeSpec(record_cost=record_cost)
        with progress() as bar:
            tasks = {s: bar.add_task(f"GRPO seed {s}", total=updates) for s in seed_list}

            def on_update(seed: int, point) -> None:
                bar.update(tasks[seed], completed=point.update)
                if point.eval_em is not None:
                    bar.console.print(
                        f"seed {seed} update {point.update}: validation em@1 {point.eval_em:.3f}, "
                        f"return {point.eval_return:.3f} ({point.seconds:.0f}s)"
                    )

            runs = train_seeds(
                rows, emb, seeds=seed_list, config=config, out_dir=policy_dir, spec=spec, on_update=on_update
            )
            held = []
            if lengths:
                policies = [(f"learned seed {r.seed}", r.policy_path) for r in runs]
                held = evaluate_held_out(
                    rows, emb, policies, lengths=lengths, max_facts=max_facts, progress=bar
                )
    except (MemqError, OSError, ValueError) as exc:
        fail(exc)
    rf = to_results(runs, held, args={"command": command_line()}, config=config, spec=spec)
    write_results(out, rf)
    for r in runs:
        f = r.final
        console.print(
            f"seed {r.seed}: {r.policy_path} ({r.seconds:.0f}s; validation em@1 {f['val_em_first']:.3f} → "
            f"{f['val_em_last']:.3f}; kept update {int(f['best_update'])}, em@1 {f['val_em_best']:.3f})"
        )
    if held:
        _held_out_table(rf.results, "held-out FactConsolidation, em@1")
    console.print(f"results: {out}")


@rl_app.command("eval")
def eval_cmd(
    policies: Annotated[list[Path], typer.Argument(help="Policy files written by `memq rl train`.")],
    lengths: Annotated[str, typer.Option(help="Contexts to evaluate (comma-separated).")] = "64k,262k",
    baselines: Annotated[bool, typer.Option(help="Also run append-only and rule-based supersession.")] = True,
    max_facts: Annotated[int | None, typer.Option(min=1, help="First N facts per context only.")] = None,
    out: Annotated[Path, typer.Option(help="Results JSON.")] = Path("rl-eval.json"),
    data: DataOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """FactConsolidation em@k of policies (and the baselines), the benchmark's own protocol."""
    from memq.rl.policy import load_policy
    from memq_bench.results import ResultsFile, write_results
    from memq_bench.rl_bench import evaluate_held_out, mean_row

    try:
        for p in policies:
            load_policy(p)  # a bad file fails before any work
        rows, emb = _setup(data, cache, embedder)
        named = [(p.stem, p) for p in policies]
        with progress() as bar:
            results = evaluate_held_out(
                rows,
                emb,
                named,
                lengths=_lengths(lengths),
                baselines=baselines,
                max_facts=max_facts,
                progress=bar,
            )
    except (MemqError, OSError, ValueError) as exc:
        fail(exc)
    avg = mean_row(results)
    rf = ResultsFile(
        benchmark="rl", args={"command": command_line()}, results=results + ([avg] if avg else [])
    )
    write_results(out, rf)
    _held_out_table(rf.results, "FactConsolidation, em@1")
    console.print(f"results: {out}")


@rl_app.command("export")
def export_cmd(
    policy: Annotated[Path, typer.Option(help="Reference policy (its greedy rollouts are exported).")],
    seeds: Annotated[str, typer.Option(help="Episode seeds: a range like 0-99 or a list 1,5,9.")] = "0-99",
    out: Annotated[
        Path, typer.Option(help="JSON lines for TRL (datasets.load_dataset('json', ...)).")
    ] = Path("rl-rollouts.jsonl"),
    data: DataOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    embedder: EmbedderOpt = "minilm",
) -> None:
    """Export episodes as prompt / completion / reward rows for TRL's GRPOTrainer (docs/rl.md)."""
    from memq.rl.env import MemoryOpsEnv
    from memq.rl.export import export_rows, write_jsonl
    from memq.rl.policy import load_policy
    from memq_bench.conflict import group_contexts
    from memq_bench.rl_fc import TRAIN_LENGTHS, SampledEpisodes

    try:
        if "-" in seeds:
            lo, hi = (int(x) for x in seeds.split("-", 1))
            seed_list = list(range(lo, hi + 1))
        else:
            seed_list = [int(s) for s in split(seeds)]
        pol = load_policy(policy)
        rows, emb = _setup(data, cache, embedder)
        env = MemoryOpsEnv(SampledEpisodes(group_contexts(rows, TRAIN_LENGTHS), emb), emb, k=pol.k)
        try:
            n = write_jsonl(export_rows(env, pol, seed_list), out)
        finally:
            env.close()
    except (MemqError, OSError, ValueError) as exc:
        fail(exc)
    console.print(f"{n} rows from {len(seed_list)} episodes: {out}")
