"""remember / recall / feedback as plain functions that each framework wraps as its own tools.

The three functions (and their ``a``-prefixed coroutines) carry the signatures and docstrings the
frameworks turn into tool schemas, so LangChain, the OpenAI Agents SDK and LlamaIndex offer the model
the same three tools. ``recall`` returns the retrieval id with the memories; ``feedback`` takes it
back, with the reward and the ids of the memories that were used — that is how an agent's reward
reaches memq's learners from inside a framework.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from memq.errors import InvalidInputError
from memq.integrations._common import acall, sync_memory
from memq.memory import AsyncMemory, Memory
from memq.retrieve.pipeline import MAX_K
from memq.types import FeedbackRecord, Retrieval
from memq.validate import ScopeLike, coerce_scope

RECALL_HINT = (
    "After acting on recalled memories, call `feedback` with this retrieval_id, a reward "
    "(1 = they helped, 0 = they did not) and the ids of the memories you used."
)


def check_k(k: Any, name: str = "k") -> int:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidInputError(f"{name} must be an integer from 1 to {MAX_K}, got {k!r}")
    return k


def recall_payload(retrieval: Retrieval) -> dict[str, Any]:
    """What a recall tool shows the model: the retrieval id and the memories, best first."""
    return {
        "retrieval_id": retrieval.id,
        "memories": [
            {"id": h.record.id, "text": h.record.text, "score": round(h.score, 4)} for h in retrieval.hits
        ],
        "hint": RECALL_HINT,
    }


def feedback_payload(retrieval_id: str, fb: FeedbackRecord) -> dict[str, Any]:
    return {
        "retrieval_id": retrieval_id,
        "reward": fb.reward,
        "credit": fb.credit,
        "credited": {rid: round(v, 4) for rid, v in fb.credits.items()},
    }


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


class MemoryTools:
    """The three memory tools for one scope of one memq memory.

    ``memory`` is a :class:`memq.Memory` (sync and async tools) or an :class:`memq.AsyncMemory`
    (async tools only). ``scope`` defaults to the memory's default scope. ``k`` is the default number
    of memories ``recall`` returns, ``policy`` a learned policy name for it (default: memq's hybrid
    ranking), ``kind`` the kind ``remember`` stores, ``kinds`` the kinds ``recall`` searches (default:
    all). ``last_retrieval_id`` is the id of the latest recall, for callers that report reward
    outside the model's tool calls.
    """

    def __init__(
        self,
        memory: Memory | AsyncMemory,
        *,
        scope: ScopeLike | None = None,
        k: int = 5,
        policy: str | None = None,
        kind: str = "fact",
        kinds: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(memory, Memory | AsyncMemory):
            raise InvalidInputError(
                f"memory must be a memq.Memory or AsyncMemory, not {type(memory).__name__}"
            )
        self.memory = memory
        self.scope = coerce_scope(scope, memory.default_scope)
        self.k = check_k(k)
        self.policy = policy
        self.kind = kind
        self.kinds = None if kinds is None else list(kinds)
        self.last_retrieval_id: str | None = None

    def _search_kwargs(self, k: int | None) -> dict[str, Any]:
        k = self.k if k is None else check_k(k)
        return {"scope": self.scope, "k": k, "policy": self.policy, "kinds": self.kinds}

    def _recalled(self, retrieval: Retrieval) -> str:
        self.last_retrieval_id = retrieval.id
        return _dumps(recall_payload(retrieval))

    # -- sync ----------------------------------------------------------------------------------------
    def remember(self, text: str) -> str:
        """Store a memory (a fact, a preference, an experience) so it can be recalled later.

        Args:
            text: The memory, as one self-contained sentence.
        """
        record = sync_memory(self.memory, "remember").add(text, scope=self.scope, kind=self.kind)
        return _dumps({"id": record.id, "text": record.text})

    def recall(self, query: str, k: int | None = None) -> str:
        """Search long-term memory. Returns a retrieval_id and the memories (id, text, score), best first.

        Args:
            query: What to look for, in plain words.
            k: How many memories to return (default: the tool's setting).
        """
        mem = sync_memory(self.memory, "recall")
        return self._recalled(mem.search(query, **self._search_kwargs(k)))

    def feedback(self, retrieval_id: str, reward: float, used: list[str] | None = None) -> str:
        """Report how recalled memories worked out, so memory learns which ones help.

        Args:
            retrieval_id: The retrieval_id a recall returned.
            reward: 1.0 if the recalled memories helped, 0.0 if they did not (any value in between).
            used: Ids of the recalled memories you actually used (omit to credit all of them).
        """
        fb = sync_memory(self.memory, "feedback").feedback(retrieval_id, reward, used=used, scope=self.scope)
        return _dumps(feedback_payload(retrieval_id, fb))

    # -- async ---------------------------------------------------------------------------------------
    async def aremember(self, text: str) -> str:
        record = await acall(self.memory, "add", text, scope=self.scope, kind=self.kind)
        return _dumps({"id": record.id, "text": record.text})

    async def arecall(self, query: str, k: int | None = None) -> str:
        return self._recalled(await acall(self.memory, "search", query, **self._search_kwargs(k)))

    async def afeedback(self, retrieval_id: str, reward: float, used: list[str] | None = None) -> str:
        fb = await acall(self.memory, "feedback", retrieval_id, reward, used=used, scope=self.scope)
        return _dumps(feedback_payload(retrieval_id, fb))


# the coroutines describe themselves like their sync twins (frameworks read the docstring)
MemoryTools.aremember.__doc__ = MemoryTools.remember.__doc__
MemoryTools.arecall.__doc__ = MemoryTools.recall.__doc__
MemoryTools.afeedback.__doc__ = MemoryTools.feedback.__doc__
