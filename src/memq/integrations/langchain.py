"""memq in LangChain: a retriever, and remember / recall / feedback tools for agents.

    from memq import Memory
    from memq.integrations.langchain import MemqRetriever, create_memq_tools

    mem = Memory("memq.db", scope={"tenant": "acme", "user": "alice"})
    retriever = MemqRetriever(memory=mem, k=4)
    docs = retriever.invoke("where does Alice live?")   # Documents; metadata carries retrieval_id
    retriever.feedback(1.0, used=[docs[0]])             # reward on the latest retrieval

    agent = create_agent(model, tools=create_memq_tools(mem))   # langchain.agents

Every Document the retriever returns has ``metadata["retrieval_id"]`` (the memq retrieval it came from),
``metadata["record_id"]``, ``score``, ``rank``, ``kind`` and the record's own ``metadata``. The tools'
``recall`` output shows the model the retrieval id, and ``feedback`` takes it back with a reward.
memq errors inside a tool reach the model as the tool's error message (a ``ToolException``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.tools import StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    from memq.integrations._common import missing_extra

    raise missing_extra("langchain-core", "langchain", "memq.integrations.langchain") from exc

from pydantic import Field

from memq.errors import MemqError
from memq.integrations._common import acall, sync_memory
from memq.integrations._recaller import Recaller
from memq.integrations._tools import MemoryTools
from memq.memory import AsyncMemory, Memory
from memq.types import Retrieval

__all__ = ["MemqRetriever", "create_memq_tools"]


class MemqRetriever(Recaller, BaseRetriever):
    """A LangChain retriever over memq's search (hybrid ranking, or a learned ``policy``).

    ``memory``: a Memory (sync and async use) or an AsyncMemory (async use only). ``scope``: the
    scope searched (default: the memory's default scope). ``k``, ``filters`` (memq's filter
    language), ``kinds``, ``policy`` and ``search_options`` go to ``Memory.search``.
    :meth:`feedback` reports reward on the latest search; ``used`` takes Documents or record ids.
    """

    k: int = 4
    filters: dict[str, Any] | None = None
    search_options: dict[str, Any] = Field(default_factory=dict)

    def _search_args(self) -> dict[str, Any]:
        return dict(
            scope=self.memq_scope(),
            k=self.k,
            filters=self.filters,
            kinds=self.kinds,
            policy=self.policy,
            **self.search_options,
        )

    def _documents(self, retrieval: Retrieval) -> list[Document]:
        self._last = retrieval.id
        return [
            Document(
                id=h.record.id,
                page_content=h.record.text,
                metadata={
                    "retrieval_id": retrieval.id,
                    "record_id": h.record.id,
                    "score": h.score,
                    "rank": h.rank,
                    "kind": h.record.kind,
                    "metadata": h.record.metadata,
                },
            )
            for h in retrieval.hits
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        mem = sync_memory(self.memory, "MemqRetriever.invoke")
        return self._documents(mem.search(query, **self._search_args()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        return self._documents(await acall(self.memory, "search", query, **self._search_args()))

    def _used_ids(self, used: Sequence[str | Document] | None) -> list[str] | None:
        if used is None:
            return None
        return [u.metadata.get("record_id", u.id) if isinstance(u, Document) else u for u in used]


def _as_tool_error(fn: Callable[..., Any]) -> Callable[..., Any]:
    """memq errors become ToolException, which LangChain reports to the model as the tool's result."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except MemqError as exc:
                raise ToolException(f"{exc.code}: {exc}") from exc

        return awrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MemqError as exc:
            raise ToolException(f"{exc.code}: {exc}") from exc

    return wrapper


def create_memq_tools(memory: Memory | AsyncMemory, **options: Any) -> list[StructuredTool]:
    """``remember``, ``recall`` and ``feedback`` as LangChain tools on one scope of ``memory``.

    ``options``: :class:`~memq.integrations._tools.MemoryTools`'s (``scope``, ``k``, ``policy``,
    ``kind``, ``kinds``). With an AsyncMemory only the async path works (``agent.ainvoke``). The tools share one
    :class:`~memq.integrations._tools.MemoryTools`; its ``last_retrieval_id`` is on each tool's
    ``metadata["memq_tools"]``.
    """
    tools = MemoryTools(memory, **options)
    pairs = [
        ("remember", tools.remember, tools.aremember),
        ("recall", tools.recall, tools.arecall),
        ("feedback", tools.feedback, tools.afeedback),
    ]
    return [
        StructuredTool.from_function(
            _as_tool_error(sync_fn),
            _as_tool_error(async_fn),
            name=name,
            parse_docstring=True,
            handle_tool_error=True,
            metadata={"memq_tools": tools},
        )
        for name, sync_fn, async_fn in pairs
    ]
