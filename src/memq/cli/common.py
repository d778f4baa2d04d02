"""What every ``memq`` command shares: the app, the global options (store, scope, embedder, output),
and how commands open the store, print and fail.

Every command works on one store (``--db``: a SQLite file or a ``postgresql://`` URL, default
``$MEMQ_DB`` or ./memq.db) and one scope (``--tenant``, default ``$MEMQ_TENANT`` or "default").
Errors print what went wrong and what to do, and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from memq.errors import MemqError
from memq.server.cli import keys_app, serve

T = TypeVar("T")

if TYPE_CHECKING:  # the commands import the stack when they run: `memq --help` does not load it
    from memq.memory import Memory
    from memq.types import MemoryRecord, Scope

# arguments and options that several commands take, defined once
RecordIdArg = Annotated[str, typer.Argument(help="Record id.")]
ReasonOpt = Annotated[str | None, typer.Option(help="Why (kept in history).")]
LimitOpt = Annotated[int, typer.Option(help="Records per page.")]
CursorOpt = Annotated[str | None, typer.Option(help="Cursor printed by the previous page.")]
KindsOpt = Annotated[list[str] | None, typer.Option(help="Only these kinds (repeatable).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


class _Commands(TyperGroup):
    """memq's commands. A global option written after the command (``memq search q --db t.db``)
    gets an error that says where it goes, instead of a guess among the command's own options."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except typer.TyperException as exc:  # typer's click raises its NoSuchOption, a TyperException
            name = getattr(exc, "option_name", None)
            sub = getattr(exc, "ctx", None)
            option = next((p for p in self.params if name in p.opts), None)
            path: list[str] = []  # the command's words after `memq` (`keys create`)
            while sub is not None and sub is not ctx:
                path.insert(0, sub.info_name or "")
                sub = sub.parent
            if option is None or sub is None or not path:
                raise
            value = "" if getattr(option, "is_flag", False) else " ..."
            exc.message = (
                f"{name} is one of memq's global options: it goes before the command, as in "
                f"`memq {name}{value} {' '.join(path)} ...` (`memq --help` lists them)."
            )
            exc.possibilities = None  # type: ignore[misc]
            raise


app = typer.Typer(
    name="memq",
    cls=_Commands,
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


_FORWARDED = {  # command: its Typer app in memq_bench.cli, and its help line
    "bench": (
        "bench_app",
        "Benchmarks on real data (results JSON + a table). `memq bench --help` lists them.",
    ),
    "demo": (
        "demo_app",
        "Watch memq learn from reward on BANKING77 (about 5 minutes on 2 cores). `memq demo --help`.",
    ),
    "evolve": (
        "evolve_app",
        "Search memq's configuration (Optuna TPE) on LoCoMo; writes a config. `memq evolve --help`.",
    ),
    "rl": (
        "rl_app",
        "Write policies trained by RL: train, eval, export (FactConsolidation). `memq rl --help`.",
    ),
}


def _forwarder(name: str, app_name: str, doc: str) -> Callable[[typer.Context], None]:
    """A command that hands its arguments to ``memq_bench.cli.<app_name>``, imported when it runs."""

    def forward(ctx: typer.Context) -> None:
        import memq_bench.cli

        getattr(memq_bench.cli, app_name)(ctx.args, prog_name=f"memq {name}")

    forward.__doc__ = doc
    return forward


for _name, (_app_name, _doc) in _FORWARDED.items():
    app.command(_name, **_FORWARD)(_forwarder(_name, _app_name, _doc))


console = Console()
err_console = Console(stderr=True)


class _State:
    db: str = "memq.db"
    scope: Scope  # set by the global options (main), before any command runs
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
            help="minilm (default: all-MiniLM-L6-v2 on ONNX Runtime), minilm-int8 (faster, its own space), minilm-torch (the torch extra), mpnet or e5-small (the embedders extra), hashing[:DIM], or openai:MODEL:DIM.",
        ),
    ] = "minilm",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    from memq.types import Scope

    state.db = db
    state.scope = Scope(tenant=tenant, user=user, agent=agent, session=session)
    state.embedder = embedder
    state.as_json = as_json


def _memory() -> Memory:
    from memq.embed import embedder_from_spec
    from memq.memory import Memory

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


def _with_memory(fn: Callable[[Memory], T]) -> T:
    """``fn`` on a Memory opened from the global options (closed after); memq's errors → exit 2."""

    def go() -> T:
        with _memory() as mem:
            return fn(mem)

    return _run(go)  # type: ignore[no-any-return]


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
