"""The fields and the feedback path shared by the pydantic-based integrations (the LangChain retriever,
the LlamaIndex memory block): a memq memory, a scope, how to search it, and reward on the latest search."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from memq._twins import async_twin
from memq.errors import InvalidInputError
from memq.integrations._common import acall, sync_memory
from memq.integrations._tools import check_k
from memq.memory import AsyncMemory, Memory
from memq.types import FeedbackRecord, Scope
from memq.validate import coerce_scope


class Recaller(BaseModel):
    """``memory`` (a Memory, or an AsyncMemory for async use only), ``scope`` (default: the memory's
    default scope), ``k``, ``policy`` (a learned policy; default hybrid ranking) and ``kinds``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: Any
    scope: Any = None
    k: int = 3
    policy: str | None = None
    kinds: list[str] | None = None
    _last: str | None = PrivateAttr(default=None)

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: Any) -> Any:
        if not isinstance(value, Memory | AsyncMemory):
            raise ValueError(f"memory must be a memq.Memory or AsyncMemory, not {type(value).__name__}")
        return value

    @field_validator("k")
    @classmethod
    def _k(cls, value: int) -> int:
        return check_k(value)

    @property
    def last_retrieval_id(self) -> str | None:
        """The retrieval id of the latest search (what :meth:`feedback` reports on by default)."""
        return self._last

    def memq_scope(self) -> Scope:
        return coerce_scope(self.scope, self.memory.default_scope)

    def _used_ids(self, used: Sequence[Any] | None) -> list[str] | None:
        """Record ids from what the caller passes as ``used`` (subclasses accept their own objects)."""
        return None if used is None else [str(u) for u in used]

    def _feedback_args(
        self, *, reward: float, used: Sequence[Any] | None, retrieval_id: str | None, credit: str | None
    ) -> dict[str, Any]:
        """``Memory.feedback``'s arguments: the retrieval (default: the latest search), ``used`` as
        record ids, the scope."""
        rid = retrieval_id or self._last
        if rid is None:
            raise InvalidInputError(
                "no retrieval to give feedback on yet: search first, or pass retrieval_id"
            )
        return {
            "retrieval_id": rid,
            "reward": reward,
            "used": self._used_ids(used),
            "credit": credit,
            "scope": self.memq_scope(),
        }

    def feedback(
        self,
        reward: float,
        *,
        used: Sequence[Any] | None = None,
        retrieval_id: str | None = None,
        credit: str | None = None,
    ) -> FeedbackRecord:
        """Report the reward of a retrieval (default: the latest) crediting ``used`` (default: all shown)."""
        mem = sync_memory(self.memory, f"{type(self).__name__}.feedback")
        return mem.feedback(
            **self._feedback_args(reward=reward, used=used, retrieval_id=retrieval_id, credit=credit)
        )

    @async_twin(feedback)
    async def afeedback(self, **args: Any) -> FeedbackRecord:
        return await acall(self.memory, "feedback", **self._feedback_args(**args))
