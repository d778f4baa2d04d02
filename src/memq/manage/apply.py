"""Running a manager's plan: the readers a manager reads through, and the writes a plan becomes.

Order of one managed add (sync and async alike):

1. validate the items (as ``add`` does) → input records;
2. ``manager.plan(inputs, ctx)`` — every LLM call happens here; an LLMError leaves the store untouched;
3. :func:`build_writes` — load the latest version of each changed record, build the next versions,
   embed every new text in one batch; an unknown record or bad change raises before any write. A
   record the manager read is changed on top of the version it read: if another writer changed it
   since, the store refuses that version (ConflictError) rather than silently overwriting the change;
4. :func:`write_batch` — the whole plan as one :class:`~memq.store.base.WriteBatch`: the new records
   (one insert group per distinct reason, so each history entry keeps its own reason), each new
   version, the learner's agreement statistics of new experiences, all with
   ``actor="manager:<name>"``; the store applies it in ONE transaction (``Store.apply_writes``), so a
   failure of any part (a conflict, a record deleted meanwhile, a lost connection) writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memq.config import MemoryConfig
from memq.errors import NotFoundError
from memq.learn.base import Learner
from memq.learn.experience import agreement_deltas
from memq.manage.base import REASON_CHARS, Insert, Plan
from memq.ops.runner import Call, db
from memq.retrieve.filters import parse_filter
from memq.store.base import (
    CandidateQuery,
    InsertGroup,
    VersionChange,
    WriteBatch,
    merge_stats,
)
from memq.types import HistoryOp, MemoryRecord, Scope
from memq.validate import next_version

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def _query(scope: Scope, kinds: Sequence[str] | None, include_invalidated: bool = False) -> CandidateQuery:
    spec = {"kind": {"in": list(kinds)}} if kinds else None
    return CandidateQuery(scope=scope, filter=parse_filter(spec), include_invalidated=include_invalidated)


class StoreReader:
    """The reads a manager makes while it plans, through ``perform`` (a store call from the thread the
    plan runs on: :func:`memq.ops.runner.call_from_thread`).

    It remembers the version of each record the manager was shown (``seen``): the manager's decisions
    are about that version, and :func:`build_writes` asks the store for the version after it.
    """

    def __init__(self, perform: Callable[[Call], Any], scope: Scope, embed: EmbedFn) -> None:
        self._perform, self.scope, self._embed = perform, scope, embed
        self.seen: dict[str, int] = {}

    def _saw(self, records: Sequence[MemoryRecord]) -> None:
        for r in records:
            self.seen.setdefault(r.id, r.version)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def similar(
        self, vector: np.ndarray, k: int, *, kinds: Sequence[str] | None, include_invalidated: bool
    ) -> list[tuple[MemoryRecord, float]]:
        q = _query(self.scope, kinds, include_invalidated)
        cands = self._perform(db.dense_candidates(q, np.asarray(vector, np.float32), k))
        found = self._perform(db.visible(q, [c.id for c in cands]))
        self._saw(list(found.values()))
        return [(found[c.id], float(c.score)) for c in cands if c.id in found]

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[MemoryRecord]:
        found = self._perform(db.get(self.scope.tenant, list(ids), with_embedding=with_embedding))
        self._saw(found)
        return found

    def of_kind(self, kind: str, limit: int) -> list[MemoryRecord]:
        page = self._perform(db.list(_query(self.scope, [kind]), cursor=None, limit=limit))
        found = [r for r in page.records if r.scope == self.scope]
        self._saw(found)
        return found


@dataclass
class Writes:
    """A plan made concrete: records with vectors, next versions, grouped for the store."""

    inserts: list[tuple[str, list[MemoryRecord]]] = field(default_factory=list)  # (reason, records)
    versions: list[VersionChange] = field(default_factory=list)
    experiences: list[Insert] = field(default_factory=list)  # inserts with learner agreement hooks

    @property
    def records(self) -> list[MemoryRecord]:
        return [r for _, group in self.inserts for r in group] + [v.new for v in self.versions]


def changed_ids(plan: Plan) -> list[str]:
    return list(dict.fromkeys(c.record_id for c in plan.changes))


def build_writes(
    plan: Plan,
    current: dict[str, MemoryRecord],
    *,
    tenant: str,
    actor: str,
    config: MemoryConfig,
    embed: EmbedFn,
    model_id: str,
    seen: Mapping[str, int] | None = None,
) -> Writes:
    """Turn ``plan`` into store writes. ``current``: the latest version (with its vector) of every
    record the plan changes; several changes of one record become consecutive versions.

    ``seen``: the version of each record the manager read (:attr:`StoreReader.seen`). A change of such a
    record is written as the version after the one the manager read, so the store's version check
    refuses it (ConflictError, the whole plan unwritten) when another writer changed the record since.
    A record deleted since is left to the store too (NotFoundError there, inside the transaction).
    """
    writes = Writes()
    latest = dict(current)
    seen = seen or {}
    versions: list[tuple[MemoryRecord, str, object]] = []
    for change in plan.changes:
        if change.record_id not in latest:
            raise NotFoundError(
                f"the {actor} plan changes record {change.record_id}, which has no current version"
            )
        old = latest[change.record_id]
        new = next_version(old, change.changes, config)
        read = seen.get(change.record_id)
        if old is current.get(change.record_id) and read is not None and read != old.version:
            # the manager decided on version ``read``: ask the store for read + 1, which it refuses
            new = new.model_copy(update={"version": read + 1})
        if new.text != old.text:
            new.embedding = None  # re-embedded below
        latest[change.record_id] = new
        versions.append((new, change.reason, change.op))
    for record in [i.record for i in plan.inserts] + [v for v, _, _ in versions if v.embedding is None]:
        _flag(record)
    to_embed = [i.record for i in plan.inserts if i.record.embedding is None]
    to_embed += [v for v, _, _ in versions if v.embedding is None]
    if to_embed:
        vectors = embed([r.text for r in to_embed])
        for record, vector in zip(to_embed, vectors, strict=True):
            record.embedding = np.asarray(vector, np.float32).tolist()
            record.embedding_model = model_id
    for ins in plan.inserts:
        ins.record.embedding_model = ins.record.embedding_model or model_id
        reason = ins.reason[:REASON_CHARS]
        if writes.inserts and writes.inserts[-1][0] == reason:
            writes.inserts[-1][1].append(ins.record)
        else:
            writes.inserts.append((reason, [ins.record]))
        if ins.nearest is not None:
            writes.experiences.append(ins)
    for new, reason, op in versions:
        writes.versions.append(
            VersionChange(tenant, new.id, new, op, actor=actor, reason=reason[:REASON_CHARS])  # type: ignore[arg-type]
        )
    return writes


def write_batch(writes: Writes, tenant: str, actor: str, learner: Learner | None = None) -> WriteBatch:
    """The plan's writes as one batch for ``Store.apply_writes``: insert groups (one per reason), the
    new versions, and (given the tenant's ``memq`` learner) the agreement statistics each new
    experience adds to itself and its nearest stored experiences, summed per record."""
    stats: dict[str, dict[str, float]] = {}
    if learner is not None:
        for ins in writes.experiences:
            deltas = agreement_deltas(learner, ins.record, ins.nearest or [], ins.neighbours or {})
            for rid, delta in deltas.items():
                stats[rid] = merge_stats(stats.get(rid, {}), delta)
    return WriteBatch(
        tenant,
        inserts=[InsertGroup(group, HistoryOp.ADD, actor, reason) for reason, group in writes.inserts],
        versions=list(writes.versions),
        stats=stats,
    )


def _flag(record: MemoryRecord) -> None:
    """Injection flags of a manager-written text (as ``add`` sets them on what callers write)."""
    from memq.llm.safety import FLAGS_KEY, injection_flags

    flags = injection_flags(record.text)
    if flags:
        record.metadata = {**record.metadata, FLAGS_KEY: flags}
    elif FLAGS_KEY in record.metadata:
        record.metadata = {k: v for k, v in record.metadata.items() if k != FLAGS_KEY}


def without_vectors(records: Sequence[MemoryRecord]) -> list[MemoryRecord]:
    return [r.model_copy(update={"embedding": None}) for r in records]
