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

from typing import Any

try:
    from llama_index.core.base.llms.types import ChatMessage, TextBlock
    from llama_index.core.memory.memory import BaseMemoryBlock
    from llama_index.core.tools import FunctionTool
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    from memq.integrations._common import missing_extra

    raise missing_extra("llama-index-core", "llamaindex", "memq.integrations.llamaindex") from exc

from pydantic import Field

from memq.integrations._common import acall
from memq.integrations._recaller import Recaller
from memq.integrations._tools import MemoryTools
from memq.memory import AsyncMemory, Memory
from memq.types import Retrieval
from memq.validate import coerce_scope

__all__ = ["MemqMemoryBlock", "memq_tools"]


def _text(message: ChatMessage) -> str:
    return " ".join(b.text for b in message.blocks if isinstance(b, TextBlock)).strip()


class MemqMemoryBlock(Recaller, BaseMemoryBlock[str]):
    """Long-term memory from memq inside a LlamaIndex chat memory.

    ``memory``: a Memory or an AsyncMemory; ``scope`` (default: the memory's default scope);
    ``k`` memories per turn; ``policy`` a learned policy (default: hybrid ranking); ``kinds`` the
    kinds searched; ``manager`` a memq write policy for the flushed messages (default: store them as
    they are); ``show_ids`` renders the retrieval id and memory ids for the model's feedback.
    :meth:`feedback` reports reward on the block's latest search (``used``: record ids).
    """

    name: str = Field(default="memq", description="The name of the memory block.")
    description: str | None = Field(default="Relevant long-term memories (memq).")
    manager: str | None = None
    message_kind: str = "message"
    retrieval_context_window: int = 5
    show_ids: bool = True

    def _scope(self, session: str | None = None) -> Any:
        base = self.memq_scope()
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


def memq_tools(memory: Memory | AsyncMemory, **options: Any) -> list[FunctionTool]:
    """``remember``, ``recall`` and ``feedback`` as LlamaIndex function tools on one scope.

    ``options``: :class:`~memq.integrations._tools.MemoryTools`'s (``scope``, ``k``, ``policy``,
    ``kind``, ``kinds``)."""
    tools = MemoryTools(memory, **options)
    return [
        FunctionTool.from_defaults(fn=tools.remember, async_fn=tools.aremember, name="remember"),
        FunctionTool.from_defaults(fn=tools.recall, async_fn=tools.arecall, name="recall"),
        FunctionTool.from_defaults(fn=tools.feedback, async_fn=tools.afeedback, name="feedback"),
    ]
