"""Request body size limit, as a pure ASGI middleware (413 problem before the body is parsed).

A ``Content-Length`` over the limit is refused at once; a chunked body is counted as it streams
in and refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from memq.server.problems import PROBLEM_JSON


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once the body passes the limit. An HTTPException, so that FastAPI's
    body parsing re-raises it (other errors become "error parsing the body", 400) and the problem
    handler answers 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            413, f"the request body is over the limit of {max_bytes:,} bytes; split it (e.g. smaller batches)"
        )


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return (
            f"the request body is over the limit of {self.max_bytes:,} bytes; split it (e.g. smaller batches)"
        )

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body: dict[str, Any] = {
            "type": "urn:memq:problem:payload_too_large",
            "title": "Request Entity Too Large",
            "status": 413,
            "detail": self._detail(),
            "code": "payload_too_large",
            "instance": scope.get("path"),
        }
        data = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(data)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, send)
                    return
        seen = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(scope, send)
