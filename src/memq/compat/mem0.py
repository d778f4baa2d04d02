"""A mem0-compatible ``Memory``: switch from mem0 by changing one import.

    from memq.compat.mem0 import Memory      # was: from mem0 import Memory

    m = Memory()                                          # memq.db ($MEMQ_DB), tenant "default"
    m.add(messages, user_id="alice", metadata={"category": "movies"}, infer=False)
    found = m.search("What do you know about me?", filters={"user_id": "alice"})
    m.feedback(found["retrieval_id"], 1.0, used=[found["results"][0]["id"]])   # memq's addition

The call shapes and result dicts follow mem0 2.2 (``mem0ai``): ``add``, ``search``, ``get``,
``get_all``, ``update``, ``delete``, ``delete_all``, ``history``, ``reset``; mem0 1.x forms
(``search(query, user_id=..., limit=...)``, ``get_all(user_id=...)``) are accepted too. What differs
and why is tabled in ``docs/integrations.md``; in short:

* ``infer=True`` (mem0's default) runs memq's ``reconcile`` manager — mem0 v1's extract-then-
  ADD/UPDATE/DELETE pipeline — with the Memory's LLM (``llm=`` or ``$MEMQ_LLM``); a DELETE
  *invalidates* the old memory (history kept). Without an LLM it is a clear error, never a silent
  ``infer=False``.
* search ranks with memq's hybrid (or learned, ``policy=``) ranking; ``score`` is memq's fused score,
  ``threshold`` applies to the cosine similarity. The result also carries ``retrieval_id`` for
  :meth:`feedback`.
* ``delete`` keeps the history (memq soft delete); ``reset`` erases the tenant's records and log.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from memq import memory as memq_memory
from memq._closing import Closing
from memq.compat import _mem0_map as m0
from memq.embed.base import Embedder
from memq.errors import InvalidInputError, NotFoundError
from memq.llm.base import LLM
from memq.types import FeedbackRecord, MemoryRecord, Scope, utcnow
from memq.validate import coerce_scope

__all__ = ["Mem0NotFoundError", "Memory"]

Mem0NotFoundError = m0.Mem0NotFoundError
_UNSET: Any = object()
_FROM_CONFIG_KEYS = {"db", "tenant", "llm", "embedder", "policy"}
_PAGE = 1000


def _llm_from_mem0(section: Any) -> LLM | str | None:
    """An ``llm`` config entry: a memq LLM spec string, or mem0's ``{"provider": "openai", "config":
    {"model", "openai_base_url", "api_key"}}`` for any OpenAI-compatible server."""
    if section is None or isinstance(section, str):
        return section
    if not isinstance(section, Mapping) or section.get("provider") != "openai":
        raise InvalidInputError(
            "config['llm'] is a memq LLM spec ('openai:MODEL@URL', 'local') or mem0's "
            "{'provider': 'openai', 'config': {...}}; other mem0 providers: use an OpenAI-compatible endpoint"
        )
    from memq.llm.client import OpenAICompatLLM

    cfg = dict(section.get("config") or {})
    base_url = cfg.get("openai_base_url") or cfg.get("base_url") or os.environ.get("OPENAI_BASE_URL")
    return OpenAICompatLLM(cfg.get("model") or "gpt-4.1-nano", base_url=base_url, api_key=cfg.get("api_key"))


class Memory(Closing):
    """mem0's ``Memory`` API on a memq store.

    ``db``: a SQLite path or a PostgreSQL URL (default ``$MEMQ_DB`` or ``memq.db``); ``tenant``: the
    memq tenant every call works in; ``llm``: for ``infer=True`` (default ``$MEMQ_LLM``);
    ``policy``: a learned search policy (default: hybrid ranking). ``memory=`` wraps an existing
    :class:`memq.Memory` instead.
    """

    def __init__(
        self,
        db: str | Path | None = None,
        *,
        tenant: str = "default",
        embedder: Embedder | None = None,
        llm: LLM | str | None = None,
        policy: str | None = None,
        memory: memq_memory.Memory | None = None,
    ) -> None:
        if memory is not None and (db is not None or embedder is not None or llm is not None):
            raise InvalidInputError("pass either memory= or db / embedder / llm, not both")
        if llm is None and memory is None:
            from memq.llm.spec import llm_from_env

            llm = llm_from_env()
        self.tenant = coerce_scope(tenant).tenant
        self.memory = memory or memq_memory.Memory(
            db or os.environ.get("MEMQ_DB") or "memq.db", embedder=embedder, llm=llm, scope=self.tenant
        )
        self.policy = policy

    @classmethod
    def from_config(cls, config_dict: Mapping[str, Any]) -> Memory:
        """Build from a dict with memq's keys: ``db``, ``tenant``, ``llm`` (a spec, or mem0's openai
        section), ``embedder`` (a memq embedder spec, e.g. ``"hashing"``), ``policy``. mem0's own
        sections (``vector_store``, ``graph_store``, ``reranker``, ``history_db_path``) have no
        meaning here and are refused by name."""
        if not isinstance(config_dict, Mapping):
            raise InvalidInputError(f"config must be a dict, not {type(config_dict).__name__}")
        unknown = set(config_dict) - _FROM_CONFIG_KEYS
        if unknown:
            raise InvalidInputError(
                f"config keys {sorted(unknown)} are mem0 settings memq does not use: memq keeps vectors, "
                f"history and text in its own store; supported keys: {sorted(_FROM_CONFIG_KEYS)}"
            )
        embedder = config_dict.get("embedder")
        if isinstance(embedder, str):
            from memq.embed import embedder_from_spec

            embedder = embedder_from_spec(embedder)
        return cls(
            config_dict.get("db"),
            tenant=config_dict.get("tenant", "default"),
            embedder=embedder,
            llm=_llm_from_mem0(config_dict.get("llm")),
            policy=config_dict.get("policy"),
        )

    def close(self) -> None:
        self.memory.close()

    # -- add ---------------------------------------------------------------------------------------
    def add(
        self,
        messages: Any,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        timestamp: Any = None,
        expiration_date: Any = None,
        infer: bool = True,
        memory_type: str | None = None,
        prompt: str | None = None,
    ) -> dict[str, Any]:
        """Store messages (a string, a message dict or a list of them) for a user / agent / run.

        ``infer=False``: each non-system message is one memory (one transaction for the call).
        ``infer=True``: memq's ``reconcile`` manager extracts facts and decides ADD / UPDATE /
        DELETE against similar memories (needs an LLM). Returns ``{"results": [{"id", "memory",
        "event", ...}]}``."""
        if timestamp is not None:
            raise InvalidInputError("timestamp is a mem0 platform feature; the open-source API has none")
        if memory_type is not None:
            raise InvalidInputError(
                "memory_type (procedural memory) is not supported: store the procedure with infer=False, "
                "or use memq's 'experience' manager (Memory.add(..., manager='experience'))"
            )
        scope = m0.scope_of(
            self.tenant, {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}, required="add"
        )
        base = m0.clean_metadata(metadata)
        day, valid_to = m0.expiry(expiration_date)
        if day is not None:
            base["expiration_date"] = day
        items = self._messages(messages, base, keep_system=infer)
        if not infer:
            return {"results": self._add_raw(items, scope, valid_to)}
        if prompt is not None:
            raise InvalidInputError(
                "a custom extraction prompt is not supported; memq's reconcile prompt is fixed"
            )
        if self.memory.llm is None:
            raise InvalidInputError(
                "infer=True needs an LLM to extract facts: Memory(llm='openai:MODEL@URL' or 'local'), or set "
                "$MEMQ_LLM; or pass infer=False to store the messages as they are"
            )
        return {"results": self._add_inferred(items, scope, valid_to)}

    @staticmethod
    def _messages(messages: Any, base: dict[str, Any], *, keep_system: bool) -> list[dict[str, Any]]:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        elif isinstance(messages, Mapping):
            messages = [messages]
        elif not isinstance(messages, list):
            raise InvalidInputError(
                f"messages must be str, dict, or list[dict], not {type(messages).__name__}"
            )
        items = []
        for i, message in enumerate(messages):
            if (
                not isinstance(message, Mapping)
                or message.get("role") is None
                or message.get("content") is None
            ):
                raise InvalidInputError(f"message {i} needs a 'role' and a 'content': {message!r}")
            if message["role"] == "system" and not keep_system:
                continue  # as mem0: system messages are instructions, not memories
            meta = {**base, "role": message["role"]}
            if message.get("name"):
                meta["actor_id"] = message["name"]
            items.append({"text": message["content"], "metadata": meta})
        return items

    def _add_raw(self, items: list[dict[str, Any]], scope: Scope, valid_to: Any) -> list[dict[str, Any]]:
        if not items:
            return []
        now = utcnow().isoformat()
        batch = [{**item, "payload": {m0.CREATED: now}, "valid_to": valid_to} for item in items]
        records: list[MemoryRecord] = self.memory.add(batch, scope=scope, actor="mem0-compat")
        return [
            {
                "id": r.id,
                "memory": r.text,
                "event": "ADD",
                "actor_id": r.metadata.get("actor_id"),
                "role": r.metadata["role"],
            }
            for r in records
        ]

    def _add_inferred(self, items: list[dict[str, Any]], scope: Scope, valid_to: Any) -> list[dict[str, Any]]:
        if not items:
            return []
        result = self.memory.add(items, scope=scope, manager="reconcile", valid_to=valid_to)
        events = {"ADD": "ADD", "UPDATE": "UPDATE", "INVALIDATE": "DELETE"}
        return [
            {"id": d.record_id, "memory": d.text, "event": events[d.op]}
            for d in result.decisions
            if d.op in events and d.record_id is not None
        ]

    # -- read --------------------------------------------------------------------------------------
    def _read_args(
        self, what: str, filters: Mapping[str, Any] | None, count: Any, **ids: Any
    ) -> tuple[int, Scope, dict[str, Any] | None]:
        """(k, scope, memq filter) of a search / get_all: mem0 2.x ``filters`` and ``top_k``, or
        mem0 1.x top-level ids and ``limit``."""
        k = _count(count, "top_k")
        from_filters, memq_filter = m0.translate_filters(filters or {})
        from_filters.update({name: value for name, value in ids.items() if value is not None})
        named = from_filters or m0.has_entity(filters or {})
        scope = m0.scope_of(self.tenant, from_filters, required=None if named else f"filters of {what}")
        return k, scope, memq_filter

    def search(
        self,
        query: str,
        *,
        top_k: int = 20,
        filters: dict[str, Any] | None = None,
        threshold: float | None = 0.1,
        rerank: bool = False,
        explain: bool = False,
        reference_date: Any = None,
        show_expired: bool = False,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Memories relevant to ``query`` in the scope the filters (or mem0 1.x's ``user_id=`` ...)
        name: ``{"results": [...], "retrieval_id": ...}``, best first by memq's ranking (``score`` is
        its fused score). ``threshold`` drops a hit whose cosine similarity to the query is below it
        (as mem0's semantic cut-off; a hit found by BM25 alone is kept)."""
        if reference_date is not None:
            raise InvalidInputError("reference_date is a mem0 platform feature; the open-source API has none")
        count = limit if limit is not None else top_k
        k, scope, memq_filter = self._read_args(
            "search", filters, count, user_id=user_id, agent_id=agent_id, run_id=run_id
        )
        if threshold is not None and not (isinstance(threshold, int | float) and 0 <= threshold <= 1):
            raise InvalidInputError(f"Invalid threshold: {threshold}. Must be between 0 and 1 (inclusive).")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("Invalid query: cannot be empty or whitespace-only.")
        if k == 0:
            return {"results": [], "retrieval_id": None}
        retrieval = self.memory.search(
            query.strip(),
            scope=scope,
            k=k,
            filters=memq_filter,
            include_invalidated=show_expired,
            explain=bool(explain or threshold),  # the dense cosine is what the threshold applies to
            policy=self.policy,
        )
        results = []
        for hit in retrieval.hits:
            cosine = None if hit.signals is None else hit.signals.dense
            if threshold and cosine is not None and cosine < threshold:
                continue
            item = m0.memory_item(hit.record, score=hit.score)
            if explain and hit.signals is not None:
                item["score_details"] = hit.signals.model_dump()
            results.append(item)
        return {"results": results, "retrieval_id": retrieval.id}

    def get(self, memory_id: str) -> dict[str, Any] | None:
        """One memory, or ``None`` when there is no such id."""
        try:
            return m0.memory_item(self.memory.get(memory_id, scope=self.tenant))
        except NotFoundError:
            return None

    def get_all(
        self,
        *,
        filters: dict[str, Any] | None = None,
        top_k: int = 20,
        show_expired: bool = False,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """Up to ``top_k`` memories of the scope, oldest first: ``{"results": [...]}``."""
        count = limit if limit is not None else top_k
        k, scope, memq_filter = self._read_args(
            "get_all", filters, count, user_id=user_id, agent_id=agent_id, run_id=run_id
        )
        results: list[dict[str, Any]] = []
        if k:
            records = self.memory.iter(
                scope=scope, filters=memq_filter, include_invalidated=show_expired, limit=min(k, _PAGE)
            )
            for record in records:
                results.append(m0.memory_item(record, with_score=False))
                if len(results) >= k:
                    break
        return {"results": results}

    def history(self, memory_id: str) -> list[dict[str, Any]]:
        """The memory's changes, oldest first (``[]`` for an unknown id, as in mem0)."""
        try:
            return m0.history_rows(self.memory.history(memory_id, scope=self.tenant))
        except NotFoundError:
            return []

    # -- change ------------------------------------------------------------------------------------
    def _current(self, memory_id: str) -> MemoryRecord:
        try:
            return self.memory.get(memory_id, scope=self.tenant)
        except NotFoundError as exc:
            raise Mem0NotFoundError(f"Memory with id {memory_id} not found") from exc

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        metadata: dict[str, Any] | None = None,
        expiration_date: Any = _UNSET,
        data: str | None = None,
    ) -> dict[str, str]:
        """A new version with new text and/or merged metadata / expiration (the old one stays in the
        history)."""
        text = data if text is None else text
        if text is None and metadata is None and expiration_date is _UNSET:
            raise InvalidInputError("At least one of text, metadata, or expiration_date must be provided.")
        current = self._current(memory_id)
        changes: dict[str, Any] = {}
        if text is not None:
            changes["text"] = text
        if metadata is not None or expiration_date is not _UNSET:
            meta = {**current.metadata, **m0.clean_metadata(metadata)}
            if expiration_date is not _UNSET:
                day, changes["valid_to"] = m0.expiry(expiration_date)
                meta.pop("expiration_date", None)
                meta.update({"expiration_date": day} if day else {})
            changes["metadata"] = meta
        self.memory.update(memory_id, scope=self.tenant, actor="mem0-compat", reason="update", **changes)
        return {"message": "Memory updated successfully!"}

    def delete(self, memory_id: str) -> dict[str, str]:
        """Delete one memory (memq soft delete: hidden, history kept)."""
        self._current(memory_id)
        self.memory.delete(memory_id, scope=self.tenant, actor="mem0-compat", reason="delete")
        return {"message": "Memory deleted successfully!"}

    def delete_all(
        self, user_id: str | None = None, agent_id: str | None = None, run_id: str | None = None
    ) -> dict[str, str]:
        """Delete every memory of a user / agent / run (expired ones too)."""
        ids = {"user_id": user_id, "agent_id": agent_id, "run_id": run_id}
        if all(v is None for v in ids.values()):
            raise InvalidInputError(
                "At least one filter is required to delete all memories. If you want to delete all "
                "memories, use the `reset()` method."
            )
        scope = m0.scope_of(self.tenant, ids, required="delete_all")
        for record in list(self.memory.iter(scope=scope, include_invalidated=True, limit=_PAGE)):
            self.memory.delete(record.id, scope=self.tenant, actor="mem0-compat", reason="delete_all")
        return {"message": "Memories deleted successfully!"}

    def reset(self) -> None:
        """Erase the tenant: every record (deleted ones too), version, vector and history event is
        purged, and its retrieval log pruned."""
        buffer = io.StringIO()
        self.memory.export(buffer, scope=self.tenant)
        ids = sorted(
            {
                row["record"]["id"]
                for row in map(json.loads, buffer.getvalue().splitlines()[1:])
                if "record" in row
            }
        )
        for start in range(0, len(ids), _PAGE):
            self.memory.purge(ids[start : start + _PAGE], scope=self.tenant)
        self.memory.prune_log(0, scope=self.tenant)

    def chat(self, query: str) -> Any:
        raise NotImplementedError("Chat function not implemented yet.")  # as in mem0

    # -- memq's addition ---------------------------------------------------------------------------
    def feedback(
        self,
        retrieval_id: str,
        reward: float,
        *,
        used: Sequence[str] | None = None,
        credit: str | None = None,
    ) -> FeedbackRecord:
        """Report the reward a search earned (its ``retrieval_id``), crediting the memory ids ``used``."""
        return self.memory.feedback(retrieval_id, reward, used=used, credit=credit, scope=self.tenant)


