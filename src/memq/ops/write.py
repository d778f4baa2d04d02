"""Write operations: add (plain or through a manager), update, invalidate, delete, purge, experiences,
budgeted forgetting. Each is one generator run by either facade (:mod:`memq.ops.runner`).

The write path: validate → build version-1 records → embed (one batch) → one store transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from memq.errors import InvalidInputError, NotFoundError
from memq.learn.experience import NEIGHBOURS
from memq.learn.forgetting import ForgettingPolicy, select_evictions
from memq.manage import ManageContext, Manager, ManageResult, make_manager
from memq.manage.apply import StoreReader, build_writes, changed_ids, without_vectors, write_batch
from memq.ops.core import Core, ensure_space, usage_delta
from memq.ops.learning import experience_batch, learner_for
from memq.ops.runner import Call, Op, db, work, work_with_store
from memq.store.base import CandidateQuery, VersionChange
from memq.types import HistoryOp, Kind, MemoryRecord, Page, Scope, as_utc, utcnow
from memq.validate import ScopeLike, check_text, next_version


def add(
    core: Core,
    items: Any,
    *,
    scope: ScopeLike | None = None,
    kind: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    payload: Mapping[str, Any] | None = None,
    valid_from: datetime | None = None,
    valid_to: datetime | None = None,
    actor: str | None = None,
    manager: str | Manager | None = None,
    manager_params: Mapping[str, Any] | None = None,
) -> Op[Any]:
    """Store one memory (text, dict or NewRecord) or a batch (a list). A batch is one transaction.

    Returns the stored record, or a list of them for a batch. Keyword fields apply to every item
    that does not set them itself.

    ``manager`` (a name from :data:`memq.manage.MANAGERS` or a :class:`memq.manage.Manager`)
    hands the items to a write policy instead: ``dedupe``, ``reconcile``, ``experience``,
    ``insights``, ``notes``, ``episodes`` (or ``append``). It returns a
    :class:`memq.manage.ManageResult` with every decision and the versions written; every write
    is in the history with ``actor="manager:<name>"`` and the decision's reason. All LLM calls and
    embeddings happen before the first write, so an LLMError writes nothing.
    ``manager_params`` configures a manager given by name (e.g. ``{"threshold": 0.9}``). Without
    ``manager``, ``config.manager`` (with ``config.manager_params``) applies when it names one other
    than ``append`` — e.g. the write policy ``memq evolve`` chose.
    """
    defaults = dict(kind=kind, metadata=metadata, payload=payload, valid_from=valid_from, valid_to=valid_to)
    if manager is None and core.config.manager not in (None, "append"):
        manager, manager_params = core.config.manager, core.config.manager_params
    if manager is not None:
        if actor is not None:
            raise InvalidInputError("a managed add records actor='manager:<name>' itself; do not pass actor")
        return (yield from _add_managed(core, items, scope, defaults, _manager(manager, manager_params)))
    records, single = core.prepare_add(items, scope, defaults)
    yield from ensure_space(core)
    core.attach(records, (yield work(core.embed_documents, [r.text for r in records])))
    yield db.insert(records, op=HistoryOp.ADD, actor=actor)
    yield from _keep_capacity(core, records)
    return records[0] if single else records


def _manager(manager: str | Manager, params: Mapping[str, Any] | None) -> Manager:
    if isinstance(manager, str):
        return make_manager(manager, **dict(params or {}))
    if params:
        raise InvalidInputError("manager_params apply to a manager given by name, not to an instance")
    if not isinstance(manager, Manager):
        raise InvalidInputError(f"manager must be a name or a Manager, not {type(manager).__name__}")
    return manager


def _plan(
    perform: Callable[[Call], Any], core: Core, mgr: Manager, inputs: list[MemoryRecord], scope: Scope
) -> tuple[Any, dict[str, int]]:
    """Run the manager's plan (every LLM call happens here) with reads of the store; nothing is written."""
    reader = StoreReader(perform, scope, core.embed_documents)
    ctx = ManageContext(scope=scope, config=core.config, reader=reader, llm=core.llm, now=utcnow())
    if mgr.uses_llm and getattr(mgr, "requires_llm", True):
        ctx.require_llm(mgr.name)
    return mgr.plan(inputs, ctx), reader.seen


