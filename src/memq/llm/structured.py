"""The validation/retry loop every memq LLM backend shares.

A backend supplies one function, ``complete(messages, max_tokens, stats) -> RawAnswer``, that gets
one answer (with its own bounded transport retries), adds every request it sent to ``stats``
(``calls``, ``retries``, tokens) and returns the model's text with its finish reason, or raises
:class:`memq.errors.LLMError`. :func:`run_structured` then

1. parses the text as JSON and validates it against the caller's pydantic model;
2. on an empty, truncated (``finish_reason == "length"``), malformed or schema-invalid answer, shows
   the model its own answer and the validation error and asks again, at most ``retries`` times;
3. raises :class:`memq.errors.LLMOutputError` (with ``.raw``, ``.problem`` and ``.attempts``) when no
   answer validated — never an empty stand-in;
4. records the calls, retries, failures, tokens and latency in the backend's :class:`UsageMeter`
   under the caller's ``operation``, whatever the outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from memq._twins import async_twin
from memq.errors import LLMError, LLMOutputError
from memq.llm.base import CallStats, Message, T, UsageMeter

log = logging.getLogger("memq.llm")

MAX_RAW_ECHO = 2000  # characters of a bad answer echoed back to the model on retry
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)


@dataclass
class RawAnswer:
    """One response from a backend, before parsing."""

    content: str | None
    finish_reason: str | None


Complete = Callable[[list[Message], int | None, CallStats], RawAnswer]


_LITERAL_KEYS = {"default", "examples", "const", "enum"}


def _untitled(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (v if k in _LITERAL_KEYS else _untitled(v))
            for k, v in node.items()
            if not (k == "title" and isinstance(v, str))
        }
    if isinstance(node, list):
        return [_untitled(v) for v in node]
    return node


def json_schema_of(schema: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema memq sends for a pydantic model: pydantic's own (validation mode) without the
    ``title`` annotations it adds to every model and field (tokens a model does not need)."""
    return _untitled(schema.model_json_schema())  # type: ignore[no-any-return]


def schema_instruction(schema: type[BaseModel]) -> str:
    """A system-prompt paragraph carrying the schema, for servers without JSON-schema output."""
    js = json.dumps(json_schema_of(schema), separators=(",", ":"), ensure_ascii=False)
    return (
        "Answer with one JSON object and nothing else (no prose, no code fence). "
        f"It must validate against this JSON schema: {js}"
    )


def strip_fence(text: str) -> str:
    """Drop one surrounding markdown code fence (```json ... ```), which some models add."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


def describe_validation_error(exc: ValidationError, limit: int = 8) -> str:
    """A short, model-readable list of what failed: ``field.path: message`` per error."""
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "(root)"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def check_answer(answer: RawAnswer, schema: type[T]) -> tuple[T | None, str | None]:
    """Return ``(instance, None)`` for a valid answer, else ``(None, problem)``."""
    text = (answer.content or "").strip()
    if answer.finish_reason == "length":
        return None, (
            "the answer was cut off at the token limit before the JSON was complete; "
            "answer again, more briefly"
        )
    if not text:
        return None, "the answer was empty; answer with one JSON object"
    text = strip_fence(text).strip()
    try:
        # strict=False: a raw newline or tab inside a string is still the answer the model meant
        # (llama.cpp's JSON grammar admits them; OpenAI-compatible servers sometimes emit them too).
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    if not isinstance(data, dict):
        return None, f"the answer must be a JSON object, got a JSON {type(data).__name__}"
    try:
        return schema.model_validate(data), None
    except ValidationError as exc:
        return None, "the JSON does not match the schema: " + describe_validation_error(exc)


def retry_messages(answer: RawAnswer, problem: str) -> list[Message]:
    """The two messages appended on a retry: the model's answer, then what was wrong with it."""
    shown = (answer.content or "")[:MAX_RAW_ECHO]
    return [
        {"role": "assistant", "content": shown},
        {
            "role": "user",
            "content": f"Your previous answer was rejected: {problem}. "
            "Reply again with only the corrected JSON object.",
        },
    ]


