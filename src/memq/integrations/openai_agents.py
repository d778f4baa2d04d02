"""memq in the OpenAI Agents SDK: a ``Session`` for conversation history, and function tools for
long-term recall and feedback.

    from agents import Agent, Runner
    from memq import Memory
    from memq.integrations.openai_agents import MemqSession, memq_tools

    mem = Memory("memq.db", scope={"tenant": "acme", "user": "alice"})
    agent = Agent(name="assistant", tools=memq_tools(mem, kinds=["fact"]))
    result = await Runner.run(agent, "book my usual seat", session=MemqSession("chat-42", mem))

**Session.** Each history item is one memq record of kind ``message`` in the scope's ``session``
(``session_id``): its text is the item's readable text (``"user: ..."``, a tool call's name and
arguments, a tool's output) so the history is searchable like any memory, and its payload keeps the
item exactly as the SDK gave it. ``add_items`` writes one transaction; ``pop_item`` and
``clear_session`` are memq soft deletes (the history of each record stays; ``Memory.purge`` erases).

**Tools.** ``remember``, ``recall`` (returns a ``retrieval_id``) and ``feedback`` (reward for that
retrieval, crediting the memory ids the agent used). A memq error inside a tool reaches the model
as the tool's result (``"not_found: ..."``), so it can correct the call.

Both accept a :class:`memq.Memory` (calls run on a worker thread: memq's SQLite driver is synchronous
and embedding is CPU work) or a :class:`memq.AsyncMemory` (awaited directly; native async on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from agents import FunctionTool, RunContextWrapper, function_tool
    from agents.memory import SessionABC, SessionSettings
    from agents.tool import default_tool_error_function
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    from memq.integrations._common import missing_extra

    raise missing_extra("openai-agents", "openai-agents", "memq.integrations.openai_agents") from exc

from memq.errors import InvalidInputError, MemqError, ScopeError
from memq.integrations._common import acall
from memq.integrations._tools import MemoryTools
from memq.memory import AsyncMemory, Memory
from memq.types import MemoryRecord
from memq.validate import ScopeLike, coerce_scope

__all__ = ["MemqSession", "item_text", "memq_tools"]

MESSAGE_KIND = "message"
_PAGE = 1000


def item_text(item: Mapping[str, Any]) -> str:
    """The searchable text of a session item: ``role: text`` for messages, ``name(arguments)`` for
    tool calls, the output for tool results; the item's JSON for anything else."""
    kind = item.get("type")
    content = item.get("content")
    text = ""
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = " ".join(
            str(p.get("text") or p.get("refusal") or "") for p in content if isinstance(p, Mapping)
        )
    elif kind == "function_call":
        text = f"{item.get('name')}({item.get('arguments') or ''})"
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
    text = text.strip()
    if text and item.get("role"):
        text = f"{item['role']}: {text}"
    # default=str: an item that is not JSON still gets a text; the payload check then refuses it
    return text or json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)


class MemqSession(SessionABC):
    """Conversation history of one session, kept in memq.

    ``scope`` (default: the memory's default scope) gives tenant / user / agent; the session field is
    ``session_id``. ``kind`` is the records' kind (default ``message``).
    """

    def __init__(
        self,
        session_id: str,
        memory: Memory | AsyncMemory,
        *,
        scope: ScopeLike | None = None,
        kind: str = MESSAGE_KIND,
        session_settings: SessionSettings | None = None,
    ) -> None:
        if not isinstance(memory, Memory | AsyncMemory):
            raise InvalidInputError(
                f"memory must be a memq.Memory or AsyncMemory, not {type(memory).__name__}"
            )
        if not isinstance(session_id, str) or not session_id.strip():
            raise InvalidInputError("session_id must be a non-empty string")
        base = coerce_scope(scope, memory.default_scope)
        if base.session is not None and base.session != session_id:
            raise ScopeError(f"the scope names session {base.session!r}, not {session_id!r}")
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self.memory = memory
        self.scope = coerce_scope({**base.model_dump(), "session": session_id})
        self.kind = kind

    async def _records(self) -> list[MemoryRecord]:
        """The session's current items, oldest first."""
        out: list[MemoryRecord] = []
        cursor = None
        while True:
            page = await acall(
                self.memory, "list", scope=self.scope, kinds=[self.kind], cursor=cursor, limit=_PAGE
            )
            out.extend(page.records)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The history, oldest first; with ``limit``, the latest ``limit`` items."""
        limit = self.session_settings.limit if limit is None else limit
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidInputError(f"limit must be a non-negative integer or None, got {limit!r}")
        records = await self._records()
        if limit is not None:
            records = records[len(records) - limit :] if limit else []
        return [r.payload["item"] for r in records]

    async def add_items(self, items: list[Any]) -> None:
        """Append items (one transaction: all or none are stored)."""
        if not items:
            return
        if not isinstance(items, Sequence) or not all(isinstance(i, Mapping) for i in items):
            raise InvalidInputError("add_items takes a list of items (dicts)")
        batch = [{"text": item_text(i), "kind": self.kind, "payload": {"item": dict(i)}} for i in items]
        await acall(self.memory, "add", batch, scope=self.scope, actor="openai-agents")

    async def pop_item(self) -> Any | None:
        """Remove and return the latest item (None when the session is empty)."""
        records = await self._records()
        if not records:
            return None
        last = records[-1]
        await acall(
            self.memory, "delete", last.id, scope=self.scope, actor="openai-agents", reason="pop_item"
        )
        return last.payload["item"]

    async def clear_session(self) -> None:
        """Remove every item of the session (soft deletes; ``Memory.purge`` erases for good)."""
        for record in await self._records():
            await acall(
                self.memory, "delete", record.id, scope=self.scope, actor="openai-agents", reason="clear"
            )


def _tool_error(ctx: RunContextWrapper[Any], error: Exception) -> str:
    """memq's errors are written for the caller (what was wrong, what to do): the model sees them.
    Anything else gets the SDK's generic message."""
    if isinstance(error, MemqError):
        return f"{error.code}: {error}"
    return default_tool_error_function(ctx, error)


def memq_tools(memory: Memory | AsyncMemory, **options: Any) -> list[FunctionTool]:
    """``remember``, ``recall`` and ``feedback`` as Agents SDK function tools on one scope.

    ``options``: :class:`~memq.integrations._tools.MemoryTools`'s (``scope``, ``k``, ``policy``,
    ``kind``, ``kinds``); ``kinds=["fact"]`` leaves the session history out of ``recall``. The tools
    share one MemoryTools, reachable as ``tool.memq_tools`` (its ``last_retrieval_id`` is the latest
    recall's).
    """
    tools = MemoryTools(memory, **options)
    out = [
        function_tool(tools.aremember, name_override="remember", failure_error_function=_tool_error),
        function_tool(tools.arecall, name_override="recall", failure_error_function=_tool_error),
        function_tool(tools.afeedback, name_override="feedback", failure_error_function=_tool_error),
    ]
    for tool in out:
        tool.memq_tools = tools  # type: ignore[attr-defined]
    return out