def _add_managed(
    core: Core, items: Any, scope: ScopeLike | None, defaults: Mapping[str, Any], mgr: Manager
) -> Op[ManageResult]:
    inputs, _ = core.prepare_add(items, scope, defaults)
    sc = core.scope(scope)
    yield from ensure_space(core)
    before = core.usage().total
    plan, seen = yield work_with_store(_plan, core, mgr, inputs, sc)  # an LLMError leaves the store as it was
    used = usage_delta(core.usage().total, before)
    # deleted ones too: the store refuses a version of a record deleted since the plan read it
    current = yield db.get(sc.tenant, changed_ids(plan), include_deleted=True, with_embedding=True)
    actor = f"manager:{mgr.name}"
    writes = yield work(
        lambda: build_writes(
            plan,
            {r.id: r for r in current},
            tenant=sc.tenant,
            actor=actor,
            config=core.config,
            embed=core.embed_documents,
            model_id=core.embedder.model_id,
            seen=seen,
        )
    )
    learner = (yield from learner_for(core, sc.tenant, "memq")).learner if writes.experiences else None
    # the whole plan in ONE transaction: any failure (a conflict, a lost connection) writes nothing
    yield db.apply_writes(write_batch(writes, sc.tenant, actor, learner))
    yield from _keep_capacity(core, [r for _, group in writes.inserts for r in group])
    return ManageResult(
        manager=mgr.name, decisions=plan.decisions, written=without_vectors(writes.records), usage=used
    )


def _keep_capacity(core: Core, written: Sequence[MemoryRecord]) -> Op[None]:
    """With ``config.capacity``: trim each scope written to (a separate transaction, after the write)."""
    if core.config.capacity is None:
        return
    for sc in dict.fromkeys(r.scope for r in written):
        yield from forget(core, core.config.capacity, scope=sc)


def _current(core: Core, scope: Scope, record_id: str) -> Op[MemoryRecord]:
    found = yield db.get(scope.tenant, [record_id], with_embedding=True)
    if not found:
        raise NotFoundError(f"no current record {record_id} in tenant {scope.tenant!r}")
    return found[0]  # type: ignore[no-any-return]


def update(
    core: Core,
    record_id: str,
    *,
    scope: ScopeLike | None = None,
    reason: str | None = None,
    actor: str | None = None,
    **changes: Any,
) -> Op[MemoryRecord]:
    """Write a new version with ``changes`` (text, kind, payload, metadata, valid_from, valid_to,
    links, provenance); the old version is expired, not lost (see :meth:`history`)."""
    if not changes:
        raise InvalidInputError("update() needs at least one field to change")
    sc = core.scope(scope)
    current = yield from _current(core, sc, record_id)
    new = next_version(current, changes, core.config)
    if "text" in changes and new.text != current.text:
        yield from ensure_space(core)
        core.attach([new], (yield work(core.embed_documents, [new.text])))
    return (
        yield db.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.UPDATE, actor=actor, reason=reason)
        )
    )


def invalidate(
    core: Core,
    record_id: str,
    *,
    scope: ScopeLike | None = None,
    at: datetime | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Op[MemoryRecord]:
    """End the record's world-time validity at ``at`` (default now). It stays stored and searchable
    with ``include_invalidated=True`` or ``valid_at`` before ``at``."""
    sc = core.scope(scope)
    current = yield from _current(core, sc, record_id)
    end = as_utc(at) if at else utcnow()
    if current.valid_from and end <= current.valid_from:
        raise InvalidInputError("cannot invalidate a record before it became valid")
    new = next_version(current, {"valid_to": end}, core.config)
    return (
        yield db.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.INVALIDATE, actor=actor, reason=reason)
        )
    )


