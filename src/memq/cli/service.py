"""``memq mcp``: memq for an MCP client over stdio (``memq serve`` and ``memq keys`` are in memq.server.cli)."""

from __future__ import annotations

from typing import Annotated

import typer

from memq.cli.common import (
    _fail,
    _memory,
    _run,
    app,
    state,
)


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
        from memq.types import Scope

        state.scope = Scope(tenant=tenant)
    mem = _run(_memory)
    try:
        run_stdio(mem, state.scope.tenant, read_only=read_only)
    finally:
        mem.close()
