"""Running a manager's plan: the readers a manager reads through, and the writes a plan becomes.

Order of one managed add (sync and async alike):

1. validate the items (as ``add`` does) → input records;
2. ``manager.plan(inputs, ctx)`` — every LLM call happens here; an LLMError leaves the store untouched;
3. :func:`build_writes` — load the current version of each changed record, build the next versions,
   embed every new text in one batch; a missing record or bad change raises before any write;
4. write: the new records (one transaction per distinct reason, so each history entry keeps its own
   reason), then each new version, all with ``actor="manager:<name>"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from memq.config import MemoryConfig
from memq.errors import NotFoundError
from memq.manage.base import REASON_CHARS, Insert, Plan
from memq.retrieve.filters import parse_filter
from memq.store.base import AsyncStore, CandidateQuery, Store, VersionChange
from memq.types import MemoryRecord, Scope
from memq.validate import next_version

EmbedFn = Callable[[Sequence[str]], np.ndarray]


def _query(scope: Scope, kinds: Sequence[str] | None, include_invalidated: bool = False) -> CandidateQuery:
    spec = {"kind": {"in": list(kinds)}} if kinds else None
    return CandidateQuery(scope=scope, filter=parse_filter(spec), include_invalidated=include_invalidated)


class SyncReader:
    """Reads of a sync store for a manager."""

    def __init__(self, store: Store, scope: Scope, embed: EmbedFn) -> None:
        self.store, self.scope, self._embed = store, scope, embed

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def similar(
        self, vector: np.ndarray, k: int, *, kinds: Sequence[str] | None, include_invalidated: bool
    ) -> list[tuple[MemoryRecord, float]]:
        q = _query(self.scope, kinds, include_invalidated)
        cands = self.store.dense_candidates(q, np.asarray(vector, np.float32), k)
        found = self.store.visible(q, [c.id for c in cands])
        return [(found[c.id], float(c.score)) for c in cands if c.id in found]

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[MemoryRecord]:
        return self.store.get(self.scope.tenant, list(ids), with_embedding=with_embedding)

    def of_kind(self, kind: str, limit: int) -> list[MemoryRecord]:
        page = self.store.list(_query(self.scope, [kind]), cursor=None, limit=limit)
        return [r for r in page.records if r.scope == self.scope]


class LoopReader:
    """Reads of an async store for a manager running on a worker thread: each read is a coroutine
    scheduled on the facade's event loop (which is free: it awaits the worker thread)."""

    def __init__(
        self, store: AsyncStore, scope: Scope, embed: EmbedFn, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.store, self.scope, self._embed, self.loop = store, scope, embed, loop

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed(texts)

    def similar(
        self, vector: np.ndarray, k: int, *, kinds: Sequence[str] | None, include_invalidated: bool
    ) -> list[tuple[MemoryRecord, float]]:
        q = _query(self.scope, kinds, include_invalidated)
        cands = self._run(self.store.dense_candidates(q, np.asarray(vector, np.float32), k))
        found = self._run(self.store.visible(q, [c.id for c in cands]))
        return [(found[c.id], float(c.score)) for c in cands if c.id in found]

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[MemoryRecord]:
        return self._run(self.store.get(self.scope.tenant, list(ids), with_embedding=with_embedding))

    def of_kind(self, kind: str, limit: int) -> list[MemoryRecord]:
        page = self._run(self.store.list(_query(self.scope, [kind]), cursor=None, limit=limit))
        return [r for r in page.records if r.scope == self.scope]


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
) -> Writes:
    """Turn ``plan`` into store writes. ``current``: the current version (with its vector) of every
    record the plan changes; several changes of one record become consecutive versions."""
    writes = Writes()
    latest = dict(current)
    versions: list[tuple[MemoryRecord, str, object]] = []
    for change in plan.changes:
        if change.record_id not in latest:
            raise NotFoundError(
                f"the {actor} plan changes record {change.record_id}, which has no current version"
            )
        old = latest[change.record_id]
        new = next_version(old, change.changes, config)
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
