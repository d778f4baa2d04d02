"""Who is calling: API key → :class:`Principal` (tenant + scopes), and scope checks.

The tenant always comes from the key — request bodies have no tenant field — so a caller can only
ever name its own tenant. ``admin`` implies ``read`` and ``write``.

:func:`require` is the FastAPI dependency for routes; :func:`authenticate` applies the same rules
to anything else that receives HTTP headers (the MCP endpoint).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from memq.server.settings import is_loopback
from memq.types import Scope


@dataclass(frozen=True)
class Principal:
    tenant: str
    scopes: frozenset[str]
    key_id: str | None = None  # None in dev mode (--no-auth)

    def has(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def scope(self, user: str | None = None, agent: str | None = None, session: str | None = None) -> Scope:
        """The memq scope of a request: this principal's tenant, narrowed as the request asks."""
        return Scope(tenant=self.tenant, user=user, agent=agent, session=session)


class AuthError(Exception):
    """Authentication or authorisation failed: ``status`` 401, 403 or 429 with a problem ``code``."""

    def __init__(self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.headers = dict(headers or {})


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` (header names case-insensitive)."""
    lower = {k.lower(): v for k, v in headers.items()}
    auth = lower.get("authorization")
    if auth:
        kind, _, value = auth.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    value = lower.get("x-api-key")
    return value.strip() if value and value.strip() else None


def authenticate(
    state: Any, headers: Mapping[str, str], *, required: str | None = None, client_host: str | None = None
) -> Principal:
    """The principal of a request (``state`` is ``app.state``); raises :class:`AuthError`.

    Applies, in order: dev mode (loopback only) or key lookup (401), rate limit (429), scope (403).
    """
    settings = state.settings
    if not settings.auth:
        if client_host is not None and not is_loopback(client_host):
            raise AuthError(
                403, "forbidden", "this server runs without keys (--no-auth): loopback clients only"
            )
        principal = Principal(tenant=settings.dev_tenant, scopes=frozenset(("read", "write", "admin")))
        bucket = "dev"
    else:
        secret = presented_key(headers)
        challenge = {"WWW-Authenticate": 'Bearer realm="memq"'}
        if secret is None:
            raise AuthError(
                401,
                "unauthorized",
                "an API key is required: Authorization: Bearer <key> (memq keys create)",
                challenge,
            )
        key = state.keys.verify(secret)
        if key is None:
            raise AuthError(401, "unauthorized", "the API key is unknown or revoked", challenge)
        principal = Principal(tenant=key.tenant, scopes=frozenset(key.scopes), key_id=key.id)
        bucket = key.id
    wait = state.rate_limiter.take(bucket)
    if wait > 0:
        retry = state.rate_limiter.retry_after(wait)
        raise AuthError(
            429, "rate_limited", f"too many requests for this key; retry in {retry} s", {"Retry-After": retry}
        )
    if required is not None and not principal.has(required):
        raise AuthError(
            403, "forbidden", f"this key lacks the {required!r} scope (it has {sorted(principal.scopes)})"
        )
    return principal


async def get_principal(request: Request) -> Principal:
    """Dependency: the authenticated principal, no particular scope required."""
    return await _principal(request, None)


async def _principal(request: Request, required: str | None) -> Principal:
    cached = getattr(request.state, "principal", None)
    if cached is None:
        host = request.client.host if request.client else None
        state = request.app.state
        if getattr(state.keys, "local", False):  # a SQLite lookup takes microseconds: no thread hop
            cached = authenticate(state, request.headers, client_host=host)
        else:  # a database round trip: off the event loop
            cached = await run_in_threadpool(authenticate, state, request.headers, client_host=host)
        request.state.principal = cached
    if required is not None and not cached.has(required):
        raise AuthError(
            403, "forbidden", f"this key lacks the {required!r} scope (it has {sorted(cached.scopes)})"
        )
    return cached


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """Dependency factory: the principal, which must hold ``scope`` (read, write or admin)."""
    if scope not in ("read", "write", "admin"):
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(request: Request) -> Principal:
        return await _principal(request, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency
