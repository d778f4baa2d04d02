"""The dashboard's routes: the page and its assets (no auth), and the JSON it needs beyond /v1.

Everything else the page shows comes from the REST API (``/v1``) with the key the user pasted.
The JSON routes here take the tenant from the key, like /v1, through the same ``require``.
"""

from __future__ import annotations

import pathlib
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from pydantic import BaseModel

from memq.learn import LEARNERS, make_learner
from memq.memory import Memory
from memq.ops.learning import LearnerStatus
from memq.server.auth import Principal, require
from memq.server.dashboard.reports import MEDIA_TYPES, Report, list_reports, report_path, reports_dir
from memq.server.dashboard.utility import UtilitySeries, q_series
from memq.server.deps import get_memory
from memq.server.problems import problem_responses
from memq.server.routes import RecordIdPath
from memq.types import FeedbackRecord, LoggedRetrieval, ShownEntry

STATIC = pathlib.Path(__file__).parent / "static"
PAGE = 1000
MAX_ROWS = 500

Read = Annotated[Principal, Depends(require("read"))]
Mem = Annotated[Memory, Depends(get_memory)]

page_router = APIRouter(prefix="/ui", include_in_schema=False)
_PROBLEMS = problem_responses(
    {
        401: "Missing, unknown or revoked API key",
        403: "The key lacks the read scope",
        404: "Not found in this tenant (or not a listed report)",
        422: "Request does not match the schema",
        429: "Rate limited (see Retry-After)",
        503: "Store unavailable",
    }
)
api_router = APIRouter(prefix="/ui/api", tags=["dashboard"], responses=_PROBLEMS)


class RetrievalRow(BaseModel):
    """One logged search as the dashboard lists it (without the query vector and candidate pool)."""

    id: str
    created_at: datetime
    query: str
    policy: str
    k: int
    pool_size: int
    shown: list[ShownEntry]
    feedback: FeedbackRecord | None


class RetrievalLog(BaseModel):
    rows: list[RetrievalRow]  # newest first
    scanned: int  # logged retrievals read to find them


def _logs(mem: Memory, tenant: str, *, with_feedback: bool) -> Iterator[LoggedRetrieval]:
    """Every logged retrieval of ``tenant``, oldest first (pages by creation time, like Memory's replay)."""
    since: datetime | None = None
    seen: set[str] = set()
    while True:
        batch = mem.store.list_retrievals(tenant, since=since, limit=PAGE, with_feedback=with_feedback)
        fresh = [b for b in batch if b.id not in seen]
        yield from fresh
        seen.update(b.id for b in fresh)
        if len(batch) < PAGE or not fresh:
            return
        since = batch[-1].created_at


@page_router.get("")
def page_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@page_router.get("/", response_class=HTMLResponse)
def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


@api_router.get("/retrievals", summary="The retrieval log, newest first, with feedback")
def retrievals(
    p: Read,
    mem: Mem,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 50,
    feedback_only: bool = False,
) -> RetrievalLog:
    rows: deque[LoggedRetrieval] = deque(maxlen=limit)
    scanned = 0
    for log in _logs(mem, p.tenant, with_feedback=feedback_only):
        rows.append(log)
        scanned += 1
    return RetrievalLog(
        rows=[
            RetrievalRow(
                id=r.id,
                created_at=r.created_at,
                query=r.query,
                policy=r.policy,
                k=r.k,
                pool_size=len(r.pool),
                shown=r.shown,
                feedback=r.feedback,
            )
            for r in reversed(rows)
        ],
        scanned=scanned,
    )


@api_router.get(
    "/memories/{record_id}/utility", summary="A record's q after each feedback, rebuilt from the log"
)
def utility(record_id: RecordIdPath, p: Read, mem: Mem) -> UtilitySeries:
    record = mem.get(record_id, scope=p.scope(), include_deleted=True)
    params = mem.config.learner_params
    return q_series(
        record,
        _logs(mem, p.tenant, with_feedback=True),
        lambda name: make_learner(name, **params.get(name, {})),
    )


class LearningView(BaseModel):
    """The Learning panel: which scorer ranks this tenant's searches, and what a learner has learned."""

    learners: list[str]  # the known learners: the values ``?learner=`` takes
    default: str | None  # the config's learner, which searches without ``policy=`` train (None: none)
    promotion: str  # the config's promotion mode: guarded | always | never
    min_searches: int  # guarded: logged searches a switch needs
    alpha: float  # guarded: one-sided level of the bound on the difference
    window: int  # the curve's rolling mean covers this many feedbacks
    status: LearnerStatus | None  # None only when no learner is asked for and none is configured


@api_router.get(
    "/learning",
    summary="Which scorer ranks this tenant's searches; a learner's promotion estimate and learning curve",
    responses=problem_responses({400: "Unknown learner (the detail lists the known ones)"}),
)
def learning(
    p: Read,
    mem: Mem,
    learner: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=64,
            description=f"One of {', '.join(LEARNERS)} (default: the config's learner).",
        ),
    ] = None,
    window: Annotated[
        int, Query(ge=1, le=10_000, description="Feedbacks in the curve's rolling mean.")
    ] = 100,
) -> LearningView:
    cfg = mem.config.learning
    name = learner or cfg.learner
    return LearningView(
        learners=list(LEARNERS),
        default=cfg.learner,
        promotion=cfg.promotion,
        min_searches=cfg.min_searches,
        alpha=cfg.alpha,
        window=window,
        status=None if name is None else mem.learning_status(name, scope=p.scope(), window=window),
    )


@api_router.get("/reports", summary="Benchmark reports in the server's reports directory")
def reports(request: Request, p: Read) -> list[Report]:
    return list_reports(reports_dir(request.app.state.settings))


@api_router.get(
    "/reports/{name}",
    summary="One benchmark report file",
    response_class=FileResponse,
    responses={200: {"content": {m.split(";")[0]: {} for m in MEDIA_TYPES.values()}}},
)
def report(
    name: Annotated[str, Path(min_length=1, max_length=200)], request: Request, p: Read
) -> FileResponse:
    path, media = report_path(reports_dir(request.app.state.settings), name)
    return FileResponse(path, media_type=media, headers={"X-Content-Type-Options": "nosniff"})
