"""``memq search``, ``feedback``, ``prune-log``, ``replay``, ``evaluate`` and ``memq learn status``: the read
path and learning from reward."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from memq.cli.common import (
    KindsOpt,
    _parse_json,
    _parse_time,
    _print_json,
    _with_memory,
    app,
    console,
    state,
)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    filters: Annotated[
        str | None,
        typer.Option("--filter", help='JSON filter, e.g. \'{"metadata.topic": {"in": ["a","b"]}}\'.'),
    ] = None,
    kind: KindsOpt = None,
    as_of: Annotated[str | None, typer.Option(help="What memq knew at this time (ISO 8601).")] = None,
    valid_at: Annotated[
        str | None, typer.Option(help="What held in the world at this time (ISO 8601).")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Show each hit's per-signal scores.")] = False,
    policy: Annotated[
        str | None,
        typer.Option(
            help="The learner this search trains: similarity, memrl, memento_q or memq (default: the "
            "config's, memq). It ranks once it has been shown better than the recipe (memq learn status)."
        ),
    ] = None,
) -> None:
    """Search memories: dense + BM25 candidates, weighted fusion and link spreading, then the recipe's
    top k — or the learner's, once feedback has shown it better. Prints the retrieval id for feedback."""
    flt = _parse_json(filters, "--filter")
    when, world = _parse_time(as_of, "--as-of"), _parse_time(valid_at, "--valid-at")

    result = _with_memory(
        lambda mem: mem.search(
            query,
            k=k,
            mode=mode,
            filters=flt,
            kinds=kind,
            as_of=when,
            valid_at=world,
            explain=explain,
            policy=policy,
        )
    )
    if state.as_json:
        _print_json(result.model_dump(mode="json"))
        return
    table = Table(title=f"retrieval {result.id}  (ranked by {result.policy})", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("text")
    if explain:
        table.add_column("dense (rank)")
        table.add_column("bm25 (rank)")
    for hit in result.hits:
        row = [str(hit.rank), f"{hit.score:.4f}", hit.record.id, hit.record.text]
        if explain and hit.signals:
            s = hit.signals
            row.append("-" if s.dense is None else f"{s.dense:.3f} ({s.dense_rank})")
            row.append("-" if s.lexical is None else f"{s.lexical:.2f} ({s.lexical_rank})")
        table.add_row(*row)
    console.print(table if result.hits else "[yellow]no matching memories[/]")


@app.command()
def feedback(
    retrieval_id: Annotated[str, typer.Argument(help="The retrieval id printed by `memq search`.")],
    reward: Annotated[float, typer.Argument(help="The reward (1/0 by convention; ±1 and graded work too).")],
    used: Annotated[
        list[str] | None, typer.Option("--used", help="A record id the agent followed (repeatable).")
    ] = None,
    credit: Annotated[
        str | None, typer.Option(help="shown, used or rank (default: used if --used, else shown).")
    ] = None,
    accumulate: Annotated[bool, typer.Option(help="Add to feedback already given.")] = False,
) -> None:
    """Report the reward a retrieval earned; the shown memories learn from it."""

    fb = _with_memory(
        lambda mem: mem.feedback(retrieval_id, reward, used=used, credit=credit, accumulate=accumulate)
    )
    if state.as_json:
        _print_json(fb.model_dump(mode="json"))
        return
    console.print(
        f"feedback {fb.reward:g} on [cyan]{retrieval_id}[/] ({fb.credit} credit, {len(fb.credits)} records)"
    )


@app.command(name="prune-log")
def prune_log(
    older_than_days: Annotated[
        float, typer.Argument(help="Delete logged retrievals older than this many days.")
    ],
    all_tenants: Annotated[bool, typer.Option(help="Prune every tenant's log.")] = False,
) -> None:
    """Prune the retrieval log by age."""

    pruned = _with_memory(lambda mem: mem.prune_log(older_than_days, all_tenants=all_tenants))
    console.print(f"pruned {pruned} logged retrievals")


@app.command()
def replay(
    policy: Annotated[str, typer.Argument(help="The learner to re-train: memrl, memento_q or memq.")],
) -> None:
    """Re-train a learner from the retrieval log (all logged feedback of this tenant) and save it."""

    learned = _with_memory(lambda mem: mem.replay(policy))
    console.print(f"replayed {learned} logged feedbacks into {policy}")


@app.command()
def evaluate(policy: Annotated[str, typer.Argument(help="The learner to evaluate offline.")]) -> None:
    """Off-policy value of a learner on the logged feedback (IPS and self-normalised IPS)."""

    est = _with_memory(lambda mem: mem.evaluate(policy))
    if state.as_json:
        _print_json(est.__dict__)
        return
    console.print(
        f"{policy}: IPS {est.ips:.4f}, SNIPS {est.snips:.4f} over {est.retrievals} retrievals "
        f"({est.items} shown items, effective sample size {est.effective_sample_size:.0f})"
    )


learn_app = typer.Typer(
    help="What the learners have learned, and which one ranks the searches.", no_args_is_help=True
)
app.add_typer(learn_app, name="learn")


@learn_app.command("status")
def learn_status(
    policy: Annotated[str | None, typer.Argument(help="The learner (default: the config's, memq).")] = None,
) -> None:
    """Which scorer ranks this tenant's searches, the learner's promotion estimate and learning curve."""

    st = _with_memory(lambda mem: mem.learning_status(policy))
    if state.as_json:
        _print_json(st.model_dump(mode="json"))
        return
    serving = (
        f"[green]{st.learner}[/]" if st.serving else "[yellow]the recipe[/] (the learner is in the shadow)"
    )
    console.print(f"learner [bold]{st.learner}[/]: ranks with {serving}; promotion {st.promotion}")
    console.print(
        f"  trained: {st.trained} (model version {st.version}, saved version {st.state_version}), "
        f"{st.feedbacks} feedbacks counted"
    )
    est = st.estimate
    if est:
        console.print(
            f"  last promotion test on {est['searches']} searches ({est['explored']} explored): serving "
            f"{est['serving']:.3f}, shadow {est['shadow']:.3f}, difference {est['difference']:+.3f} "
            f"[{est['lower']:+.3f}, {est['upper']:+.3f}]"
        )
    else:
        console.print("  no promotion test yet (it runs with each fit, once there is logged feedback)")
    if st.curve:
        values = [v for _, v in st.curve]
        ticks = "▁▂▃▄▅▆▇█"
        lo, hi = min(values), max(values)
        spark = "".join(ticks[int((v - lo) / (hi - lo) * 7) if hi > lo else 3] for v in values)
        console.print(
            f"  mean reward, rolling: {spark}  ({values[0]:.2f} → {values[-1]:.2f}, {st.curve[-1][0]} searches)"
        )
