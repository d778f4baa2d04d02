"""Structured calls to any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, llama.cpp server,
LiteLLM, ...) through the ``openai`` SDK with a ``base_url``.

>>> llm = OpenAICompatLLM(model="gpt-4o-mini")  # doctest: +SKIP
>>> llm.structured([{"role": "user", "content": "..."}], Facts, operation="extract")  # doctest: +SKIP

Output format (``response_format``):

* ``json_schema`` — the pydantic model's JSON schema as ``response_format={"type": "json_schema", ...}``
  (OpenAI, vLLM, recent Ollama and llama.cpp server);
* ``json_object`` — ``{"type": "json_object"}`` plus the schema in a system message;
* ``none`` — no ``response_format``; the schema goes in a system message only;
* ``auto`` (default) — ``json_schema``, stepping down to ``json_object`` then ``none`` (for the rest
  of this client's life) when the server answers 400/422 about the response format.

Whatever the format, the answer is parsed and validated here; a bad answer is re-asked with the
validation error shown (``retries``, default 2), then :class:`memq.errors.LLMOutputError`.
Transport failures (connection, 408/409/429/5xx, timeouts) are retried ``transport_retries`` times
with capped exponential backoff, then raise :class:`memq.errors.LLMError` /
:class:`memq.errors.LLMTimeoutError`; other HTTP errors raise at once. The SDK's own retries are off.
"""

from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Literal

from pydantic import BaseModel

from memq.errors import LLMError, LLMTimeoutError
from memq.llm.base import CallStats, Message
from memq.llm.structured import RawAnswer, StructuredLLM, check_retries, json_schema_of, schema_instruction

Format = Literal["auto", "json_schema", "json_object", "none"]
FORMATS: tuple[str, ...] = ("auto", "json_schema", "json_object", "none")
_STEP_DOWN = {"json_schema": "json_object", "json_object": "none"}
_RETRYABLE_STATUS = {408, 409, 425, 429}
_NAME_OK = re.compile(r"[^A-Za-z0-9_-]")
_FORMAT_HINT = re.compile(r"response_format|json_schema|json_object|schema|grammar", re.IGNORECASE)


