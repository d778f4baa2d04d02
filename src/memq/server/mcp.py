"""memq as an MCP server (the official ``mcp`` SDK): tools to remember, recall, give feedback,
forget and list, over stdio (``memq mcp``) or streamable HTTP (``/mcp`` of ``memq serve``).

Every tool call resolves *who* is calling before it touches memory:

* stdio: the process's ``--tenant`` with read and write (a local process you started yourself);
* HTTP: the API key of the request, with exactly the REST rules (:func:`memq.server.auth.authenticate`:
  key lookup, revocation, rate limit, dev mode). The ASGI gate in front of the MCP app refuses a
  missing or bad key with a 401 problem before the MCP layer runs; each tool then checks the scope
  it needs (``read`` for recall/list, ``write`` for remember/feedback/forget).

The tenant is never a tool argument: ``user`` / ``agent`` / ``session`` narrow the scope inside
the caller's tenant. The HTTP transport is stateless (JSON responses, no session affinity), so
several ``memq serve`` workers behind one PostgreSQL serve it alike.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import BaseModel, Field

from memq.errors import MemqError
from memq.memory import Memory
from memq.retrieve.pipeline import MAX_K
from memq.server.auth import AuthError, Principal, authenticate
from memq.server.problems import problem
from memq.types import MemoryRecord

if TYPE_CHECKING:
    from fastapi import FastAPI
    from starlette.types import Receive, Scope, Send

PATH = "/mcp"
PRINCIPAL_KEY = "memq.principal"  # where the HTTP gate leaves the caller in the ASGI scope
MAX_LIST = 100
INSTRUCTIONS = (
    "memq is a long-term memory that learns which memories help. Call `recall` before answering to "
    "get relevant memories, `remember` to store new facts or experiences, and after acting on recalled "
    "memories call `feedback` with the retrieval_id and a reward (1 = helped, 0 = did not), listing the "
    "ids you used, so memq learns which memories to return. `forget` deletes or invalidates a memory."
)

Name = Annotated[str | None, Field(min_length=1, max_length=200)]
# resolve(ctx, required_scope) -> (memory, principal); raises ToolError when the caller may not
Resolver = Callable[[Context, str], tuple[Memory, Principal]]


class RecordOut(BaseModel):
    id: str
    version: int
    kind: str
    text: str
    user: str | None
    agent: str | None
    session: str | None
    metadata: dict[str, Any]
    recorded_at: datetime
    valid_from: datetime | None
    valid_to: datetime | None
    q: float | None = Field(description="Learned utility of this memory (None until feedback).")
    n_shown: int


class HitOut(RecordOut):
    rank: int
    score: float


class RecallOut(BaseModel):
    retrieval_id: str = Field(description="Pass it to `feedback` after acting on these memories.")
    policy: str
    hits: list[HitOut]


class FeedbackOut(BaseModel):
    retrieval_id: str
    reward: float
    credit: str
    count: int
    credits: dict[str, float] = Field(description="Reward credited to each shown memory id.")


class ForgetOut(BaseModel):
    record_id: str
    mode: Literal["delete", "invalidate"]
    version: int | None = Field(description="The record's new version (invalidate); None for delete.")


class ListOut(BaseModel):
    records: list[RecordOut]
    next_cursor: str | None = Field(description="Pass it as `cursor` for the next page; None at the end.")


_FROM_SCOPE = frozenset({"user", "agent", "session"})
_FROM_UTILITY = frozenset({"q", "n_shown"})


def _out(record: MemoryRecord) -> dict[str, Any]:
    """:class:`RecordOut`'s fields, read from the record, its scope or its learned utility."""

    def source(field: str) -> Any:
        if field in _FROM_SCOPE:
            return record.scope
        return record.utility if field in _FROM_UTILITY else record

    return {field: getattr(source(field), field) for field in RecordOut.model_fields}


def _tool_error(exc: MemqError) -> ToolError:
    return ToolError(f"{exc.code}: {exc}")


