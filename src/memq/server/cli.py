"""``memq serve`` and ``memq keys ...``: run the REST API and manage its API keys.

Both use the global ``--db`` (SQLite file or ``postgresql://`` URL) unless given their own.
FastAPI and uvicorn are imported only when ``serve`` runs.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from memq.errors import MemqError
from memq.store import is_postgres_url

if TYPE_CHECKING:  # the key store and the server's settings load when a command runs (`memq --help`)
    from memq.server.keys import KeyStore

keys_app = typer.Typer(
    help="API keys of `memq serve`: each is bound to one tenant with read / write / admin scopes.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)


def _root(ctx: typer.Context, name: str, default: object) -> object:
    value = ctx.find_root().params.get(name)
    return default if value is None else value


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error[/] ({getattr(exc, 'code', type(exc).__name__)}): {exc}")
    raise typer.Exit(2)


@contextmanager
def _keys(ctx: typer.Context) -> Iterator[KeyStore]:
    """The key store beside the database, closed after the block; a MemqError exits with its code."""
    from memq.server.keys import open_key_store

    try:
        ks = open_key_store(str(_root(ctx, "db", "memq.db")))
    except MemqError as exc:
        _fail(exc)
    try:
        yield ks
    except MemqError as exc:
        _fail(exc)
    finally:
        ks.close()


@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Option(help="The tenant the key is bound to (its only tenant).")],
    scopes: Annotated[
        str, typer.Option(help="Comma-separated: read, write, admin (admin implies both).")
    ] = "read,write",
    name: Annotated[str | None, typer.Option(help="A label to recognise the key by.")] = None,
) -> None:
    """Create a key and print its secret — shown this once; only its SHA-256 is stored."""
    with _keys(ctx) as ks:
        key, secret = ks.create(tenant, scopes.split(","), name=name)
    if _root(ctx, "as_json", False):
        sys.stdout.write(json.dumps({**key.model_dump(mode="json"), "key": secret}) + "\n")
        return
    console.print(
        f"created key [cyan]{key.id}[/] for tenant [bold]{key.tenant}[/] with scopes {','.join(key.scopes)}"
    )
    console.print("the secret is shown only now — store it safely:")
    sys.stdout.write(secret + "\n")


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys.")] = None,
) -> None:
    """List keys (never their secrets), revoked ones too."""
    with _keys(ctx) as ks:
        keys = ks.list(tenant)
    if _root(ctx, "as_json", False):
        sys.stdout.write(json.dumps([k.model_dump(mode="json") for k in keys], indent=2) + "\n")
        return
    table = Table()
    for col in ("id", "tenant", "scopes", "name", "created", "revoked"):
        table.add_column(col)
    for k in keys:
        table.add_row(
            k.id,
            k.tenant,
            ",".join(k.scopes),
            k.name or "",
            k.created_at.isoformat(timespec="seconds"),
            "" if k.revoked_at is None else k.revoked_at.isoformat(timespec="seconds"),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context, key_id: Annotated[str, typer.Argument(help="The key's id (from `memq keys list`).")]
) -> None:
    """Revoke a key: it stops working at once, in every server process."""
    with _keys(ctx) as ks:
        key = ks.revoke(key_id)
    console.print(f"revoked key [cyan]{key.id}[/] (tenant {key.tenant})")


def serve(
    ctx: typer.Context,
    db: Annotated[str | None, typer.Option(help="SQLite file (default: the global --db, ./memq.db).")] = None,
    dsn: Annotated[
        str | None,
        typer.Option(envvar="MEMQ_DSN", help="postgresql:// URL: use PostgreSQL instead of SQLite."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL only above 1).")] = 1,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Dev mode: no API keys, one tenant (--tenant), loopback only.")
    ] = False,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option("--cors-origin", help="Allow this browser origin (repeatable). Off by default."),
    ] = None,
    max_body: Annotated[
        int, typer.Option(min=1024, help="Largest request body in bytes (413 above).")
    ] = 1_048_576,
    rate: Annotated[
        float, typer.Option(min=0, help="Requests per second per API key and process (0 = off).")
    ] = 50.0,
    burst: Annotated[int, typer.Option(min=1, help="Burst size of the per-key rate limit.")] = 100,
    reports_dir: Annotated[
        Path | None,
        typer.Option(
            help="Benchmark reports (results JSON, HTML) the dashboard lists. [default: ./benchmarks/results]"
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="A MemoryConfig JSON (e.g. from `memq evolve`): search defaults, limits, write manager.",
        ),
    ] = None,
    blas_threads: Annotated[
        int,
        typer.Option(
            min=0,
            help="Threads of each numpy BLAS call (0 = leave as is). Requests run in parallel threads; "
            "a multi-threaded BLAS called by several at once mostly waits.",
        ),
    ] = 1,
) -> None:
    """Run the REST API (OpenAPI at /docs and /openapi.json) on the store.

    Embedded defaults: the SQLite file of --db and the offline MiniLM embedder. With --dsn several
    --workers share one PostgreSQL. Requests need an API key (`memq keys create`) unless --no-auth.
    """
    from memq.server.keys import open_key_store
    from memq.server.settings import ServerSettings, is_loopback, limit_blas

    location = dsn or db or str(_root(ctx, "db", "memq.db"))
    if dsn is not None and not is_postgres_url(dsn):
        _fail(ValueError("--dsn takes a postgresql:// URL; use --db for a SQLite file"))
    if workers > 1 and not is_postgres_url(location):
        _fail(
            ValueError("several --workers need PostgreSQL (--dsn postgresql://…); SQLite serves one worker")
        )
    if no_auth and not is_loopback(host):
        _fail(ValueError(f"--no-auth serves only loopback clients; refusing to listen on {host}"))
    settings = ServerSettings(
        db=location,
        embedder=str(_root(ctx, "embedder", "minilm")),
        auth=not no_auth,
        dev_tenant=str(_root(ctx, "tenant", "default")),
        max_body_bytes=max_body,
        rate_per_s=rate,
        rate_burst=burst,
        cors_origins=cors_origin or [],
        reports_dir=None if reports_dir is None else str(reports_dir),
        config=None if config is None else str(config.resolve()),
        blas_threads=blas_threads,
    )
    if config is not None:
        from memq.config import MemoryConfig

        try:
            loaded = MemoryConfig.load(config)  # a bad file fails here, before the server starts
        except MemqError as exc:
            _fail(exc)
        if loaded.embedder and loaded.embedder != settings.embedder:
            _fail(
                ValueError(
                    f"{config} names the embedder {loaded.embedder!r}: "
                    f"run memq --embedder {loaded.embedder} serve ..."
                )
            )
    try:
        import uvicorn

        from memq.server.app import create_app
    except ImportError as exc:
        _fail(ImportError(f"memq serve needs the server extra: pip install 'memq[server]' ({exc})"))
    if no_auth:
        err_console.print(
            f"[bold yellow]WARNING[/]: --no-auth: no API keys; every request acts as tenant "
            f"[bold]{settings.dev_tenant}[/] with all scopes. For local development only."
        )
    else:
        try:
            ks = open_key_store(location)
            n_keys = sum(1 for k in ks.list() if not k.revoked)
            ks.close()
        except MemqError as exc:
            _fail(exc)
        if n_keys == 0:
            err_console.print(
                "[yellow]no API keys yet[/]: create one with  memq keys create --tenant NAME --scopes read,write"
            )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base = f"http://{host}:{port}"
    err_console.print(
        f"memq serve: REST {base}/v1 (docs {base}/docs) · dashboard {base}/ui/ · MCP {base}/mcp"
    )
    if workers == 1:
        limit_blas(settings.blas_threads)
        try:
            app = create_app(settings)
        except MemqError as exc:
            _fail(exc)
        uvicorn.run(app, host=host, port=port, log_level=log_level)
    else:
        os.environ.update(settings.to_env())
        uvicorn.run(
            "memq.server.app:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
        )