class OpenAICompatLLM(StructuredLLM):
    """An :class:`memq.llm.base.LLM` over the OpenAI chat-completions API.

    Args:
        model: the model name the server expects (``gpt-4o-mini``, ``llama3.2:3b``, ...).
        base_url: the API root, e.g. ``http://localhost:11434/v1``; default ``$OPENAI_BASE_URL`` or OpenAI.
        api_key: default ``$OPENAI_API_KEY``; local servers that need none get a placeholder.
        response_format: ``auto`` | ``json_schema`` | ``json_object`` | ``none`` (see the module doc).
        retries: re-asks after an invalid answer (0 = one attempt only).
        transport_retries: re-sends after a connection error, a timeout, 408/409/425/429 or 5xx.
        timeout: seconds per request (connect + read).
        max_concurrency: requests in flight at once from this client (a semaphore shared by threads).
        backoff: first backoff in seconds, doubled per transport retry, capped at ``max_backoff``.
        temperature: sampling temperature (0 by default: management decisions should be stable).
        default_max_tokens: completion cap when the caller passes none.
        extra_body: extra JSON fields merged into every request (e.g. vLLM sampling options).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        response_format: Format = "auto",
        retries: int = 2,
        transport_retries: int = 2,
        timeout: float = 60.0,
        max_concurrency: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        temperature: float | None = 0.0,
        default_max_tokens: int = 1024,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        try:
            import openai
        except ImportError as exc:  # pragma: no cover - the llm extra is missing
            raise LLMError("the OpenAI client needs the 'openai' package: pip install 'memq[llm]'") from exc
        if not model or not isinstance(model, str):
            raise ValueError("model must be a non-empty string")
        if response_format not in FORMATS:
            raise ValueError(f"response_format must be one of {FORMATS}, got {response_format!r}")
        check_retries("retries", retries)
        check_retries("transport_retries", transport_retries)
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or ("not-needed" if base_url else None)
        if api_key is None:
            raise LLMError(
                "no API key: pass api_key=, set OPENAI_API_KEY, or point base_url at a local server"
            )
        self._openai = openai
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)
        self.model = model
        self.base_url = str(self._client.base_url).rstrip("/")
        super().__init__(
            f"openai:{model}@{self.base_url}", retries=retries, default_max_tokens=default_max_tokens
        )
        self.response_format: Format = response_format
        self._format = "json_schema" if response_format == "auto" else response_format
        self.transport_retries = transport_retries
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.temperature = temperature
        self.extra_body = dict(extra_body or {})

    @property
    def effective_format(self) -> str:
        """The response format in use now (``auto`` may have stepped down)."""
        return self._format

    def __repr__(self) -> str:
        return f"OpenAICompatLLM(model={self.model!r}, base_url={self.base_url!r}, format={self._format!r})"

    def close(self) -> None:
        self._client.close()

    # -- one answer, with bounded transport retries --------------------------------------------
    def _complete(
        self, convo: list[Message], schema: type[BaseModel], max_tokens: int | None, stats: CallStats
    ) -> RawAnswer:
        sent_before = False
        transport_left = self.transport_retries
        delay = self.backoff
        while True:
            fmt = self._format
            request = self._request(convo, schema, fmt, max_tokens)
            if sent_before:
                stats.retries += 1
            sent_before = True
            stats.calls += 1
            try:
                with self._slots:
                    response = self._client.chat.completions.create(**request)
            except self._openai.APITimeoutError as exc:
                if transport_left > 0:
                    transport_left -= 1
                    delay = self._sleep(delay)
                    continue
                raise LLMTimeoutError(
                    f"{self.model_id}: no answer within {self.timeout:g} s "
                    f"({self.transport_retries + 1} attempt(s))"
                ) from exc
            except self._openai.APIConnectionError as exc:
                if transport_left > 0:
                    transport_left -= 1
                    delay = self._sleep(delay)
                    continue
                raise LLMError(f"{self.model_id}: cannot reach the server: {exc}") from exc
            except self._openai.APIStatusError as exc:
                status = exc.status_code
                if (status in _RETRYABLE_STATUS or status >= 500) and transport_left > 0:
                    transport_left -= 1
                    delay = self._sleep(delay)
                    continue
                detail = _error_text(exc)
                if (
                    status in (400, 422)
                    and self.response_format == "auto"
                    and fmt in _STEP_DOWN
                    and _FORMAT_HINT.search(detail)
                ):
                    self._format = _STEP_DOWN[fmt]
                    continue
                raise LLMError(f"{self.model_id}: HTTP {status}: {detail}") from exc
            except self._openai.OpenAIError as exc:
                raise LLMError(f"{self.model_id}: {exc}") from exc
            return self._answer(response, stats)

    def _sleep(self, delay: float) -> float:
        time.sleep(delay)
        return min(delay * 2, self.max_backoff)

    def _request(
        self, convo: list[Message], schema: type[BaseModel], fmt: str, max_tokens: int | None
    ) -> dict[str, Any]:
        messages: list[dict[str, str]] = [dict(m) for m in convo]
        if fmt != "json_schema":
            note = schema_instruction(schema)
            if messages and messages[0]["role"] == "system":
                messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + note}
            else:
                messages.insert(0, {"role": "system", "content": note})
        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if max_tokens is not None:
            request["max_tokens"] = max_tokens
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if fmt == "json_schema":
            name = _NAME_OK.sub("_", schema.__name__)[:64] or "answer"
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": json_schema_of(schema), "strict": False},
            }
        elif fmt == "json_object":
            request["response_format"] = {"type": "json_object"}
        if self.extra_body:
            request["extra_body"] = self.extra_body
        return request

    @staticmethod
    def _answer(response: Any, stats: CallStats) -> RawAnswer:
        usage = getattr(response, "usage", None)
        if usage is not None:
            stats.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
            stats.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        choices = getattr(response, "choices", None) or []
        if not choices:
            return RawAnswer(content=None, finish_reason=None)
        choice = choices[0]
        message = getattr(choice, "message", None)
        # a tool-call-only or refusal answer has no content: it fails as an empty answer
        content = getattr(message, "content", None) if message is not None else None
        return RawAnswer(content=content, finish_reason=getattr(choice, "finish_reason", None))


def _error_text(exc: Any) -> str:
    """The server's own error message (OpenAI-style ``{"error": {"message": ...}}``) or the SDK's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(getattr(exc, "message", exc))
