"""The REST API (``/v1``): every :class:`memq.Memory` operation, scoped to the key's tenant.

Handlers are plain ``def``: FastAPI runs them in its threadpool, where the sync ``Memory`` blocks
on SQLite/PostgreSQL and the embedder (which serialises MiniLM calls on one torch thread).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from memq.errors import FilterError
from memq.memory import Memory
from memq.ops.transfer import export_header, export_line
from memq.retrieve.pipeline import MAX_K
from memq.server.auth import Principal, get_principal, require
from memq.server.deps import get_memory
from memq.server.models import (
    MAX_LIMIT,
    BatchAddIn,
    BatchAddOut,
    FeedbackIn,
    InvalidateIn,
    IsoTime,
    ItemIn,
    PurgeIn,
    PurgeOut,
    ScopeIn,
    SearchIn,
    TenantStats,
    UpdateIn,
    WhoAmI,
)
from memq.server.problems import problem_responses
from memq.types import (
    FeedbackRecord,
    HistoryEvent,
    LoggedRetrieval,
    MemoryRecord,
    Page,
    Retrieval,
    Scope,
)

_PROBLEMS = problem_responses(
    {
        400: "Invalid input (memq error code)",
        401: "Missing, unknown or revoked API key",
        403: "The key lacks the scope",
        404: "Not found in this tenant",
        413: "Request body too large",
        422: "Request does not match the schema",
        429: "Rate limited (see Retry-After)",
        503: "Store unavailable",
    }
)


router = APIRouter(prefix="/v1", responses=_PROBLEMS)

Read = Annotated[Principal, Depends(require("read"))]
Write = Annotated[Principal, Depends(require("write"))]
Admin = Annotated[Principal, Depends(require("admin"))]
Mem = Annotated[Memory, Depends(get_memory)]
RecordIdPath = Annotated[str, Path(min_length=1, max_length=100, description="Record id.")]


def _scope(p: Principal, s: ScopeIn | None) -> Scope:
    return p.scope() if s is None else p.scope(s.user, s.agent, s.session)


def _bare(record: MemoryRecord) -> MemoryRecord:
    """A record as the API returns it: without its vector (large, and not useful to clients)."""
    return record if record.embedding is None else record.model_copy(update={"embedding": None})


# -- write ----------------------------------------------------------------------------------------------
@router.post("/memories", status_code=status.HTTP_201_CREATED, tags=["memories"], summary="Add one memory")
def add(body: ItemIn, p: Write, mem: Mem) -> MemoryRecord:
    record = mem.add(body.as_new(), scope=_scope(p, body.scope), actor=p.key_id)
    return _bare(record)


@router.post(
    "/memories/batch",
    status_code=status.HTTP_201_CREATED,
    tags=["memories"],
    summary="Add a batch (all or nothing)",
)
def add_batch(body: BatchAddIn, p: Write, mem: Mem) -> BatchAddOut:
    default = _scope(p, body.scope)
    items = [dict(i.as_new(), scope=_scope(p, i.scope)) if i.scope else i.as_new() for i in body.items]
    records = mem.add(items, scope=default, actor=p.key_id)
    return BatchAddOut(records=[_bare(r) for r in records])


@router.patch("/memories/{record_id}", tags=["memories"], summary="Update: write a new version")
def update(record_id: RecordIdPath, body: UpdateIn, p: Write, mem: Mem) -> MemoryRecord:
    record = mem.update(record_id, scope=p.scope(), reason=body.reason, actor=p.key_id, **body.changes())
    return _bare(record)


@router.post("/memories/{record_id}/invalidate", tags=["memories"], summary="End world-time validity")
def invalidate(record_id: RecordIdPath, body: InvalidateIn, p: Write, mem: Mem) -> MemoryRecord:
    record = mem.invalidate(record_id, scope=p.scope(), at=body.at, reason=body.reason, actor=p.key_id)
    return _bare(record)


@router.delete(
    "/memories/{record_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["memories"], summary="Soft delete"
)
def delete(
    record_id: RecordIdPath,
    p: Write,
    mem: Mem,
    reason: Annotated[str | None, Query(max_length=1000)] = None,
) -> Response:
    mem.delete(record_id, scope=p.scope(), reason=reason, actor=p.key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/purge", tags=["memories"], summary="Erase records for good (admin)")
def purge(body: PurgeIn, p: Admin, mem: Mem) -> PurgeOut:
    return PurgeOut(purged=mem.purge(body.ids, scope=p.scope()))


# -- read -----------------------------------------------------------------------------------------------
@router.get("/memories/{record_id}", tags=["memories"], summary="Get a record's latest version")
def get(
    record_id: RecordIdPath, p: Read, mem: Mem, include_deleted: Annotated[bool, Query()] = False
) -> MemoryRecord:
    return _bare(mem.get(record_id, scope=p.scope(), include_deleted=include_deleted))


def _filters(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise FilterError(f"filters must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise FilterError("filters must be a JSON object")
    return value


@router.get("/memories", tags=["memories"], summary="List records (cursor pagination)")
def list_(
    p: Read,
    mem: Mem,
    cursor: Annotated[
        str | None, Query(max_length=200, description="next_cursor of the previous page")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    kind: Annotated[list[str] | None, Query(max_length=50)] = None,
    user: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    agent: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    session: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    as_of: Annotated[IsoTime | None, Query(description="System time (ISO 8601)")] = None,
    valid_at: Annotated[IsoTime | None, Query(description="World time (ISO 8601)")] = None,
    include_invalidated: bool = False,
    filters: Annotated[str | None, Query(max_length=10_000, description="JSON filter, as in search")] = None,
) -> Page:
    page = mem.list(
        scope=p.scope(user, agent, session),
        filters=_filters(filters),
        kinds=kind,
        cursor=cursor,
        limit=limit,
        as_of=as_of,
        valid_at=valid_at,
        include_invalidated=include_invalidated,
    )
    return Page(records=[_bare(r) for r in page.records], next_cursor=page.next_cursor)


@router.get("/memories/{record_id}/history", tags=["memories"], summary="Every version and event")
def history(record_id: RecordIdPath, p: Read, mem: Mem) -> list[HistoryEvent]:
    events = mem.history(record_id, scope=p.scope())
    return [e if e.record is None else e.model_copy(update={"record": _bare(e.record)}) for e in events]


@router.post("/search", tags=["search"], summary="Search (hybrid, or a learned policy)")
def search(body: SearchIn, p: Read, mem: Mem) -> Retrieval:
    result = mem.search(
        body.query,
        scope=_scope(p, body.scope),
        k=body.k,
        filters=body.filters,
        kinds=body.kinds,
        as_of=body.as_of,
        valid_at=body.valid_at,
        include_invalidated=body.include_invalidated,
        explain=body.explain,
        policy=body.policy,
        **body.options(),
    )
    hits = [h.model_copy(update={"record": _bare(h.record)}) for h in result.hits]
    return result.model_copy(update={"hits": hits})


@router.get("/retrievals/{retrieval_id}", tags=["feedback"], summary="A logged retrieval")
def retrieval(retrieval_id: RecordIdPath, p: Read, mem: Mem) -> LoggedRetrieval:
    return mem.retrieval(retrieval_id, scope=p.scope()).model_copy(update={"query_vector": None})


@router.post(
    "/retrievals/{retrieval_id}/feedback", tags=["feedback"], summary="Report the reward of a retrieval"
)
def feedback(retrieval_id: RecordIdPath, body: FeedbackIn, p: Write, mem: Mem) -> FeedbackRecord:
    return mem.feedback(
        retrieval_id,
        body.reward,
        used=body.used,
        credit=body.credit,
        accumulate=body.accumulate,
        scope=p.scope(),
    )


@router.get(
    "/export",
    tags=["admin"],
    summary="Export the tenant as JSONL (memq export format)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-ndjson": {}}, "description": "memq export, one JSON per line"}
    },
)
def export(p: Read, mem: Mem) -> StreamingResponse:
    tenant = p.tenant
    header = export_header(mem.store.embedding_space())  # fails here (a problem) if the store is down

    def lines() -> Iterator[str]:
        yield header + "\n"
        for row in mem.store.export_rows(tenant):
            yield export_line(row) + "\n"

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="memq-{tenant}.jsonl"'},
    )


@router.get("/stats", tags=["admin"], summary="Counts of this tenant")
def stats(p: Read, mem: Mem) -> TenantStats:
    # not the store's location (a path or DSN) nor its size (it counts every tenant)
    return TenantStats.model_validate(mem.stats(scope=p.scope()).model_dump())


@router.get("/whoami", tags=["admin"], summary="The tenant and scopes of this key")
def whoami(p: Annotated[Principal, Depends(get_principal)]) -> WhoAmI:
    return WhoAmI(tenant=p.tenant, scopes=sorted(p.scopes), key_id=p.key_id)


__all__ = ["MAX_K", "router"]
