"""The search recipe: candidates from each signal → fusion → link spreading → recency → MMR → top k.

Backends produce candidates (:meth:`Store.dense_candidates`, :meth:`Store.lexical_candidates`);
everything after that is here, identical for every backend and for sync and async callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from memq.retrieve.fusion import RRF_K, mmr, recency_factor, rrf, spread_links, weighted
from memq.store.base import Candidate
from memq.types import Hit, MemoryRecord, SignalScores

MAX_K = 1000
DEFAULT_WEIGHTS = {"dense": 0.4, "lexical": 0.6}
DEFAULT_LINK_WEIGHT = 0.5


class SearchOptions(BaseModel):
    """How ``search`` ranks. The defaults are memq's hybrid recipe: dense + BM25 candidates, weighted
    fusion of min-max normalised scores (0.4 dense, 0.6 lexical), then one hop of score spreading
    along the records' links (``link_weight``). Chosen by LoCoMo turn-level recall (docs/benchmarks-locomo.md).
    """

    model_config = ConfigDict(extra="forbid")

    k: int = Field(default=10, ge=1, le=MAX_K)
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"
    fusion: Literal["rrf", "weighted"] = "weighted"
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    link_weight: float = Field(default=DEFAULT_LINK_WEIGHT, ge=0, le=1)
    rrf_k: int = Field(default=RRF_K, ge=1)
    candidates: int | None = Field(default=None, ge=1, le=10 * MAX_K)
    recency_half_life_days: float | None = Field(default=None, gt=0)
    recency_weight: float = Field(default=0.3, ge=0, le=1)
    mmr_lambda: float | None = Field(default=None, ge=0, le=1)
    explain: bool = False

    @model_validator(mode="after")
    def _check_weights(self) -> SearchOptions:
        unknown = set(self.weights) - {"dense", "lexical"}
        if unknown:
            raise ValueError(f"unknown signal weights {sorted(unknown)}; signals are 'dense' and 'lexical'")
        if any(w < 0 for w in self.weights.values()):
            raise ValueError("signal weights must be >= 0")
        return self

    @property
    def pool(self) -> int:
        """Candidates fetched per signal."""
        return self.candidates or max(50, 4 * self.k)

    @property
    def policy(self) -> str:
        parts = [self.mode if self.mode != "hybrid" else f"hybrid-{self.fusion}"]
        if self.recency_half_life_days:
            parts.append("recency")
        if self.mmr_lambda is not None:
            parts.append("mmr")
        return "+".join(parts)


def rank(
    signals: Mapping[str, Sequence[Candidate]],
    records: Mapping[str, MemoryRecord],
    options: SearchOptions,
    now: datetime,
) -> list[Hit]:
    """Fuse per-signal candidates into the final ranked hits.

    ``records`` maps ids to the records (with embeddings when MMR is on). Candidates whose record
    is missing from ``records`` (deleted meanwhile) are dropped.
    """
    live = {name: [c for c in cands if c.id in records] for name, cands in signals.items()}
    if options.fusion == "rrf":
        fused = rrf(live, options.rrf_k, options.weights if options.mode == "hybrid" else None)
    else:  # one signal: its min-max normalised score (same order, a scale that link spreading can use)
        fused = weighted(live, options.weights if options.mode == "hybrid" else dict.fromkeys(live, 1.0))
    if not fused:
        return []
    ranks: dict[str, dict[str, tuple[int, float]]] = {
        name: {c.id: (i, c.score) for i, c in enumerate(cands, start=1)} for name, cands in live.items()
    }
    scores = dict(fused)
    if options.link_weight > 0:
        links = {rid: [ln.target for ln in records[rid].links] for rid in fused}
        scores = spread_links(fused, links, options.link_weight)
    recency: dict[str, float] = {}
    if options.recency_half_life_days:
        for rid in scores:
            rec = records[rid]
            when = rec.valid_from or rec.recorded_at
            recency[rid] = recency_factor(when, now, options.recency_half_life_days, options.recency_weight)
            scores[rid] *= recency[rid]
    # ties broken by id (creation order) so results are deterministic
    order = sorted(scores, key=lambda rid: (-scores[rid], rid))
    mmr_scores: dict[str, float] = {}
    if options.mmr_lambda is not None:
        pool = order[: max(options.k * 4, options.k)]
        vectors = [records[rid].embedding for rid in pool]
        if all(v is not None for v in vectors) and pool:
            picked, values = mmr(
                [scores[rid] for rid in pool], np.asarray(vectors), options.k, options.mmr_lambda
            )
            order = [pool[i] for i in picked]
            mmr_scores = {pool[i]: v for i, v in zip(picked, values, strict=True)}
    hits: list[Hit] = []
    for position, rid in enumerate(order[: options.k], start=1):
        signals_out = None
        if options.explain:
            dense = ranks.get("dense", {}).get(rid)
            lexical = ranks.get("lexical", {}).get(rid)
            signals_out = SignalScores(
                dense=None if dense is None else dense[1],
                dense_rank=None if dense is None else dense[0],
                lexical=None if lexical is None else lexical[1],
                lexical_rank=None if lexical is None else lexical[0],
                fused=fused[rid],
                recency=recency.get(rid),
                mmr=mmr_scores.get(rid),
            )
        record = records[rid]
        if record.embedding is not None:  # vectors stay in the store
            record = record.model_copy(update={"embedding": None})
        hits.append(
            Hit(record=record, score=mmr_scores.get(rid, scores[rid]), rank=position, signals=signals_out)
        )
    return hits
