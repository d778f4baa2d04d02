"""``memq add``, ``get``, ``list``, ``history``, ``update``, ``invalidate``, ``delete``, ``purge``, ``forget``,
``archived``, ``restore``, ``export``, ``import``, ``stats``, ``reembed``: records and their versions."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from memq.cli.common import (
    CursorOpt,
    KindsOpt,
    LimitOpt,
    ReasonOpt,
    RecordIdArg,
    YesOpt,
    _fail,
    _memory,
    _parse_json,
    _parse_params,
    _parse_time,
    _print_json,
    _record_row,
    _records_table,
    _run,
    _with_memory,
    app,
    console,
    state,
)

if TYPE_CHECKING:
    from memq.types import Page


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
                from memq.memory import _resolve_llm

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
def get(
    record_id: RecordIdArg,
    include_deleted: Annotated[bool, typer.Option(help="Also show a soft-deleted record.")] = False,
) -> None:
    """Show one record (its latest version)."""

    record = _with_memory(lambda mem: mem.get(record_id, include_deleted=include_deleted))
    _print_json(_record_row(record))


@app.command(name="list")
def list_(
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    filters: Annotated[
        str | None, typer.Option("--filter", help="JSON filter (see `memq search --help`).")
    ] = None,
    kind: KindsOpt = None,
) -> None:
    """List records in creation order, one page at a time."""
    flt = _parse_json(filters, "--filter")

    page = _with_memory(lambda mem: mem.list(limit=limit, cursor=cursor, filters=flt, kinds=kind))
    _print_page(page, "list")


def _print_page(page: Page, command: str, title: str | None = None) -> None:
    """A page of records as JSON or a table, with the command that fetches the next one."""
    if state.as_json:
        _print_json(page.model_dump(mode="json", exclude={"records": {"__all__": {"embedding"}}}))
        return
    console.print(_records_table(page.records, title=title))
    if page.next_cursor:
        console.print(f"next page: [cyan]memq {command} --cursor {page.next_cursor}[/]")


@app.command()
def history(record_id: RecordIdArg) -> None:
    """Show every version and event of a record."""

    events = _with_memory(lambda mem: mem.history(record_id))
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
    record_id: RecordIdArg,
    text: Annotated[str | None, typer.Option(help="New text.")] = None,
    metadata: Annotated[
        str | None, typer.Option("--metadata", "-m", help="New metadata (JSON object).")
    ] = None,
    reason: ReasonOpt = None,
) -> None:
    """Write a new version of a record; the old one stays in history."""
    changes: dict[str, Any] = {}
    if text is not None:
        changes["text"] = text
    if metadata is not None:
        changes["metadata"] = _parse_json(metadata, "--metadata")

    r = _with_memory(lambda mem: mem.update(record_id, reason=reason, **changes))
    console.print(f"[cyan]{r.id}[/] is now at version {r.version}")


@app.command()
def invalidate(
    record_id: RecordIdArg,
    at: Annotated[
        str | None, typer.Option(help="When it stopped being true (ISO 8601; default now).")
    ] = None,
    reason: ReasonOpt = None,
) -> None:
    """Mark a fact as no longer true (kept, searchable with --valid-at)."""
    when = _parse_time(at, "--at")

    r = _with_memory(lambda mem: mem.invalidate(record_id, at=when, reason=reason))
    console.print(f"[cyan]{r.id}[/] valid until {r.valid_to}")


@app.command()
def delete(
    record_id: RecordIdArg,
    reason: ReasonOpt = None,
) -> None:
    """Soft-delete a record (hidden from search; history kept). Use `purge` to erase."""

    _with_memory(lambda mem: mem.delete(record_id, reason=reason))
    console.print(f"deleted [cyan]{record_id}[/]")


@app.command()
def purge(
    record_ids: Annotated[list[str], typer.Argument(help="Record ids to erase.")],
    yes: YesOpt = False,
) -> None:
    """Erase records for good: every version, vector, index entry and history event."""
    if not yes and not typer.confirm(f"Erase {len(record_ids)} record(s) permanently?"):
        raise typer.Exit(1)

    console.print(f"purged {_with_memory(lambda mem: mem.purge(record_ids))} record(s)")


@app.command()
def forget(
    capacity: Annotated[int, typer.Argument(help="Most records the scope keeps.")],
) -> None:
    """Archive the scope's lowest-keep records beyond CAPACITY (budgeted forgetting; restorable)."""

    ids = _with_memory(lambda mem: mem.forget(capacity))
    if state.as_json:
        _print_json({"archived": ids})
        return
    console.print(f"archived {len(ids)} record(s)")
    for rid in ids:
        console.print(f"  [cyan]{rid}[/]")


