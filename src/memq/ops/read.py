"""Read operations: search (logged for feedback), get, list, history, stats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from memq.errors import NotFoundError
from memq.learn.base import Selection, Window
from memq.ops.core import Core, ensure_space
from memq.ops.learning import learner_for
from memq.ops.runner import Op, db, work
from memq.retrieve.features import FEATURE_SET, feature_matrix, query_terms
from memq.retrieve.pipeline import Recipe, diversify, recipe
from memq.store.base import POOL_SCORES, CandidatePool, LogEntry
from memq.types import (
    HistoryEvent,
    Hit,
    MemoryRecord,
    Page,
    Retrieval,
    SignalScores,
    StoreStats,
    utcnow,
)
from memq.validate import ScopeLike, check_text


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
    """Find the records most likely to help with ``query``.

    One path for every search: dense and lexical candidates, fused and spread along links by the
    recipe (:class:`SearchOptions`: mode, fusion, weights, link_weight, recency_half_life_days,
    mmr_lambda, window, ...); one feature vector per candidate of the recipe's top ``window``; then a
    scorer picks k — the recipe, or the learner once it has been shown to do better on this tenant's
    log (``config.learning``). ``policy`` names the learner this search trains (similarity, memrl,
    memento_q, memq; default ``config.learning.learner``). ``filters`` uses the filter language of
    :mod:`memq.retrieve.filters`; ``as_of`` asks what memq knew at a system time, ``valid_at`` what
    held in the world at a time. The search is logged (``config.log_retrievals``) with its window's
    features, the shown list and propensities, so :meth:`feedback` can learn from it.
    """
    text = check_text(query, core.config)
    opts = core.options(k, {**options, "explain": explain})
    q = core.query(scope, filters, kinds, as_of, valid_at, include_invalidated)
    name = policy if policy is not None else core.config.learning.learner
    entry = None if name is None else (yield from learner_for(core, q.scope.tenant, name))
    vector = None
    if opts.mode in ("hybrid", "dense"):
        yield from ensure_space(core)
        vector = yield work(core.embed_query, text)
    found: CandidatePool = yield db.search_candidates(
        q, opts.pool, vector=vector, text=text if opts.mode in ("hybrid", "lexical") else None
    )
    signals, rows = found.signals, found.rows
    now = utcnow()
    ranked = recipe(signals, rows, opts, now)
    ids = ranked.top(opts.window_size)
    learn = entry is not None and entry.learner.name != "similarity"
    x = None
    if learn or core.config.log_retrievals:
        x = feature_matrix(query_terms(text), [rows[rid] for rid in ids], ranked.signals, now)
    window = Window(ids, x if x is not None else np.zeros((len(ids), 0)), vector)
    if learn and entry.learner.needs_vectors and entry.learner.trained:  # type: ignore[union-attr]
        window.vectors = _stack(ids, (yield db.vectors(q.scope.tenant, ids)), vector)
    served = Selection(ranked.top(opts.k), [1.0] * min(opts.k, len(ids)), {})
    shadow: Selection | None = None
    scorer = opts.policy  # the recipe's name, unless the learner serves
    learned_scores: dict[str, float] = {}
    if learn:
        with core.lock:
            learned = entry.learner.select(window, opts.k, core.rng)  # type: ignore[union-attr]
        learned_scores = learned.scores if entry.learner.trained else {}  # type: ignore[union-attr]
        if entry.serves(core.config.learning.promotion):  # type: ignore[union-attr]
            served, shadow, scorer = learned, served, entry.learner.name  # type: ignore[union-attr]
        else:
            shadow = learned
    scores = served.scores or {rid: ranked.scores[rid] for rid in ids}
    mmr_scores: dict[str, float] = {}
    if opts.mmr_lambda is not None and served.ids:
        served, mmr_scores = yield from _diversify(core, q.scope.tenant, ids, scores, served, opts)
    explored = _explore(core, served, shadow, opts.k)
    records = yield db.visible(q, served.ids)
    hits = [
        Hit(
            record=records[rid],
            score=mmr_scores.get(rid, scores.get(rid, ranked.scores.get(rid, 0.0))),
            rank=position,
            propensity=prop,
            explored=rid == explored,
            signals=_explain(ranked, rid, learned_scores.get(rid), mmr_scores.get(rid))
            if opts.explain
            else None,
        )
        for position, (rid, prop) in enumerate(zip(served.ids, served.propensities, strict=True), start=1)
        if rid in records
    ]
    retrieval = Retrieval(
        query=text,
        scope=q.scope,
        k=opts.k,
        policy=scorer,
        policy_version="1" if entry is None else entry.learner.version,
        learner=name,
        hits=hits,
    )
    if core.config.log_retrievals:
        lexical = {c.id: c.score for c in reversed(signals.get("lexical", ()))}  # first occurrence wins
        nan = float("nan")
        yield db.log_retrieval(
            LogEntry(
                retrieval,
                pool=list(ranked.signals),
                pool_scores=_float32(
                    [
                        (nan if s.dense is None else s.dense, lexical.get(rid, nan), ranked.scores[rid])
                        for rid, s in ranked.signals.items()
                    ]
                ).reshape(-1, len(POOL_SCORES)),
                query_vector=vector,
                embedding_model=None if vector is None else core.embedder.model_id,
                window=ids,
                features=x,
                feature_set=FEATURE_SET,
                shadow=None if shadow is None else shadow.ids,
            )
        )
    return retrieval


_F32_MAX = float(np.finfo(np.float32).max)


def _float32(rows: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """The pool's scores as float32 (the log's column), a finite score beyond float32's range kept
    at its largest value rather than cast to inf (NaN, a signal that did not find the row, stays)."""
    return np.clip(np.array(rows, dtype=np.float64), -_F32_MAX, _F32_MAX).astype(np.float32)


def _stack(ids: Sequence[str], found: Mapping[str, np.ndarray], like: np.ndarray | None) -> np.ndarray | None:
    """The window's vectors as one matrix (zeros for a record without one: learners skip those)."""
    dim = len(like) if like is not None else (len(next(iter(found.values()))) if found else 0)
    if not dim:
        return None
    return np.stack([found.get(rid, np.zeros(dim, np.float32)) for rid in ids]).astype(np.float32)


