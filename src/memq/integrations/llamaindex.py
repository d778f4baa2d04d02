"""memq in LlamaIndex: a memory block for ``llama_index.core.memory.Memory``, and function tools.

    from llama_index.core.memory import Memory as ChatMemory
    from memq import Memory
    from memq.integrations.llamaindex import MemqMemoryBlock, memq_tools

    mem = Memory("memq.db", scope={"tenant": "acme", "user": "alice"})
    block = MemqMemoryBlock(memory=mem, k=3)
    chat_memory = ChatMemory.from_defaults(session_id="s1", memory_blocks=[block], token_limit=4000)
    agent = FunctionAgent(tools=memq_tools(mem), llm=llm)      # remember / recall / feedback
    await agent.run("book my usual seat", memory=chat_memory)
    block.feedback(1.0)                                        # reward on the block's latest recall

**The block.** ``aget`` searches memq with the latest messages (the last ``retrieval_context_window``
of them) and renders the hits, with the retrieval id and each memory's id, into the memory's system
block, so the model can report reward through the ``feedback`` tool; ``aput`` receives the messages
the chat memory flushes out of its short-term window and stores each as a memq record of kind
``message`` (``manager=`` hands them to a memq write policy instead, e.g. ``reconcile`` with an
LLM). The LlamaIndex session id becomes the records' memq ``session``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

try:
    from llama_index.core.base.llms.types import ChatMessage, TextBlock
    from llama_index.core.memory.memory import BaseMemoryBlock
    from llama_index.core.tools import FunctionTool
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    from memq.integrations._common import missing_extra

    raise missing_extra("llama-index-core", "llamaindex", "memq.integrations.llamaindex") from exc

from pydantic import Field, PrivateAttr, field_validator

from memq.errors import InvalidInputError
from memq.integrations._common import acall, sync_memory
from memq.integrations._tools import MemoryTools, check_k
from memq.memory import AsyncMemory, Memory
from memq.types import FeedbackRecord, Retrieval
from memq.validate import coerce_scope

__all__ = ["MemqMemoryBlock", "memq_tools"]


def _text(message: ChatMessage) -> str:
    return " ".join(b.text for b in message.blocks if isinstance(b, TextBlock)).strip()


class MemqMemoryBlock(BaseMemoryBlock[str]):
    """Long-term memory from memq inside a LlamaIndex chat memory.

    ``memory``: a Memory or an AsyncMemory; ``scope`` (default: the memory's default scope);
    ``k`` memories per turn; ``policy`` a learned policy (default: hybrid ranking); ``kinds`` the
    kinds searched; ``manager`` a memq write policy for the flushed messages (default: store them as
    they are); ``show_ids`` renders the retrieval id and memory ids for the model's feedback.
    """

    name: str = Field(default="memq", description="The name of the memory block.")
    description: str | None = Field(default="Relevant long-term memories (memq).")
    memory: Any = Field(description="A memq Memory or AsyncMemory.")
    scope: Any = None
    k: int = 3
    policy: str | None = None
    kinds: list[str] | None = None
    manager: str | None = None
    message_kind: str = "message"
    retrieval_context_window: int = 5
    show_ids: bool = True
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
        """The retrieval id of the block's latest search (``None`` before the first)."""
        return self._last

    def _scope(self, session: str | None = None) -> Any:
        base = coerce_scope(self.scope, self.memory.default_scope)
        return base if session is None else coerce_scope({**base.model_dump(), "session": session})

    def _render(self, retrieval: Retrieval) -> str:
        self._last = retrieval.id
        if not retrieval.hits:
            return ""
        if not self.show_ids:
            return "\n".join(f"- {h.record.text}" for h in retrieval.hits)
        lines = [f"- [{h.record.id}] {h.record.text}" for h in retrieval.hits]
        return f"retrieval_id: {retrieval.id}\n" + "\n".join(lines)

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        window = (messages or [])[-max(1, self.retrieval_context_window) :]
        query = " ".join(t for t in (_text(m) for m in window) if t)
        if not query:
            return ""
        query = query[-self.memory.config.max_text_chars :]
        retrieval = await acall(
            self.memory, "search", query, scope=self._scope(), k=self.k, policy=self.policy, kinds=self.kinds
        )
        return self._render(retrieval)

    async def _aput(self, messages: list[ChatMessage]) -> None:
        items = []
        for message in messages:
            text = _text(message)
            if not text:
                continue
            session = message.additional_kwargs.get("session_id")
            items.append(
                {
                    "text": f"{message.role.value}: {text}",
                    "kind": self.message_kind,
                    "metadata": {"role": message.role.value},
                    "scope": self._scope(session if isinstance(session, str) else None),
                }
            )
        if items:
            await acall(self.memory, "add", items, scope=self._scope(), manager=self.manager)

    def _feedback_args(self, retrieval_id: str | None) -> str:
        rid = retrieval_id or self._last
        if rid is None:
            raise InvalidInputError("no retrieval to give feedback on: the block has not been read yet")
        return rid

    def feedback(
        self,
        reward: float,
        *,
        used: Sequence[str] | None = None,
        retrieval_id: str | None = None,
        credit: str | None = None,
    ) -> FeedbackRecord:
        """Report the reward of the block's latest retrieval (or ``retrieval_id``); ``used``: record ids."""
        rid = self._feedback_args(retrieval_id)
        mem = sync_memory(self.memory, "MemqMemoryBlock.feedback")
        return mem.feedback(rid, reward, used=used, credit=credit, scope=self._scope())

    async def afeedback(
        self,
        reward: float,
        *,
        used: Sequence[str] | None = None,
        retrieval_id: str | None = None,
        credit: str | None = None,
    ) -> FeedbackRecord:
        rid = self._feedback_args(retrieval_id)
        return await acall(
            self.memory, "feedback", rid, reward, used=used, credit=credit, scope=self._scope()
        )


def memq_tools(
    memory: Memory | AsyncMemory,
    *,
    scope: Any = None,
    k: int = 5,
    policy: str | None = None,
    kind: str = "fact",
    kinds: Sequence[str] | None = None,
) -> list[FunctionTool]:
    """``remember``, ``recall`` and ``feedback`` as LlamaIndex function tools on one scope."""
    tools = MemoryTools(memory, scope=scope, k=k, policy=policy, kind=kind, kinds=kinds)
    return [
        FunctionTool.from_defaults(fn=tools.remember, async_fn=tools.aremember, name="remember"),
        FunctionTool.from_defaults(fn=tools.recall, async_fn=tools.arecall, name="recall"),
        FunctionTool.from_defaults(fn=tools.feedback, async_fn=tools.afeedback, name="feedback"),
    ]
