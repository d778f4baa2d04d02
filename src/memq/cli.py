"""The ``memq`` command line.

Every command works on one store (``--db``: a SQLite file or a ``postgresql://`` URL, default
``$MEMQ_DB`` or ./memq.db) and one scope (``--tenant``, default ``$MEMQ_TENANT`` or "default").
Errors print what went wrong and what to do, and exit with status 2.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from memq.errors import MemqError
from memq.memory import Memory, _resolve_llm
from memq.server.cli import keys_app, serve
from memq.types import MemoryRecord, Retrieval, Scope

app = typer.Typer(
    name="memq",
    help="memq — memory for LLM agents that learns which memories help.\n\n"
    "Store memories, search them (dense + BM25 hybrid), and manage their history.\n"
    "Start with:  memq demo   |   memq add 'Alice moved to Berlin'   |   memq search 'where is Alice?'",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(keys_app, name="keys")
app.command()(serve)
# `memq bench ...` and `memq demo` live in the memq_bench package, imported only when they run: the
# other commands (and `memq --help`) never pay for the benchmark harness.
_FORWARD = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


@app.command("bench", **_FORWARD)
def _bench(ctx: typer.Context) -> None:
    """Benchmarks on real data (results JSON + a table). `memq bench --help` lists them."""
    from memq_bench.cli import bench_app

    bench_app(ctx.args, prog_name="memq bench")


@app.command("demo", **_FORWARD)
def _demo(ctx: typer.Context) -> None:
    """Watch memq learn from reward on BANKING77 (about a minute on 2 cores). `memq demo --help`."""
    from memq_bench.cli import demo_app

    demo_app(ctx.args, prog_name="memq demo")


@app.command("evolve", **_FORWARD)
def _evolve(ctx: typer.Context) -> None:
    """Search memq's configuration (Optuna TPE) on LoCoMo; writes a config. `memq evolve --help`."""
    from memq_bench.cli import evolve_app

    evolve_app(ctx.args, prog_name="memq evolve")


@app.command("rl", **_FORWARD)
def _rl(ctx: typer.Context) -> None:
    """Write policies trained by RL: train, eval, export (FactConsolidation). `memq rl --help`."""
    from memq_bench.cli import rl_app

    rl_app(ctx.args, prog_name="memq rl")


console = Console()
err_console = Console(stderr=True)


class _State:
    db: str = "memq.db"
    scope: Scope = Scope(tenant="default")
    embedder: str = "minilm"
    as_json: bool = False


state = _State()


