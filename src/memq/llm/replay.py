"""A real OpenAI-compatible HTTP server on loopback that replays scripted responses.

For tests and benchmarks of code that calls an LLM: only the model is replaced, by answers the caller
scripts; the client, the SDK and HTTP are real. memq's own tests use it through the ``llm_server``
fixture (``tests/llm_replay.py``); ``benchmarks/llm_cost.py`` uses it to record the prompts of the
``reconcile`` manager.

    with ReplayServer() as server:
        server.script(malformed('{"facts": ["Alice'), answer({"facts": ["Alice lives in Berlin"]}))
        llm = server.llm()                 # an OpenAICompatLLM pointed at the server
        ...
        assert "not valid JSON" in server.requests[1].messages[-1]["content"]

Replies are served in order, one per ``POST /v1/chat/completions``. Instead of (or after) a script,
``server.respond_with(fn)`` answers dynamically: ``fn(request: Recorded)`` returns a
:class:`Reply`, a ``dict``/pydantic model (sent as JSON content) or a ``str`` (sent verbatim). With
neither a scripted reply nor a responder left, the server answers HTTP 400 "replay script
exhausted" (a non-retryable error, so an unexpected call fails loudly).

Every request is recorded (:attr:`ReplayServer.requests`: body, messages, ``response_format``,
``max_tokens``), and every reply carries a ``usage`` block: the scripted token counts, or a
deterministic estimate (one token per word or punctuation mark) of the prompt and the answer.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pydantic import BaseModel

__all__ = [
    "Recorded",
    "ReplayServer",
    "Reply",
    "answer",
    "count_tokens",
    "empty",
    "http_error",
    "malformed",
    "replies_from",
    "slow",
    "truncated",
]

_TOKEN = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """The server's token estimate: one token per word or punctuation mark."""
    return len(_TOKEN.findall(text or ""))


@dataclass
class Reply:
    """One scripted response.

    ``status`` other than 200 sends an OpenAI-style error body with ``error``; ``delay`` seconds are
    waited before answering (for timeouts); ``raw_body`` replaces the whole JSON body.
    """

    content: str | None = ""
    finish_reason: str = "stop"
    status: int = 200
    error: str = "scripted error"
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    raw_body: Any = None


def answer(value: Any, **kw: Any) -> Reply:
    """A successful answer: a dict/list/pydantic model is JSON-encoded, a str is sent as is."""
    if isinstance(value, BaseModel):
        content = value.model_dump_json()
    elif isinstance(value, str):
        content = value
    else:
        content = json.dumps(value)
    return Reply(content=content, **kw)


def malformed(text: str = '{"facts": ["unterminated', **kw: Any) -> Reply:
    """An answer that is not valid JSON (finish_reason stays ``stop``)."""
    return Reply(content=text, **kw)


def empty(**kw: Any) -> Reply:
    """An empty answer (``content == ""``)."""
    return Reply(content="", **kw)


def truncated(text: str = '{"facts": ["Alice lives in', **kw: Any) -> Reply:
    """An answer cut off at the token limit (``finish_reason == "length"``)."""
    return Reply(content=text, finish_reason="length", **kw)


def http_error(status: int = 500, message: str = "scripted server error") -> Reply:
    return Reply(content=None, status=status, error=message)


def slow(seconds: float, reply: Reply | None = None) -> Reply:
    """``reply`` (default: an empty JSON object) after ``seconds`` — longer than a client timeout."""
    base = reply or answer({})
    base.delay = seconds
    return base


@dataclass
class Recorded:
    """A request the server received."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages") or [])

    @property
    def response_format(self) -> dict[str, Any] | None:
        return self.body.get("response_format")

    @property
    def max_tokens(self) -> int | None:
        return self.body.get("max_tokens")

    @property
    def prompt_text(self) -> str:
        """All message contents joined (what a prompt-size measurement counts)."""
        return "\n".join(str(m.get("content") or "") for m in self.messages)


Responder = Callable[[Recorded], "Reply | BaseModel | dict[str, Any] | list[Any] | str"]


class ReplayServer:
    """The server. Start with :meth:`start` (the fixture does); ``url`` is the ``base_url``."""

    def __init__(self, model: str = "replay-model") -> None:
        self.model = model
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._responder: Responder | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.in_flight = 0
        self.peak_in_flight = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- scripting ---------------------------------------------------------------------------------
    def script(self, *replies: Reply) -> ReplayServer:
        """Queue replies, served in order (appends to what is queued)."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def load(self, path: str | Path) -> ReplayServer:
        """Queue replies recorded in a JSONL file, one :class:`Reply` field dict per line."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return self.script(*(Reply(**json.loads(line)) for line in lines if line.strip()))

    def respond_with(self, responder: Responder | None) -> ReplayServer:
        """Answer requests (after the scripted queue is empty) by calling ``responder(request)``."""
        self._responder = responder
        return self

    @property
    def pending(self) -> int:
        """Scripted replies not served yet."""
        with self._lock:
            return len(self._queue)

    def llm(self, **kw: Any) -> Any:
        """An :class:`~memq.llm.client.OpenAICompatLLM` for this server, with test-speed backoff."""
        from memq.llm.client import OpenAICompatLLM

        kw.setdefault("backoff", 0.01)
        kw.setdefault("timeout", 10.0)
        return OpenAICompatLLM(self.model, base_url=self.url, api_key="test-key", **kw)

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ReplayServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model"}]})
                else:
                    self._send(404, _error_body(f"no route {self.path}", 404))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    self._send(400, _error_body("request body is not JSON", 400))
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, _error_body(f"no route {self.path}", 404))
                    return
                rec = Recorded(self.path, body, {k.lower(): v for k, v in self.headers.items()})
                status, payload, delay = server._serve(rec)
                with server._lock:
                    server.in_flight += 1
                    server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
                try:
                    if delay > 0 and server._closing.wait(delay):
                        return
                    self._send(status, payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

            def _send(self, status: int, payload: Any) -> None:
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="llm-replay", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- answering ---------------------------------------------------------------------------------
    def _serve(self, rec: Recorded) -> tuple[int, Any, float]:
        with self._lock:
            self.requests.append(rec)
            reply = self._queue.popleft() if self._queue else None
        if reply is None and self._responder is not None:
            out = self._responder(rec)
            reply = out if isinstance(out, Reply) else answer(out)
        if reply is None:
            return 400, _error_body("replay script exhausted: the test sent an unexpected request", 400), 0.0
        if reply.status != 200:
            return reply.status, _error_body(reply.error, reply.status), reply.delay
        if reply.raw_body is not None:
            return 200, reply.raw_body, reply.delay
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(count_tokens(str(m.get("content") or "")) + 4 for m in rec.messages)
            if rec.response_format:
                prompt += count_tokens(json.dumps(rec.response_format))
        completion = reply.completion_tokens
        if completion is None:
            completion = count_tokens(reply.content or "")
        body = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": rec.body.get("model", self.model),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "finish_reason": reply.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
        return 200, body, reply.delay


def _error_body(message: str, status: int) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def replies_from(items: Iterable[Any]) -> list[Reply]:
    """Turn plain answers (dicts, models, strings) into :class:`Reply` objects."""
    return [item if isinstance(item, Reply) else answer(item) for item in items]
