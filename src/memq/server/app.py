"""The FastAPI app of ``memq serve``: REST API, problem+json errors, keys, limits, health.

``create_app(settings)`` builds it in-process (tests, embedding in another app);
``app_from_env()`` is the uvicorn ``--factory`` entry each worker process calls
(settings from ``MEMQ_SERVER_*``, see :mod:`memq.server.settings`).

Optional pieces mount themselves if their module exists: ``memq.server.dashboard.mount(app)`` and
``memq.server.mcp.mount(app)``. A piece that needs something running for the app's lifetime
appends an async context manager factory to ``app.state.lifespan_hooks``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from memq.memory import Memory
from memq.server.auth import AuthError
from memq.server.keys import KeyStore, open_key_store
from memq.server.limits import BodyLimitMiddleware
from memq.server.models import Health, Ready
from memq.server.problems import Problem, install_problem_handlers, problem
from memq.server.ratelimit import TokenBuckets
from memq.server.routes import router
from memq.server.settings import ServerSettings, limit_blas

log = logging.getLogger("memq.server")
OPTIONAL_PIECES = ("memq.server.dashboard", "memq.server.mcp")
LifespanHook = Callable[[FastAPI], AbstractAsyncContextManager[Any]]


def open_memory(settings: ServerSettings) -> Memory:
    """The process's Memory: the configured store, embedder and MemoryConfig file, and no default scope."""
    from memq.config import MemoryConfig
    from memq.embed import embedder_from_spec
    from memq.errors import InvalidInputError

    config = MemoryConfig.load(settings.config) if settings.config else None
    if config is not None and config.embedder and config.embedder != settings.embedder:
        raise InvalidInputError(
            f"the config file {settings.config} names the embedder {config.embedder!r} but the server runs "
            f"{settings.embedder!r}: run memq --embedder {config.embedder} serve ..."
        )
    return Memory(settings.db, embedder=embedder_from_spec(settings.embedder), config=config)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for hook in list(app.state.lifespan_hooks):
            await stack.enter_async_context(hook(app))
        try:
            yield
        finally:
            for close in reversed(app.state.closers):
                close()


def _mount_optional(app: FastAPI) -> None:
    for name in OPTIONAL_PIECES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # the piece exists but something it imports is missing
                raise
            continue
        mount = getattr(module, "mount", None)
        if callable(mount):
            mount(app)


def create_app(
    settings: ServerSettings | None = None,
    *,
    memory: Memory | None = None,
    key_store: KeyStore | None = None,
    mount_optional: bool = True,
) -> FastAPI:
    """The memq service. ``memory`` / ``key_store`` default to ones opened from ``settings.db``;
    objects passed in are not closed at shutdown (their owner closes them)."""
    settings = settings or ServerSettings()
    app = FastAPI(
        title="memq",
        summary="Memory for LLM agents that learns which memories help.",
        description="Every error is application/problem+json (RFC 9457) with a stable `code`. "
        "Authenticate with `Authorization: Bearer <API key>`; the tenant is the key's.",
        version=_version(),
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.closers = []
    app.state.lifespan_hooks = []
    if memory is None:
        memory = open_memory(settings)
        app.state.closers.append(memory.close)
    if key_store is None:
        key_store = open_key_store(settings.db)
        app.state.closers.append(key_store.close)
    app.state.memory = memory
    app.state.keys = key_store
    app.state.rate_limiter = TokenBuckets(settings.rate_per_s, settings.rate_burst)

    install_problem_handlers(app)

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> JSONResponse:
        return problem(exc.status, exc.code, exc.detail, instance=request.url.path, headers=exc.headers)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The store is reachable",
        response_model=Ready,
        responses={503: {"model": Problem, "content": {"application/problem+json": {}}}},
    )
    def readyz(request: Request) -> Ready | JSONResponse:
        mem: Memory = request.app.state.memory
        try:
            mem.store.embedding_space()  # one small query
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return problem(503, "store_error", f"the store is not reachable: {exc}", instance="/readyz")
        return Ready(status="ready", backend=mem.store.backend)

    app.include_router(router)
    if mount_optional:
        _mount_optional(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``memq.server.app:app_from_env``): settings from ``MEMQ_SERVER_*``; a worker
    process of ``memq serve``, so it also caps BLAS's threads (:func:`limit_blas`)."""
    settings = ServerSettings.from_env()
    limit_blas(settings.blas_threads)
    return create_app(settings)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("memq")
    except Exception:  # pragma: no cover - not installed
        return "0"