def run_structured(
    complete: Complete,
    messages: Sequence[Message],
    schema: type[T],
    *,
    operation: str,
    max_tokens: int | None,
    retries: int,
    meter: UsageMeter,
    model_id: str,
) -> T:
    """Ask, validate, re-ask with the error at most ``retries`` times; account for every request."""
    if not isinstance(schema, type) or not issubclass(schema, BaseModel):
        raise TypeError(f"schema must be a pydantic model class, got {schema!r}")
    if not operation or not isinstance(operation, str):
        raise ValueError("operation must be a non-empty string (it keys the usage meter)")
    convo: list[Message] = [{"role": m["role"], "content": m["content"]} for m in messages]
    stats = CallStats()
    start = time.perf_counter()
    last: RawAnswer | None = None
    problem = ""
    try:
        for attempt in range(retries + 1):
            if attempt:
                stats.retries += 1
            answer = complete(convo, max_tokens, stats)
            value, problem_now = check_answer(answer, schema)
            if value is not None:
                return value
            last, problem = answer, problem_now or "invalid"
            convo = [*convo, *retry_messages(answer, problem)]
        err = LLMOutputError(
            f"{model_id} gave no answer validating as {schema.__name__} for {operation!r} after "
            f"{retries + 1} attempt(s); last problem: {problem}"
        )
        err.raw = None if last is None else last.content  # type: ignore[attr-defined]
        err.problem = problem  # type: ignore[attr-defined]
        err.attempts = retries + 1  # type: ignore[attr-defined]
        raise err
    except LLMError as exc:
        stats.failures += 1
        raw = getattr(exc, "raw", None)
        meter.record_failure(operation, exc.code, str(exc), raw)
        log.warning("LLM operation %r failed (%s): %s", operation, exc.code, exc)
        raise
    finally:
        stats.latency_ms += (time.perf_counter() - start) * 1000.0
        meter.record(operation, stats)


def check_retries(name: str, value: Any) -> int:
    """``value`` when it is an integer in [0, 10] (the bound on re-asks and on transport retries)."""
    if not isinstance(value, int) or not 0 <= value <= 10:
        raise ValueError(f"{name} must be an integer in [0, 10], got {value!r}")
    return value


class StructuredLLM:
    """``structured``/``astructured`` for a backend that implements one generation, ``_complete``.

    Subclasses pass ``model_id``, ``retries`` and ``default_max_tokens`` to ``__init__`` (which also gives
    them a fresh ``usage`` meter); the ask → validate → re-ask loop and the accounting are
    :func:`run_structured`, the same for every backend.
    """

    model_id: str
    usage: UsageMeter
    retries: int
    default_max_tokens: int

    def __init__(self, model_id: str, *, retries: int, default_max_tokens: int) -> None:
        self.model_id = model_id
        self.usage = UsageMeter()
        self.retries = check_retries("retries", retries)
        self.default_max_tokens = default_max_tokens

    def _complete(
        self, convo: list[Message], schema: type[BaseModel], max_tokens: int | None, stats: CallStats
    ) -> RawAnswer:
        raise NotImplementedError

    def structured(
        self,
        messages: Sequence[Message],
        schema: type[T],
        *,
        operation: str,
        max_tokens: int | None = None,
    ) -> T:
        """Ask for an answer validating as ``schema``; raise :class:`LLMError` when none does."""
        return run_structured(
            lambda convo, cap, stats: self._complete(convo, schema, cap, stats),
            messages,
            schema,
            operation=operation,
            max_tokens=max_tokens or self.default_max_tokens,
            retries=self.retries,
            meter=self.usage,
            model_id=self.model_id,
        )

    @async_twin(structured)
    async def astructured(self, **args: Any) -> Any:
        """:meth:`structured` in a worker thread (a backend's concurrency limit still holds)."""
        return await asyncio.to_thread(self.structured, **args)
