"""The LLM protocol memq's managers call: structured output into a pydantic model, with accounting.

Implementations: :mod:`memq.llm.client` (any OpenAI-compatible endpoint) and :mod:`memq.llm.local`
(embedded Gemma 3 270M via llama.cpp, grammar-constrained JSON). A structured call either returns a
validated model instance or raises :class:`memq.errors.LLMError` — never an empty stand-in.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TypedDict, TypeVar, runtime_checkable

from pydantic import BaseModel, ConfigDict

T = TypeVar("T", bound=BaseModel)


class Message(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class CallStats(BaseModel):
    """Accounting for LLM calls, per operation (``extract``, ``reconcile``, ...) or in total."""

    model_config = ConfigDict(extra="forbid")

    calls: int = 0
    failures: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0

    def add(self, other: CallStats) -> None:
        for name in CallStats.model_fields:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class LLMFailure(BaseModel):
    """One LLM operation that failed for good (the caller got an LLMError and nothing was written)."""

    model_config = ConfigDict(extra="forbid")

    operation: str
    at: datetime
    code: str  # the error's stable code: llm_error, llm_timeout, llm_invalid_output
    message: str
    raw: str | None = None  # the model's last answer, truncated (invalid output only)


class Usage(BaseModel):
    """What ``Memory.usage()`` returns: totals, a breakdown by operation, and the recent failures."""

    model_config = ConfigDict(extra="forbid")

    total: CallStats
    by_operation: dict[str, CallStats]
    failures: list[LLMFailure] = []


class UsageMeter:
    """Thread-safe accumulator of :class:`CallStats` keyed by operation name."""

    MAX_FAILURES = 100  # the failure log keeps the most recent ones

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ops: dict[str, CallStats] = {}
        self._failures: deque[LLMFailure] = deque(maxlen=self.MAX_FAILURES)

    def record(self, operation: str, stats: CallStats) -> None:
        with self._lock:
            self._ops.setdefault(operation, CallStats()).add(stats)

    def record_failure(self, operation: str, code: str, message: str, raw: str | None = None) -> None:
        entry = LLMFailure(
            operation=operation,
            at=datetime.now(UTC),
            code=code,
            message=message[:1000],
            raw=None if raw is None else raw[:1000],
        )
        with self._lock:
            self._failures.append(entry)

    def snapshot(self) -> Usage:
        with self._lock:
            total = CallStats()
            ops = {}
            for name, st in self._ops.items():
                total.add(st)
                ops[name] = st.model_copy()
            return Usage(total=total, by_operation=ops, failures=list(self._failures))

    def reset(self) -> None:
        with self._lock:
            self._ops.clear()
            self._failures.clear()


@runtime_checkable
class LLM(Protocol):
    """A chat model that answers in a given pydantic schema."""

    model_id: str
    usage: UsageMeter

    def structured(
        self,
        messages: Sequence[Message],
        schema: type[T],
        *,
        operation: str,
        max_tokens: int | None = None,
    ) -> T:
        """Ask for an answer validating as ``schema``; raise LLMError when none does."""
        ...