@app.callback()
def main(
    db: Annotated[
        str, typer.Option("--db", envvar="MEMQ_DB", help="SQLite file or postgresql:// URL.")
    ] = "memq.db",
    tenant: Annotated[
        str, typer.Option(envvar="MEMQ_TENANT", help="Tenant (isolation boundary).")
    ] = "default",
    user: Annotated[str | None, typer.Option(help="Narrow the scope to a user.")] = None,
    agent: Annotated[str | None, typer.Option(help="Narrow the scope to an agent.")] = None,
    session: Annotated[str | None, typer.Option(help="Narrow the scope to a session.")] = None,
    embedder: Annotated[
        str,
        typer.Option(
            envvar="MEMQ_EMBEDDER",
            help="minilm (default, offline), mpnet or e5-small (offline, the embedders extra), hashing[:DIM], or openai:MODEL:DIM.",
        ),
    ] = "minilm",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    state.db = db
    state.scope = Scope(tenant=tenant, user=user, agent=agent, session=session)
    state.embedder = embedder
    state.as_json = as_json


def _memory() -> Memory:
    from memq.embed import embedder_from_spec

    return Memory(state.db, embedder=embedder_from_spec(state.embedder), scope=state.scope)


def _fail(exc: Exception) -> None:
    code = getattr(exc, "code", type(exc).__name__)
    err_console.print(f"[bold red]error[/] ({code}): {exc}")
    raise typer.Exit(2)


def _run(fn: Any) -> Any:
    try:
        return fn()
    except MemqError as exc:
        _fail(exc)
    except (OSError, ValueError) as exc:
        _fail(exc)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def _record_row(r: MemoryRecord) -> dict[str, Any]:
    return r.model_dump(mode="json", exclude={"embedding"})


def _records_table(records: list[MemoryRecord], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("v", justify="right")
    table.add_column("kind")
    table.add_column("text")
    table.add_column("metadata")
    for r in records:
        table.add_row(r.id, str(r.version), r.kind, r.text, json.dumps(r.metadata, ensure_ascii=False)[:60])
    return table


def _parse_json(value: str | None, what: str) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        _fail(ValueError(f'{what} is not valid JSON ({exc.msg}); example: \'{{"topic": "travel"}}\''))
    if not isinstance(parsed, dict):
        _fail(ValueError(f'{what} must be a JSON object, e.g. \'{{"topic": "travel"}}\''))
    return parsed


def _parse_time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        _fail(ValueError(f"{what} must be an ISO 8601 time such as 2024-05-01 or 2024-05-01T12:00:00+00:00"))
    return None


@app.command()
def add(
    text: Annotated[str | None, typer.Argument(help="The memory's text. Omit with --file.")] = None,
    kind: Annotated[
        str, typer.Option(help="fact, episode, experience, note, insight, or your own.")
    ] = "fact",
    metadata: Annotated[
        str | None, typer.Option("--metadata", "-m", help="JSON object of filterable fields.")
    ] = None,
    payload: Annotated[
        str | None,
        typer.Option(
            help='JSON object stored with the memory (experience: \'{"outcome": "success", ...}\').'
        ),
    ] = None,
    valid_from: Annotated[str | None, typer.Option(help="World time the fact starts (ISO 8601).")] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="Add every non-empty line of a text file (- for stdin)."),
    ] = None,
    manager: Annotated[
        str | None,
        typer.Option(
            help="A write policy: append, dedupe, reconcile, experience, insights, notes, episodes "
            "(see docs/managers.md). Prints its decisions."
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="A manager parameter KEY=VALUE (VALUE as JSON, else text); repeatable."
        ),
    ] = None,
    llm: Annotated[
        str | None,
        typer.Option(
            envvar="MEMQ_LLM",
            help="The LLM the manager uses: local (the embedded Gemma), openai:MODEL or openai:MODEL@BASE_URL.",
        ),
    ] = None,
    usage: Annotated[bool, typer.Option(help="Print the LLM calls and tokens the add used.")] = False,
) -> None:
    """Store a memory (or every line of a file, in one transaction), or hand it to a --manager."""
    if (text is None) == (file is None):
        _fail(ValueError("give the text as an argument, or --file PATH (not both)"))
    md = _parse_json(metadata, "--metadata")
    pl = _parse_json(payload, "--payload")
    when = _parse_time(valid_from, "--valid-from")
    params = _parse_params(param or [])
    if params and manager is None:
        _fail(ValueError("--param configures a --manager; give --manager NAME"))

    def go() -> Any:
        if file is not None:
            lines = (
                sys.stdin.read().splitlines() if str(file) == "-" else file.read_text("utf-8").splitlines()
            )
            items: Any = [line for line in lines if line.strip()]
        else:
            items = [text]
        with _memory() as mem:
            if llm is not None:
                mem.llm = _resolve_llm(llm)
            out = mem.add(
                items,
                kind=kind,
                metadata=md,
                payload=pl,
                valid_from=when,
                manager=manager,
                manager_params=params,
            )
            return out, mem.usage()

    result, used = _run(go)
    if manager is not None:
        _print_managed(result, used if usage else None)
        return
    if state.as_json:
        _print_json([_record_row(r) for r in result])
    else:
        for r in result:
            console.print(f"added [cyan]{r.id}[/]")


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(ValueError(f"--param takes KEY=VALUE, got {item!r}"))
        try:
            params[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[key.strip()] = value
    return params


def _print_managed(result: Any, used: Any) -> None:
    if state.as_json:
        out = result.model_dump(mode="json", exclude={"written": {"__all__": {"embedding"}}})
        if used is not None:
            out["llm_usage"] = used.model_dump(mode="json")
        _print_json(out)
        return
    table = Table(
        title=f"manager {result.manager}: {len(result.decisions)} decision(s)", title_justify="left"
    )
    table.add_column("op", style="bold")
    table.add_column("record", style="cyan", no_wrap=True)
    table.add_column("text")
    table.add_column("reason")
    for d in result.decisions:
        table.add_row(d.op, d.record_id or "-", (d.text or "")[:60], d.reason)
    console.print(table)
    if used is not None:
        t = used.total
        console.print(
            f"LLM: {t.calls} call(s), {t.retries} retr(y/ies), {t.failures} failure(s), "
            f"{t.prompt_tokens} prompt + {t.completion_tokens} completion tokens, {t.latency_ms:.0f} ms"
        )
        for op, st in sorted(used.by_operation.items()):
            console.print(f"  {op}: {st.calls} call(s), {st.prompt_tokens} + {st.completion_tokens} tokens")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
    mode: Annotated[str, typer.Option(help="hybrid, dense or lexical.")] = "hybrid",
    filters: Annotated[
        str | None,
        typer.Option("--filter", help='JSON filter, e.g. \'{"metadata.topic": {"in": ["a","b"]}}\'.'),
    ] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")] = None,
    as_of: Annotated[str | None, typer.Option(help="What memq knew at this time (ISO 8601).")] = None,
    valid_at: Annotated[
        str | None, typer.Option(help="What held in the world at this time (ISO 8601).")
    ] = None,
    explain: Annotated[bool, typer.Option(help="Show each hit's per-signal scores.")] = False,
    policy: Annotated[
        str | None,
        typer.Option(help="A learner (similarity, memrl, memento_q, memq) instead of the hybrid recipe."),
    ] = None,
) -> None:
    """Search memories: dense + BM25 candidates fused with RRF (or a learned policy)."""
    flt = _parse_json(filters, "--filter")
    when, world = _parse_time(as_of, "--as-of"), _parse_time(valid_at, "--valid-at")

    def go() -> Retrieval:
        with _memory() as mem:
            return mem.search(
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

    result = _run(go)
    if state.as_json:
        _print_json(result.model_dump(mode="json"))
        return
    table = Table(title=f"retrieval {result.id}", title_justify="left")
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

    def go() -> Any:
        with _memory() as mem:
            return mem.feedback(retrieval_id, reward, used=used, credit=credit, accumulate=accumulate)

    fb = _run(go)
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

    def go() -> int:
        with _memory() as mem:
            return mem.prune_log(older_than_days, all_tenants=all_tenants)

    console.print(f"pruned {_run(go)} logged retrievals")


@app.command()
def replay(
    policy: Annotated[str, typer.Argument(help="The learner to re-train: memrl, memento_q or memq.")],
) -> None:
    """Re-train a learner from the retrieval log (all logged feedback of this tenant) and save it."""

    def go() -> int:
        with _memory() as mem:
            return mem.replay(policy)

    console.print(f"replayed {_run(go)} logged feedbacks into {policy}")


@app.command()
def evaluate(policy: Annotated[str, typer.Argument(help="The learner to evaluate offline.")]) -> None:
    """Off-policy value of a learner on the logged feedback (IPS and self-normalised IPS)."""

    def go() -> Any:
        with _memory() as mem:
            return mem.evaluate(policy)

    est = _run(go)
    if state.as_json:
        _print_json(est.__dict__)
        return
    console.print(
        f"{policy}: IPS {est.ips:.4f}, SNIPS {est.snips:.4f} over {est.retrievals} retrievals "
        f"({est.items} shown items, effective sample size {est.effective_sample_size:.0f})"
    )


@app.command()
def get(
    record_id: Annotated[str, typer.Argument(help="Record id.")],
    include_deleted: Annotated[bool, typer.Option(help="Also show a soft-deleted record.")] = False,
) -> None:
    """Show one record (its latest version)."""

    def go() -> MemoryRecord:
        with _memory() as mem:
            return mem.get(record_id, include_deleted=include_deleted)

    record = _run(go)
    _print_json(_record_row(record))


@app.command(name="list")
def list_(
    limit: Annotated[int, typer.Option(help="Records per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Cursor printed by the previous page.")] = None,
    filters: Annotated[
        str | None, typer.Option("--filter", help="JSON filter (see `memq search --help`).")
    ] = None,
    kind: Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")] = None,
) -> None:
    """List records in creation order, one page at a time."""
    flt = _parse_json(filters, "--filter")

    def go() -> Any:
        with _memory() as mem:
            return mem.list(limit=limit, cursor=cursor, filters=flt, kinds=kind)

    page = _run(go)
    if state.as_json:
        _print_json(page.model_dump(mode="json", exclude={"records": {"__all__": {"embedding"}}}))
        return
    console.print(_records_table(page.records))
    if page.next_cursor:
        console.print(f"next page: [cyan]memq list --cursor {page.next_cursor}[/]")


@app.command()
def history(record_id: Annotated[str, typer.Argument(help="Record id.")]) -> None:
    """Show every version and event of a record."""

    def go() -> Any:
        with _memory() as mem:
            return mem.history(record_id)

    events = _run(go)
    if state.as_json:
        _print_json([e.model_dump(mode="json", exclude={"record": {"embedding"}}) for e in events])
        return
    table = Table(title=f"history of {record_id}", title_justify="left")
    for col in ("at", "op", "v", "text", "valid", "reason"):
        table.add_column(col)
    for e in events:
        r = e.record
        valid = "" if r is None else f"{r.valid_from or '…'} → {r.valid_to or '…'}"
        table.add_row(
            e.at.isoformat(timespec="seconds"),
            e.op.value,
            str(e.version),
            "" if r is None else r.text,
            valid,
            e.reason or "",
        )
    console.print(table)


@app.command()
def update(
    record_id: Annotated[str, typer.Argument(help="Record id.")],
    text: Annotated[str | None, typer.Option(help="New text.")] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", "-m", help="New metadata (JSON object).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
) -> None:
    """Write a new version of a record; the old one stays in history."""
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = text
    if metadata is not None:
        changes["metadata"] = _parse_json(metadata, "--metadata")

    def go() -> MemoryRecord:
        with _memory() as mem:
            return mem.update(record_id, reason=reason, **changes)

    r = _run(go)
    console.print(f"[cyan]{r.id}[/] is now at version {r.version}")


@app.command()
def invalidate(
    record_id: Annotated[str, typer.Argument(help="Record id.")],
    at: Annotated[
        str | None, typer.Option(help="When it stopped being true (ISO 8601; default now).")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
) -> None:
    """Mark a fact as no longer true (kept, searchable with --valid-at)."""
    when = _parse_time(at, "--at")

    def go() -> MemoryRecord:
        with _memory() as mem:
            return mem.invalidate(record_id, at=when, reason=reason)

    r = _run(go)
    console.print(f"[cyan]{r.id}[/] valid until {r.valid_to}")


@app.command()
def delete(
    record_id: Annotated[str, typer.Argument(help="Record id.")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in history).")] = None,
) -> None:
    """Soft-delete a record (hidden from search; history kept). Use `purge` to erase."""

    def go() -> None:
        with _memory() as mem:
            mem.delete(record_id, reason=reason)

    _run(go)
    console.print(f"deleted [cyan]{record_id}[/]")


@app.command()
def purge(
    record_ids: Annotated[list[str], typer.Argument(help="Record ids to erase.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase records for good: every version, vector, index entry and history event."""
    if not yes and not typer.confirm(f"Erase {len(record_ids)} record(s) permanently?"):
        raise typer.Exit(1)

    def go() -> int:
        with _memory() as mem:
            return mem.purge(record_ids)

    console.print(f"purged {_run(go)} record(s)")


@app.command()
def forget(
    capacity: Annotated[int, typer.Argument(help="Most records the scope keeps.")],
) -> None:
    """Archive the scope's lowest-keep records beyond CAPACITY (budgeted forgetting; restorable)."""

    def go() -> list[str]:
        with _memory() as mem:
            return mem.forget(capacity)

    ids = _run(go)
    if state.as_json:
        _print_json({"archived": ids})
        return
    console.print(f"archived {len(ids)} record(s)")
    for rid in ids:
        console.print(f"  [cyan]{rid}[/]")


@app.command()
def archived(
    limit: Annotated[int, typer.Option(help="Records per page.")] = 20,
    cursor: Annotated[str | None, typer.Option(help="Cursor printed by the previous page.")] = None,
) -> None:
    """List archived records (evicted by `memq forget` or a capacity), one page at a time."""

    def go() -> Any:
        with _memory() as mem:
            return mem.archived(limit=limit, cursor=cursor)

    page = _run(go)
    if state.as_json:
        _print_json(page.model_dump(mode="json", exclude={"records": {"__all__": {"embedding"}}}))
        return
    console.print(_records_table(page.records, title="archived"))
    if page.next_cursor:
        console.print(f"next page: [cyan]memq archived --cursor {page.next_cursor}[/]")


@app.command()
def restore(record_id: Annotated[str, typer.Argument(help="Id of an archived record.")]) -> None:
    """Bring an archived record back (a new current version; same text, metadata and vector)."""

    def go() -> MemoryRecord:
        with _memory() as mem:
            return mem.restore(record_id)

    record = _run(go)
    if state.as_json:
        _print_json(_record_row(record))
        return
    console.print(f"restored [cyan]{record.id}[/] as version {record.version}")


@app.command(name="mcp")
def mcp_(
    db: Annotated[
        str | None, typer.Option(help="SQLite file or postgresql:// URL (default: the global --db).")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option(help="Tenant of every tool call (default: the global --tenant).")
    ] = None,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Only recall and list; refuse remember, feedback and forget.")
    ] = False,
) -> None:
    """Serve memq to an MCP client (Claude Desktop, Cursor, IDEs) over stdio.

    Tools: remember, recall, feedback, forget, list - all in one tenant. Example client command:
    memq mcp --db ~/memq.db --tenant me. For MCP over HTTP run `memq serve` (endpoint /mcp, API key).
    """
    try:
        from memq.server.mcp import run_stdio
    except ImportError as exc:
        _fail(ImportError(f"memq mcp needs the server extra: pip install 'memq[server]' ({exc})"))
    if db is not None:
        state.db = db
    if tenant is not None:
        state.scope = Scope(tenant=tenant)
    mem = _run(_memory)
    try:
        run_stdio(mem, state.scope.tenant, read_only=read_only)
    finally:
        mem.close()


@app.command()
def export(
    path: Annotated[Path, typer.Argument(help="Output JSONL file (- for stdout).")],
    all_tenants: Annotated[bool, typer.Option(help="Export every tenant, not just --tenant.")] = False,
) -> None:
    """Export every version and history event (with vectors) as JSONL."""

    def go() -> int:
        with _memory() as mem:
            if str(path) == "-":
                return mem.export(sys.stdout, all_tenants=all_tenants)
            return mem.export(path, all_tenants=all_tenants)

    lines = _run(go)
    if str(path) != "-":
        console.print(f"wrote {lines} lines to {path}")


@app.command(name="import")
def import_(path: Annotated[Path, typer.Argument(help="A JSONL file written by `memq export`.")]) -> None:
    """Import a JSONL export exactly (ids, versions, times kept); all or nothing."""

    def go() -> int:
        with _memory() as mem:
            return mem.import_(path)

    console.print(f"imported {_run(go)} record versions")


@app.command()
def stats(all_tenants: Annotated[bool, typer.Option(help="Count every tenant.")] = False) -> None:
    """Counts, embedding space and size of the store."""

    def go() -> Any:
        with _memory() as mem:
            return mem.stats(all_tenants=all_tenants)

    s = _run(go)
    if state.as_json:
        _print_json(s.model_dump(mode="json"))
        return
    table = Table(show_header=False)
    for key, value in s.model_dump().items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def reembed(
    to: Annotated[
        str, typer.Option("--to", help="The new embedder: minilm, hashing[:DIM] or openai:MODEL:DIM.")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Re-embed every stored version with another embedder and switch the store to it."""
    from memq.embed import embedder_from_spec

    if not yes and not typer.confirm(f"Re-embed the whole store {state.db} with {to}?"):
        raise typer.Exit(1)

    def go() -> int:
        with Memory(state.db, scope=state.scope) as mem:
            return mem.reembed(embedder_from_spec(to))

    console.print(f"re-embedded {_run(go)} record versions with {to}; use --embedder {to} from now on")


def run() -> None:  # pragma: no cover - console entry point alias
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()