def _threaded(name: str) -> Any:
    """``Memory.<name>`` as a coroutine that runs the sync call on a worker thread."""
    sync = getattr(Memory, name)

    @functools.wraps(sync)
    async def method(self: AsyncMemory, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

    return method


class AsyncMemory:
    """mem0's ``AsyncMemory``: :class:`Memory`'s methods as coroutines (same arguments and results).

    Each call runs the sync method on a worker thread — memq's SQLite driver is synchronous and
    embedding is CPU work, so awaiting them in the event loop would block it anyway.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sync = Memory(*args, **kwargs)

    @classmethod
    def from_config(cls, config_dict: Mapping[str, Any]) -> AsyncMemory:
        out = cls.__new__(cls)
        out.sync = Memory.from_config(config_dict)
        return out

    @property
    def memory(self) -> memq_memory.Memory:
        return self.sync.memory

    def close(self) -> None:
        self.sync.close()

    add = _threaded("add")
    search = _threaded("search")
    get = _threaded("get")
    get_all = _threaded("get_all")
    update = _threaded("update")
    delete = _threaded("delete")
    delete_all = _threaded("delete_all")
    history = _threaded("history")
    reset = _threaded("reset")
    feedback = _threaded("feedback")
    chat = _threaded("chat")


def _count(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidInputError(f"Invalid {name}: {value}. Must be a non-negative integer.")
    return value
