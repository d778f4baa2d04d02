"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

A problem has ``type`` (``urn:memq:problem:<code>``), ``title``, ``status``, ``detail``,
``instance`` (the request path) and memq's stable ``code`` — the ``code`` of the
:class:`memq.errors.MemqError` raised, or one of the HTTP-level codes below.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException

from memq.errors import InvalidInputError, MemqError

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("memq.server")

# memq error code -> HTTP status (InvalidInputError subclasses not listed here are 400)
STATUS_BY_CODE: dict[str, int] = {
    "not_found": 404,
    "expired": 410,
    "conflict": 409,
    "dimension_mismatch": 409,
    "store_error": 503,
    "embedding_error": 503,
    "llm_error": 502,
    "llm_invalid_output": 502,
    "llm_timeout": 504,
    # HTTP-level codes
    "invalid_request": 422,
    "invalid_body": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "route_not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "internal_error": 500,
}
_HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
_HTTP_CODES = {
    400: "invalid_body",
    404: "route_not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


def problem_responses(descriptions: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A router's ``responses=`` for OpenAPI: each status a :class:`Problem` as problem+json, described."""
    return {
        code: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": desc}
        for code, desc in descriptions.items()
    }


def status_for(exc: MemqError) -> int:
    if exc.code in STATUS_BY_CODE:
        return STATUS_BY_CODE[exc.code]
    return 400 if isinstance(exc, InvalidInputError) else 500


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"urn:memq:problem:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if instance is not None:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=dict(headers or {}))


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


def _summary(errors: list[dict[str, Any]]) -> str:
    parts = [f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:3]]
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more


def _allowed_methods(request: Request, fallback: str | None) -> list[str]:
    """The methods the OpenAPI spec documents for this path (Starlette's 405 names only the first
    matching route's). A literal path wins over a template: ``/v1/memories/batch`` allows POST,
    although GET would reach ``/v1/memories/{record_id}`` with the id "batch"."""
    literal: set[str] = set()
    templated: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        regex = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, request.url.path):
            methods = {m.upper() for m in operations if m in _HTTP_METHODS}
            (templated if "{" in template else literal).update(methods)
    allowed = literal or templated
    if not allowed and fallback:
        return [m.strip() for m in fallback.split(",") if m.strip()]
    return sorted(allowed)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error through :func:`problem`: memq errors, validation, HTTP errors, crashes."""

    @app.exception_handler(MemqError)
    async def _memq(request: Request, exc: MemqError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.warning("%s %s: %s (%s)", request.method, request.url.path, exc, exc.code)
        return problem(status, exc.code, str(exc), instance=request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(exc)
        return problem(
            422,
            "invalid_request",
            _summary(errors) or "invalid request",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            allowed = _allowed_methods(request, headers.get("Allow"))
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}"
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "the request body could not be parsed: send UTF-8 encoded JSON"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs or /openapi.json"
        return problem(exc.status_code, code, detail, instance=request.url.path, headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(
            500, "internal_error", "internal server error; see the server log", instance=request.url.path
        )