def build_server(resolve: Resolver) -> MCPServer:
    """The MCP server with memq's five tools; ``resolve`` says which memory and principal a call uses."""
    # the SDK configures root logging at this level (when nothing else has); keep it to warnings
    server = MCPServer("memq", instructions=INSTRUCTIONS, version=_version(), log_level="WARNING")

    def call(ctx: Context, required: str, fn: Callable[[Memory, Principal], Any]) -> Any:
        mem, principal = resolve(ctx, required)
        try:
            return fn(mem, principal)
        except MemqError as exc:
            raise _tool_error(exc) from exc

    @server.tool(name="remember", title="Remember")
    def remember(
        ctx: Context,
        text: Annotated[str, Field(description="The memory: a fact, an experience, a note.")],
        kind: Annotated[str, Field(min_length=1, max_length=64)] = "fact",
        metadata: Annotated[dict[str, Any] | None, Field(description="Filterable JSON fields.")] = None,
        user: Name = None,
        agent: Name = None,
        session: Name = None,
    ) -> RecordOut:
        """Store a memory (one text) in your tenant, optionally for a user / agent / session."""
        return call(
            ctx,
            "write",
            lambda mem, p: RecordOut(
                **_out(mem.add(text, scope=p.scope(user, agent, session), kind=kind, metadata=metadata))
            ),
        )

    @server.tool(name="recall", title="Recall")
    def recall(
        ctx: Context,
        query: Annotated[str, Field(description="What to look for.")],
        k: Annotated[int, Field(ge=1, le=MAX_K)] = 5,
        user: Name = None,
        agent: Name = None,
        session: Name = None,
        kinds: Annotated[list[str] | None, Field(max_length=50)] = None,
        filters: Annotated[
            dict[str, Any] | None, Field(description='memq filter JSON, e.g. {"metadata.topic": "travel"}.')
        ] = None,
        policy: Annotated[
            Literal["similarity", "memrl", "memento_q", "memq"] | None,
            Field(description="A learned policy that picks the k (default: the hybrid dense + BM25 recipe)."),
        ] = None,
    ) -> RecallOut:
        """Search memories (hybrid dense + BM25, or a learned policy). Returns a retrieval_id for feedback."""

        def run(mem: Memory, p: Principal) -> RecallOut:
            result = mem.search(
                query, scope=p.scope(user, agent, session), k=k, kinds=kinds, filters=filters, policy=policy
            )
            hits = [HitOut(**_out(h.record), rank=h.rank, score=h.score) for h in result.hits]
            return RecallOut(retrieval_id=result.id, policy=result.policy, hits=hits)

        return call(ctx, "read", run)

    @server.tool(name="feedback", title="Feedback")
    def feedback(
        ctx: Context,
        retrieval_id: Annotated[str, Field(min_length=1, max_length=100)],
        reward: Annotated[float, Field(allow_inf_nan=False, description="e.g. 1 = helped, 0 = did not.")],
        used: Annotated[
            list[str] | None, Field(max_length=MAX_K, description="Ids of the recalled memories you used.")
        ] = None,
        credit: Literal["shown", "used", "rank"] | None = None,
    ) -> FeedbackOut:
        """Report how a recall went; the shown memories' utility learns from the reward."""

        def run(mem: Memory, p: Principal) -> FeedbackOut:
            fb = mem.feedback(retrieval_id, reward, used=used, credit=credit, scope=p.scope())
            return FeedbackOut(
                retrieval_id=retrieval_id,
                reward=fb.reward,
                credit=fb.credit,
                count=fb.count,
                credits=fb.credits,
            )

        return call(ctx, "write", run)

    @server.tool(name="forget", title="Forget")
    def forget(
        ctx: Context,
        record_id: Annotated[str, Field(min_length=1, max_length=100)],
        mode: Annotated[
            Literal["delete", "invalidate"],
            Field(description="delete: hide it (history kept); invalidate: it no longer holds in the world."),
        ] = "delete",
        reason: Annotated[str | None, Field(max_length=1000)] = None,
    ) -> ForgetOut:
        """Forget a memory: soft-delete it, or end its validity (both keep its history)."""

        def run(mem: Memory, p: Principal) -> ForgetOut:
            if mode == "delete":
                mem.delete(record_id, scope=p.scope(), reason=reason, actor="mcp")
                return ForgetOut(record_id=record_id, mode=mode, version=None)
            new = mem.invalidate(record_id, scope=p.scope(), reason=reason, actor="mcp")
            return ForgetOut(record_id=record_id, mode=mode, version=new.version)

        return call(ctx, "write", run)

    @server.tool(name="list", title="List memories")
    def list_memories(
        ctx: Context,
        user: Name = None,
        agent: Name = None,
        session: Name = None,
        kind: Annotated[str | None, Field(min_length=1, max_length=64)] = None,
        cursor: Annotated[str | None, Field(max_length=200)] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LIST)] = 20,
    ) -> ListOut:
        """List memories in creation order, one page at a time."""

        def run(mem: Memory, p: Principal) -> ListOut:
            page = mem.list(
                scope=p.scope(user, agent, session),
                kinds=[kind] if kind else None,
                cursor=cursor,
                limit=limit,
            )
            return ListOut(records=[RecordOut(**_out(r)) for r in page.records], next_cursor=page.next_cursor)

        return call(ctx, "read", run)

    return server