@app.command()
def archived(
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
) -> None:
    """List archived records (evicted by `memq forget` or a capacity), one page at a time."""

    page = _with_memory(lambda mem: mem.archived(limit=limit, cursor=cursor))
    _print_page(page, "archived", title="archived")


@app.command()
def restore(record_id: Annotated[str, typer.Argument(help="Id of an archived record.")]) -> None:
    """Bring an archived record back (a new current version; same text, metadata and vector)."""

    record = _with_memory(lambda mem: mem.restore(record_id))
    if state.as_json:
        _print_json(_record_row(record))
        return
    console.print(f"restored [cyan]{record.id}[/] as version {record.version}")


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

    console.print(f"imported {_with_memory(lambda mem: mem.import_(path))} record versions")


@app.command()
def stats(all_tenants: Annotated[bool, typer.Option(help="Count every tenant.")] = False) -> None:
    """Counts, embedding space and size of the store."""

    s = _with_memory(lambda mem: mem.stats(all_tenants=all_tenants))
    if state.as_json:
        _print_json(s.model_dump(mode="json"))
        return
    table = Table(show_header=False)
    for key, value in s.model_dump().items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def check(
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Rebuild both indexes from the rows and save them first.")
    ] = False,
) -> None:
    """Compare the indexes kept beside a SQLite store (vectors, BM25) with its rows; exit 1 if one
    disagrees. --rebuild rebuilds them from the rows (after plain SQL edits, or a doubt)."""

    def go(mem: Any) -> dict[str, dict[str, Any]] | None:
        store = mem.store
        if not hasattr(store, "check_indexes"):
            return None
        return store.rebuild_indexes() if rebuild else store.check_indexes()

    doing = (
        "rebuilding the indexes from the rows (minutes at a million records)"
        if rebuild
        else "comparing the indexes with the rows (seconds at a million records)"
    )
    with nullcontext() if state.as_json else console.status(f"{doing}…"):
        found = _with_memory(go)
    if found is None:
        message = "this store keeps no index files beside it (PostgreSQL maintains its own indexes)"
        if state.as_json:
            _print_json({"indexes": {}, "ok": True, "note": message})
        else:
            console.print(message)
        return
    ok = all(v["ok"] for v in found.values())
    if state.as_json:
        _print_json({"indexes": found, "ok": ok, "rebuilt": rebuild})
    else:
        table = Table(
            title=f"indexes of {state.db}" + (" (rebuilt)" if rebuild else ""), title_justify="left"
        )
        for column in ("index", "rows it should hold", "rows it holds", "matches the rows"):
            table.add_column(column, justify="left" if column == "index" else "right")
        for name, v in found.items():
            table.add_row(
                name, f"{v['rows']:,}", f"{v['indexed']:,}", "yes" if v["ok"] else "[bold red]no[/]"
            )
        console.print(table)
        if not ok:
            console.print("run `memq check --rebuild` to rebuild them from the rows")
    if not ok:
        raise typer.Exit(1)


@app.command()
def reembed(
    to: Annotated[
        str, typer.Option("--to", help="The new embedder: minilm, hashing[:DIM] or openai:MODEL:DIM.")
    ],
    yes: YesOpt = False,
) -> None:
    """Re-embed every stored version with another embedder and switch the store to it."""
    from memq.embed import embedder_from_spec
    from memq.memory import Memory

    if not yes and not typer.confirm(f"Re-embed the whole store {state.db} with {to}?"):
        raise typer.Exit(1)

    def go() -> int:
        with Memory(state.db, scope=state.scope) as mem:
            return mem.reembed(embedder_from_spec(to))

    console.print(f"re-embedded {_run(go)} record versions with {to}; use --embedder {to} from now on")
