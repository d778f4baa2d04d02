"""memq as LangGraph's long-term memory: :class:`MemqStore`, a ``BaseStore`` on a memq Memory.

    from memq import Memory
    from memq.integrations.langgraph import MemqStore, create_feedback_tool

    store = MemqStore(Memory("memq.db", scope="acme"), scope_map={"user": 1}, index={"fields": ["content"]})
    graph = builder.compile(store=store)            # nodes read and write it as any LangGraph store
    store.put(("memories", "alice"), "k1", {"content": "Alice likes jazz"})
    hits = store.search(("memories", "alice"), query="music")   # memq's hybrid (or learned) ranking
    store.feedback(hits[0].retrieval_id, 1.0, used=[hits[0].key])

Items are memq records (mapping in :mod:`memq.integrations._lgmap`): a put writes a new version of the
item's record (the history keeps the old ones), a delete is memq's soft delete. Searches with a query
go through ``Memory.search`` — dense + BM25 fusion, or the learned ``policy`` — and are logged, so each
:class:`MemqSearchItem` carries the ``retrieval_id`` that :meth:`MemqStore.feedback` and the tool of
:func:`create_feedback_tool` report reward on.

Batches follow LangGraph's ``InMemoryStore``: reads see the store as it was before the batch, then the
puts are applied (the last put of a key wins). The batch's new items are written in one transaction;
updates and deletes follow one by one, after every put of the batch has been validated.
``abatch`` runs ``batch`` on a worker thread (memq's SQLite driver is synchronous and embedding is CPU
work, so a coroutine would block the event loop either way).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

try:
    from langchain_core.tools import StructuredTool
    from langgraph.store.base import (
        BaseStore,
        GetOp,
        Item,
        ListNamespacesOp,
        Op,
        PutOp,
        Result,
        SearchItem,
        SearchOp,
    )
except ImportError as exc:  # pragma: no cover - exercised by the missing-extra test in a subprocess
    from memq.integrations._common import missing_extra

    raise missing_extra("langgraph", "langgraph", "memq.integrations.langgraph") from exc

from memq.errors import InvalidInputError, NotFoundError, ScopeError
from memq.integrations import _lgmap as lgmap
from memq.integrations._common import sync_memory
from memq.memory import Memory
from memq.types import FeedbackRecord, MemoryRecord, utcnow
from memq.validate import check_json, check_text

__all__ = ["MemqSearchItem", "MemqStore", "create_feedback_tool"]

_PAGE = 1000
_REF = f"metadata.{lgmap.META}.ref"


class MemqSearchItem(SearchItem):
    """A LangGraph ``SearchItem`` that also names the memq retrieval (for feedback) and record.

    ``dict()`` adds ``retrieval_id`` for a search with a query, so a tool that shows the model
    ``item.dict()`` (LangMem's search tool does) shows it the id to report reward on.
    """

    __slots__ = ("record_id", "retrieval_id")

    def __init__(self, *args: Any, retrieval_id: str | None = None, record_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retrieval_id = retrieval_id
        self.record_id = record_id

    def dict(self) -> dict:
        out = super().dict()
        if self.retrieval_id is not None:
            out["retrieval_id"] = self.retrieval_id
        return out


class MemqStore(BaseStore):
    """A LangGraph ``BaseStore`` on a memq :class:`~memq.Memory`.

    * ``tenant``: the memq tenant of every item (default: the Memory's default scope's tenant).
    * ``scope_map``: which namespace labels become the record's memq ``user`` / ``agent`` /
      ``session``, e.g. ``{"user": 1}`` for LangMem's ``("memories", "{langgraph_user_id}")``.
    * ``index``: ``{"fields": [...]}`` — the value fields whose text is embedded and searched
      (default ``["$"]``, the whole value as JSON). memq always embeds with the Memory's embedder.
    * ``policy``: a learned policy for searches with a query (``memq``, ``memrl``, ...); default the
      hybrid dense + BM25 ranking. ``search_options``: other ``Memory.search`` options.
    * ``kind``: the memq kind of the records (default ``fact``).
    """

    supports_ttl = False

    def __init__(
        self,
        memory: Memory,
        *,
        tenant: str | None = None,
        scope_map: Mapping[str, int] | None = None,
        index: Mapping[str, Any] | None = None,
        policy: str | None = None,
        search_options: Mapping[str, Any] | None = None,
        kind: str = "fact",
    ) -> None:
        self.memory = sync_memory(memory, "MemqStore")
        default = memory.default_scope
        tenant = tenant or (default.tenant if default else None)
        if not tenant:
            raise ScopeError(
                "MemqStore needs a tenant: MemqStore(memory, tenant='acme'), or Memory(..., scope='acme')"
            )
        self.tenant = lgmap.scope_for(tenant, {}, ()).tenant
        self.scope_map = lgmap.check_scope_map(scope_map)
        self.fields = lgmap.index_fields(index)
        self.index_config = {"fields": list(self.fields)}
        self.policy = policy
        self.search_options = dict(search_options or {})
        self.kind = kind

    # -- BaseStore ---------------------------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        ops = list(ops)
        for op in ops:
            _check_op(op)
        results: list[Result] = [None] * len(ops)
        gets = [(i, op) for i, op in enumerate(ops) if isinstance(op, GetOp)]
        if gets:
            found = self._current([lgmap.ref_of(op.namespace, op.key) for _, op in gets])
            for i, op in gets:
                record = found.get(lgmap.ref_of(op.namespace, op.key))
                results[i] = None if record is None else _item(record)
        for i, op in enumerate(ops):
            if isinstance(op, SearchOp):
                results[i] = self._search(op)
            elif isinstance(op, ListNamespacesOp):
                results[i] = self._list_namespaces(op)
        puts = {(op.namespace, op.key): op for op in ops if isinstance(op, PutOp)}
        if puts:
            self._apply_puts(list(puts.values()))
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        return await asyncio.to_thread(self.batch, list(ops))

    # -- feedback ----------------------------------------------------------------------------------
    def feedback(
        self,
        retrieval_id: str,
        reward: float,
        *,
        used: Sequence[str | tuple[Sequence[str], str] | Item] | None = None,
        credit: str | None = None,
    ) -> FeedbackRecord:
        """Report the reward a search earned (``retrieval_id`` of its items). ``used``: the items that
        helped — keys, ``(namespace, key)`` pairs or the items themselves; omit to credit all shown."""
        ids = None if used is None else self._used_ids(retrieval_id, used)
        return self.memory.feedback(retrieval_id, reward, used=ids, credit=credit, scope=self.tenant)

    async def afeedback(self, retrieval_id: str, reward: float, **kwargs: Any) -> FeedbackRecord:
        return await asyncio.to_thread(functools.partial(self.feedback, retrieval_id, reward, **kwargs))

    def _used_ids(self, retrieval_id: str, used: Sequence[Any]) -> list[str]:
        if isinstance(used, str | bytes) or not isinstance(used, Sequence):
            raise InvalidInputError("used must be a list of keys, (namespace, key) pairs or items")
        logged = self.memory.retrieval(retrieval_id, scope=self.tenant)
        shown: list[tuple[tuple[str, ...], str, str]] = []
        for entry in logged.shown:
            lg = self.memory.get(entry.id, scope=self.tenant, include_deleted=True).metadata.get(lgmap.META)
            if lg:
                shown.append((tuple(lg["path"].split(".")), lg["key"], entry.id))
        ids: list[str] = []
        for want in used:
            if isinstance(want, Item):
                want = (want.namespace, want.key)
            if isinstance(want, str):
                match = [rid for _, key, rid in shown if key == want]
            elif isinstance(want, tuple | list) and len(want) == 2 and isinstance(want[1], str):
                match = [rid for ns, key, rid in shown if key == want[1] and ns == tuple(want[0])]
            else:
                raise InvalidInputError(
                    f"used entries are keys, (namespace, key) pairs or items; got {want!r}"
                )
            if not match:
                raise NotFoundError(f"{want!r} was not among the items retrieval {retrieval_id} showed")
            if len(match) > 1:
                raise InvalidInputError(
                    f"key {want!r} names items in several namespaces: pass (namespace, key)"
                )
            ids.append(match[0])
        return ids

    # -- reads -------------------------------------------------------------------------------------
    def _current(self, refs: Sequence[str]) -> dict[str, MemoryRecord]:
        """The current record of each ref that has one (the newest, should two writers have raced)."""
        out: dict[str, MemoryRecord] = {}
        unique = list(dict.fromkeys(refs))
        for start in range(0, len(unique), _PAGE):
            chunk = unique[start : start + _PAGE]
            for record in self.memory.iter(scope=self.tenant, filters={_REF: {"in": chunk}}, limit=_PAGE):
                out[record.metadata[lgmap.META]["ref"]] = record
        return out

    def _search(self, op: SearchOp) -> list[SearchItem]:
        if not isinstance(op.limit, int) or not isinstance(op.offset, int) or op.offset < 0:
            raise InvalidInputError(
                f"limit and offset must be integers, offset >= 0 (got {op.limit}, {op.offset})"
            )
        if op.limit <= 0:
            return []
        scope = lgmap.scope_for(self.tenant, self.scope_map, op.namespace_prefix)
        conds = [lgmap.prefix_filter(op.namespace_prefix), *lgmap.value_filter(op.filter)]
        if not (op.query or "").strip():  # no query (or a blank one): filter and list, as InMemoryStore
            records = self._listed(scope, conds, op.offset + op.limit)[op.offset :]
            return [_item(r, score=None) for r in records]
        indexed = {f"metadata.{lgmap.META}.indexed": True}
        retrieval = self.memory.search(
            op.query,
            scope=scope,
            k=op.offset + op.limit,
            filters={"and": [*conds, indexed]},
            policy=self.policy,
            **self.search_options,
        )
        items: list[SearchItem] = [
            _item(h.record, score=h.score, retrieval_id=retrieval.id) for h in retrieval.hits[op.offset :]
        ]
        if len(items) < op.limit:  # as InMemoryStore: fill up with the items that have no vector
            unindexed = {f"metadata.{lgmap.META}.indexed": False}
            extra = self._listed(scope, [*conds, unindexed], op.limit - len(items))
            items.extend(_item(r, score=None, retrieval_id=retrieval.id) for r in extra)
        return items

    def _listed(self, scope: Any, conds: list[dict[str, Any]], count: int) -> list[MemoryRecord]:
        out: list[MemoryRecord] = []
        for record in self.memory.iter(scope=scope, filters={"and": conds}, limit=min(count, _PAGE)):
            out.append(record)
            if len(out) >= count:
                break
        return out

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        conds = op.match_conditions or ()
        prefix: tuple[str, ...] = ()
        for cond in conds:  # a wildcard-free prefix narrows the scan in SQL
            if cond.match_type == "prefix" and "*" not in cond.path and len(cond.path) > len(prefix):
                prefix = tuple(cond.path)
        paths: set[str] = set()
        for record in self.memory.iter(scope=self.tenant, filters=lgmap.prefix_filter(prefix), limit=_PAGE):
            paths.add(record.metadata[lgmap.META]["path"])
        found = [tuple(p.split(".")) for p in paths]
        found = [ns for ns in found if all(lgmap.matches(c.match_type, c.path, ns) for c in conds)]
        if op.max_depth is not None:
            found = list({ns[: op.max_depth] for ns in found})
        return sorted(found)[op.offset : op.offset + op.limit]

    # -- writes ------------------------------------------------------------------------------------
    def _apply_puts(self, puts: list[PutOp]) -> None:
        existing = self._current([lgmap.ref_of(op.namespace, op.key) for op in puts])
        now = utcnow().isoformat()
        new: list[dict[str, Any]] = []
        updates: list[tuple[MemoryRecord, dict[str, Any]]] = []
        deletes: list[str] = []
        for op in puts:  # build and validate every write before the first one
            record = existing.get(lgmap.ref_of(op.namespace, op.key))
            if op.value is None:
                if record is not None:
                    deletes.append(record.id)
                continue
            if op.ttl is not None:
                raise NotImplementedError("TTL is not supported by MemqStore; put with ttl=None")
            if not isinstance(op.value, Mapping):
                raise InvalidInputError(f"a store value is a dict, not {type(op.value).__name__}")
            payload = check_json({"value": dict(op.value)}, "value", self.memory.config)
            fields = None if op.index is False else (self.fields if op.index is None else list(op.index))
            text, indexed = lgmap.item_text(payload["value"], fields)
            created = record.metadata[lgmap.META]["created_at"] if record is not None else now
            fields_out = {
                "text": check_text(text, self.memory.config),
                "payload": payload,
                "metadata": {
                    lgmap.META: lgmap.placement(op.namespace, op.key, indexed=indexed, created_at=created)
                },
            }
            if record is None:
                scope = lgmap.scope_for(self.tenant, self.scope_map, op.namespace)
                new.append({**fields_out, "kind": self.kind, "scope": scope})
            else:
                updates.append((record, fields_out))
        if new:
            self.memory.add(new, scope=self.tenant, actor="langgraph")
        for record, changes in updates:
            if changes["text"] == record.text:
                changes.pop("text")  # same text: no re-embedding
            self.memory.update(record.id, scope=self.tenant, actor="langgraph", reason="put", **changes)
        for record_id in deletes:
            self.memory.delete(record_id, scope=self.tenant, actor="langgraph", reason="delete")


def _check_op(op: Any) -> None:
    if isinstance(op, GetOp | PutOp):
        lgmap.check_namespace(op.namespace, for_write=isinstance(op, PutOp))
        if not isinstance(op.key, str) or not op.key:
            raise InvalidInputError(f"a store key is a non-empty string, got {op.key!r}")
    elif isinstance(op, SearchOp):
        lgmap.check_namespace(op.namespace_prefix, for_write=False)
    elif isinstance(op, ListNamespacesOp):
        for cond in op.match_conditions or ():
            lgmap.check_namespace(tuple(p for p in cond.path if p != "*"), for_write=False)
    else:
        raise InvalidInputError(f"unknown store operation {type(op).__name__}")


def _item(
    record: MemoryRecord, *, score: float | None = ..., retrieval_id: str | None = None
) -> Any:  # Item, or MemqSearchItem when a score (even None) is given
    lg = record.metadata[lgmap.META]
    fields = dict(
        namespace=tuple(lg["path"].split(".")),
        key=lg["key"],
        value=record.payload["value"],
        created_at=datetime.fromisoformat(lg["created_at"]),
        updated_at=record.recorded_at,
    )
    if score is ...:
        return Item(**fields)
    return MemqSearchItem(**fields, score=score, retrieval_id=retrieval_id, record_id=record.id)


def create_feedback_tool(store: MemqStore | None = None, *, name: str = "memory_feedback") -> StructuredTool:
    """A LangChain tool the agent calls to report reward on a store search.

    With ``store=None`` it uses the store of the running graph (``langgraph.config.get_store()``), as
    LangMem's memory tools do. The model passes the ``retrieval_id`` the search results carry, a
    reward, and optionally the keys of the items it used.
    """

    def resolve() -> MemqStore:
        if store is not None:
            return store
        from langgraph.config import get_store

        found = get_store()
        if not isinstance(found, MemqStore):
            raise InvalidInputError(f"the graph's store is a {type(found).__name__}, not a MemqStore")
        return found

    def memory_feedback(retrieval_id: str, reward: float, used_keys: list[str] | None = None) -> str:
        fb = resolve().feedback(retrieval_id, reward, used=used_keys)
        return f"feedback recorded: reward {fb.reward} credited to {len(fb.credits)} memories"

    async def amemory_feedback(retrieval_id: str, reward: float, used_keys: list[str] | None = None) -> str:
        return await asyncio.to_thread(memory_feedback, retrieval_id, reward, used_keys)

    return StructuredTool.from_function(
        memory_feedback,
        amemory_feedback,
        name=name,
        description=(
            "Report how the memories a search returned worked out, so memory learns which ones help. "
            "Pass the retrieval_id of the search results, a reward (1 = they helped, 0 = they did not) "
            "and optionally the keys of the memories you used."
        ),
    )
