"""Read operations: search (logged for feedback), get, list, history, stats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from memq.errors import InvalidInputError, NotFoundError
from memq.learn import Learner, PoolItem
from memq.ops.core import Core, ensure_space
from memq.ops.learning import learner_for
from memq.ops.runner import Op, db, work
from memq.retrieve.pipeline import rank
from memq.store.base import Candidate
from memq.types import HistoryEvent, Hit, MemoryRecord, Page, PoolEntry, Retrieval, StoreStats, utcnow
from memq.validate import ScopeLike, check_text

# options of the hybrid recipe that a learned policy, which ranks dense candidates itself, ignores
_FUSION_ONLY = {
    "mode",
    "fusion",
    "weights",
    "link_weight",
    "rrf_k",
    "recency_half_life_days",
    "recency_weight",
    "mmr_lambda",
}


def search(
    core: Core,
    query: str,
    *,
    scope: ScopeLike | None = None,
    k: int | None = None,
    filters: Mapping[str, Any] | None = None,
    kinds: Sequence[str] | None = None,
    as_of: datetime | None = None,
    valid_at: datetime | None = None,
    include_invalidated: bool = False,
    explain: bool | None = None,
    policy: str | None = None,
    **options: Any,
) -> Op[Retrieval]:
    """Find the records most relevant to ``query``.

    ``filters`` uses the filter language of :mod:`memq.retrieve.filters`; ``as_of`` asks what memq
    knew at a system time, ``valid_at`` what held in the world at a time. Other keyword options
    are :class:`SearchOptions` fields (mode, fusion, weights, recency_half_life_days, mmr_lambda, ...).
    ``policy`` names a learner (similarity, memrl, memento_q, memq) that picks k of the dense
    candidates by learned utility instead of the hybrid recipe.
    """
    text = check_text(query, core.config)
    opts = core.options(k, {**options, "explain": explain})
    q = core.query(scope, filters, kinds, as_of, valid_at, include_invalidated)
    vector = None
    if policy is not None:
        ignored = sorted(set(options) & _FUSION_ONLY)
        if ignored:
            raise InvalidInputError(
                f"{', '.join(ignored)} do not apply to a learned policy, which ranks dense candidates itself"
            )
        learner = yield from learner_for(core, q.scope.tenant, policy)
        yield from ensure_space(core)
        vector = yield work(core.embed_query, text)
        cands = yield db.dense_candidates(q, vector, opts.pool)
        records = yield db.visible(q, [c.id for c in cands], with_embedding=True)
        hits, pool = _learned_hits(core, learner, vector, cands, records, opts.k)
        retrieval = Retrieval(
            query=text, scope=q.scope, k=opts.k, policy=policy, policy_version=learner.version, hits=hits
        )
    else:
        signals = {}
        if opts.mode in ("hybrid", "dense"):
            yield from ensure_space(core)
            vector = yield work(core.embed_query, text)
            signals["dense"] = yield db.dense_candidates(q, vector, opts.pool)
        if opts.mode in ("hybrid", "lexical"):
            signals["lexical"] = yield db.lexical_candidates(q, text, opts.pool)
        ids = list(dict.fromkeys(c.id for cands in signals.values() for c in cands))
        records = yield db.visible(q, ids, with_embedding=opts.mmr_lambda is not None)
        hits = rank(signals, records, opts, utcnow())
        retrieval = Retrieval(query=text, scope=q.scope, k=opts.k, policy=opts.policy, hits=hits)
        pool = _pool_entries(signals) if core.config.log_retrievals else []
    if core.config.log_retrievals:
        yield db.log_retrieval(
            retrieval,
            pool=pool,
            query_vector=vector,
            embedding_model=None if vector is None else core.embedder.model_id,
        )
    return retrieval


def _learned_hits(
    core: Core,
    learner: Learner,
    vector: np.ndarray,
    candidates: Sequence[Candidate],
    records: Mapping[str, MemoryRecord],
    k: int,
) -> tuple[list[Hit], list[PoolEntry]]:
    """Let a learner choose k of the dense candidates; the pool and propensities go to the log."""
    pool = [
        PoolItem(
            c.id,
            c.score,
            records[c.id].utility,
            vector=None if records[c.id].embedding is None else np.asarray(records[c.id].embedding, np.float32),
            answer=None if records[c.id].payload.get("answer") is None else str(records[c.id].payload["answer"]),
        )
        for c in candidates
        if c.id in records
    ]
    with core.lock:
        sel = learner.select(vector, pool, k, core.rng)
    sims = {p.id: p.sim for p in pool}
    hits = [
        Hit(
            record=records[rid].model_copy(update={"embedding": None}),
            score=float(sel.scores.get(rid, sims[rid])),
            rank=i,
            propensity=float(prop),
        )
        for i, (rid, prop) in enumerate(zip(sel.ids, sel.propensities, strict=True), start=1)
    ]
    entries = [PoolEntry(id=p.id, dense=p.sim, score=sel.scores.get(p.id)) for p in pool]
    return hits, entries


def _pool_entries(signals: Mapping[str, Sequence[Candidate]]) -> list[PoolEntry]:
    entries: dict[str, PoolEntry] = {}
    for name, cands in signals.items():
        for c in cands:
            entry = entries.setdefault(c.id, PoolEntry(id=c.id))
            setattr(entry, name, c.score)
    return list(entries.values())


def get(
    core: Core, record_id: str, *, scope: ScopeLike | None = None, include_deleted: bool = False
) -> Op[MemoryRecord]:
    """The latest version of one record (NotFoundError if it does not exist in this tenant)."""
    found = yield db.get(core.scope(scope).tenant, [record_id], include_deleted=include_deleted)
    if not found:
        raise NotFoundError(f"no record {record_id} in this tenant")
    return found[0]  # type: ignore[no-any-return]


def list_page(
    core: Core,
    *,
    scope: ScopeLike | None = None,
    filters: Mapping[str, Any] | None = None,
    kinds: Sequence[str] | None = None,
    cursor: str | None = None,
    limit: int = 100,
    as_of: datetime | None = None,
    valid_at: datetime | None = None,
    include_invalidated: bool = False,
) -> Op[Page]:
    """One page of records in creation order; pass ``page.next_cursor`` for the next one."""
    q = core.query(scope, filters, kinds, as_of, valid_at, include_invalidated)
    return (yield db.list(q, cursor=cursor, limit=core.limit(limit)))


list_page.__name__ = "list"


def history(core: Core, record_id: str, *, scope: ScopeLike | None = None) -> Op[list[HistoryEvent]]:
    """Every event of a record, oldest first, each with the version it produced."""
    return (yield db.history(core.scope(scope).tenant, record_id))


def stats(core: Core, *, scope: ScopeLike | None = None, all_tenants: bool = False) -> Op[StoreStats]:
    """Counts of records, versions, deletions and kinds (this tenant, or every tenant)."""
    return (yield db.stats(None if all_tenants else core.scope(scope).tenant))