def delete(
    core: Core,
    record_id: str,
    *,
    scope: ScopeLike | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> Op[None]:
    """Soft delete: hidden from search and list, kept in history and as-of queries."""
    yield db.delete(core.scope(scope).tenant, record_id, actor=actor, reason=reason)


def purge(core: Core, record_ids: str | Sequence[str], *, scope: ScopeLike | None = None) -> Op[int]:
    """Hard delete for erasure requests: every version, vector, lexical entry, link, utility
    row and history event of these records. Returns how many records were removed."""
    ids = [record_ids] if isinstance(record_ids, str) else list(record_ids)
    return (yield db.purge(core.scope(scope).tenant, ids))


def remember_experience(
    core: Core,
    task: str,
    answer_or_plan: str,
    outcome: str,
    reward: float,
    trajectory: Any = None,
    *,
    scope: ScopeLike | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Op[MemoryRecord]:
    """Write an ``experience`` record for an agent loop (MemRL / Memento).

    The task text is what gets embedded and searched; answer, outcome, reward and trajectory go to
    the payload. A new task whose nearest stored experience task has cosine ≥ 0.9 joins that
    experience's task key (``payload.task_key``, and a ``same_task`` link), as MemRL merges keys.
    """
    from memq.manage.experience import experience_item

    sc = core.scope(scope)
    check_text(task, core.config)
    yield from ensure_space(core)
    vector = yield work(core.embed_query, task)
    nearest = yield db.dense_candidates(
        core.query(sc, None, [Kind.EXPERIENCE.value], include_invalidated=True), vector, NEIGHBOURS
    )
    neighbours = {r.id: r for r in (yield db.get(sc.tenant, [c.id for c in nearest]))}
    item = experience_item(task, answer_or_plan, outcome, reward, trajectory, metadata, nearest, neighbours)
    records, _ = core.prepare_add(item, sc, {})
    core.attach(records, (yield work(core.embed_documents, [r.text for r in records])))
    learner = (yield from learner_for(core, sc.tenant, "memq")).learner
    record, batch = experience_batch(sc.tenant, records, learner, nearest, neighbours)
    yield db.apply_writes(batch)
    yield from _keep_capacity(core, records)
    return record


# -- budgeted forgetting ----------------------------------------------------------------------------


def forget(
    core: Core, capacity: int, *, scope: ScopeLike | None = None, policy: ForgettingPolicy | None = None
) -> Op[list[str]]:
    """Archive the records of ``scope`` with the lowest keep score (see
    :mod:`memq.learn.forgetting`) until at most ``capacity`` remain; returns the archived ids.

    The scope's records are its current versions, valid or invalidated (an invalidated record
    still takes space and can still be searched with ``include_invalidated``). Archived records
    are hidden like deleted ones, listed by :meth:`archived` and brought back by :meth:`restore`.
    """
    if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
        raise InvalidInputError(f"capacity must be a non-negative integer, got {capacity!r}")
    sc = core.scope(scope)
    query = CandidateQuery(scope=sc, include_invalidated=True)
    records: list[MemoryRecord] = []
    cursor = None
    while True:
        page = yield db.list(query, cursor=cursor, limit=core.config.max_page)
        records += page.records
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    evict = select_evictions(records, capacity, policy=policy)
    if evict:
        yield db.archive(sc.tenant, evict, reason=f"forget: capacity {capacity}", actor="memq.forget")
    return evict


def archived(
    core: Core, *, scope: ScopeLike | None = None, cursor: str | None = None, limit: int = 100
) -> Op[Page]:
    """One page of archived records of ``scope`` (latest version each), in id order."""
    query = CandidateQuery(scope=core.scope(scope), include_invalidated=True)
    return (yield db.list_archived(query, cursor=cursor, limit=core.limit(limit)))


def restore(core: Core, record_id: str, *, scope: ScopeLike | None = None) -> Op[MemoryRecord]:
    """Bring an archived record back as a new current version (same text, metadata, vector).

    NotFoundError for an unknown record, ConflictError for one that is not archived."""
    return (yield db.restore(core.scope(scope).tenant, record_id))