def _explore(core: Core, served: Selection, shadow: Selection | None, k: int) -> str | None:
    """With probability ε, give the last shown slot to a uniform draw from the shadow's picks that the
    serving policy did not make; set the marginal propensities. Returns the explored id, if any."""
    eps = core.config.learning.explore
    if shadow is None or eps <= 0 or len(served.ids) < k:
        return None
    others = [rid for rid in shadow.ids if rid not in set(served.ids)]
    if not others:
        return None
    served.propensities[-1] *= 1.0 - eps  # the last slot keeps its pick unless exploration takes it
    with core.lock:
        go = core.rng.random() < eps
        pick = others[int(core.rng.integers(len(others)))] if go else None
    if pick is None:
        return None
    served.ids[-1] = pick
    served.propensities[-1] = eps / len(others)
    return pick


def _diversify(
    core: Core, tenant: str, ids: Sequence[str], scores: Mapping[str, float], served: Selection, opts: Any
) -> Op[tuple[Selection, dict[str, float]]]:
    """MMR over the serving scorer's top 4k (vectors read for those only)."""
    order = sorted(ids, key=lambda rid: -scores.get(rid, -np.inf))[: max(4 * opts.k, opts.k)]
    found = yield db.vectors(tenant, order)
    pool = [rid for rid in order if rid in found]
    if not pool:
        return served, {}
    chosen, values = diversify(
        pool, [scores[rid] for rid in pool], np.stack([found[r] for r in pool]), opts.k, opts.mmr_lambda
    )
    return Selection(chosen, [1.0] * len(chosen), dict(scores)), values


def _explain(ranked: Recipe, rid: str, learned: float | None, mmr: float | None) -> SignalScores:
    s = ranked.signals[rid]
    return SignalScores(
        dense=s.dense,
        dense_rank=s.dense_rank,
        lexical=None if s.lexical is None else s.lexical,
        lexical_rank=s.lexical_rank,
        fused=s.fused,
        links=s.links,
        recency=ranked.recency.get(rid),
        base=ranked.scores[rid],
        base_rank=s.base_rank,
        learned=learned,
        mmr=mmr,
    )


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