def _check(principal: Principal, required: str) -> Principal:
    if not principal.has(required):
        raise ToolError(
            f"forbidden: this key lacks the {required!r} scope (it has {sorted(principal.scopes)})"
        )
    return principal


# -- stdio ---------------------------------------------------------------------------------------------
def fixed_resolver(
    memory: Memory, tenant: str, scopes: frozenset[str] = frozenset(("read", "write"))
) -> Resolver:
    """One memory and one tenant for every call (stdio: the process's own --db and --tenant)."""
    principal = Principal(tenant=tenant, scopes=scopes)

    def resolve(ctx: Context, required: str) -> tuple[Memory, Principal]:
        return memory, _check(principal, required)

    return resolve


def run_stdio(memory: Memory, tenant: str, *, read_only: bool = False) -> None:
    """Serve MCP over stdin/stdout until the client closes it."""
    scopes = frozenset(("read",)) if read_only else frozenset(("read", "write"))
    build_server(fixed_resolver(memory, tenant, scopes)).run("stdio")


# -- streamable HTTP inside memq serve -----------------------------------------------------------------
class _KeyGate:
    """ASGI: authenticate the request like REST does; refuse with a problem, or pass the principal on
    to the SDK's transport (``inner``: set while the app's lifespan runs the session manager)."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.inner: StreamableHTTPASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path")
        if self.inner is None:
            detail = "the MCP endpoint runs inside the app's lifespan, which has not started"
            await problem(503, "service_unavailable", detail, instance=path)(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        client = scope.get("client")
        host = client[0] if client else None
        try:
            principal = await anyio.to_thread.run_sync(
                lambda: authenticate(self.state, headers, client_host=host)
            )
        except AuthError as err:
            await problem(err.status, err.code, err.detail, instance=path, headers=err.headers)(
                scope, receive, send
            )
            return
        scope[PRINCIPAL_KEY] = principal
        await self.inner(scope, receive, send)


def http_resolver(state: Any) -> Resolver:
    """The app's memory, and the principal the gate left on the HTTP request of this call."""

    def resolve(ctx: Context, required: str) -> tuple[Memory, Principal]:
        request = ctx.request_context.request
        principal = None if request is None else request.scope.get(PRINCIPAL_KEY)
        if not isinstance(principal, Principal):  # never expected: the gate runs before every request
            raise ToolError("unauthorized: no authenticated caller on this request")
        return state.memory, _check(principal, required)

    return resolve


def mount(app: FastAPI) -> None:
    """Serve MCP at ``/mcp`` of the memq app (called by :func:`memq.server.app.create_app`)."""
    state = app.state
    server = build_server(http_resolver(state))
    # With keys, the key is what protects the endpoint. In dev mode (no keys, loopback only) a web
    # page could reach it through DNS rebinding, so the Host / Origin headers must be loopback ones.
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=not state.settings.auth,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    gate = _KeyGate(state)
    for path in (PATH, PATH + "/"):
        app.router.add_route(path, gate, include_in_schema=False)  # type: ignore[arg-type]

    @asynccontextmanager
    async def run_manager(_: FastAPI) -> AsyncIterator[None]:
        # a session manager runs once, so each lifespan (a test client may enter several) gets its own
        server.streamable_http_app(stateless_http=True, json_response=True, transport_security=security)
        manager = server.session_manager
        async with manager.run():
            gate.inner = StreamableHTTPASGIApp(manager)
            try:
                yield
            finally:
                gate.inner = None

    state.lifespan_hooks.append(run_manager)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("memq")
    except Exception:  # pragma: no cover - not installed
        return "0"
