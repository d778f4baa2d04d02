"""The search recipe: candidates from each signal → fusion → link spreading → recency → the recipe's order.

Backends produce candidates (:meth:`Candidates.dense_candidates`, :meth:`Candidates.lexical_candidates`)
and light rows (:meth:`Candidates.search_candidates`); everything after that is here, identical for every
backend and for sync and async callers. The recipe's order is the default ranking; its top
``window`` candidates are what a learner may rerank (:mod:`memq.learn.base`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from memq.retrieve.features import RecipeSignals
from memq.retrieve.fusion import RRF_K, mmr, recency_factor, rrf, spread_links, weighted
from memq.store.base import Candidate, CandidateRow

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
    window: int | None = Field(default=None, ge=1, le=10 * MAX_K)
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
    def window_size(self) -> int:
        """How many of the recipe's top candidates a learner may rerank (at least k)."""
        return max(self.window or max(30, 3 * self.k), self.k)

    @property
    def policy(self) -> str:
        """The recipe's name, e.g. ``hybrid-weighted+recency``."""
        parts = [self.mode if self.mode != "hybrid" else f"hybrid-{self.fusion}"]
        if self.recency_half_life_days:
            parts.append("recency")
        if self.mmr_lambda is not None:
            parts.append("mmr")
        return "+".join(parts)


@dataclass
class Recipe:
    """The recipe's ranking of one search: candidates in its order, and what it computed for each."""

    order: list[str]
    scores: dict[str, float]  # final score (fusion, links, recency)
    signals: dict[str, RecipeSignals]
    recency: dict[str, float]

    def top(self, k: int) -> list[str]:
        return self.order[:k]


def recipe(
    signals: Mapping[str, Sequence[Candidate]],
    rows: Mapping[str, CandidateRow],
    options: SearchOptions,
    now: datetime,
) -> Recipe:
    """Fuse per-signal candidates into the recipe's order. Candidates with no row (not visible, or
    deleted meanwhile) are dropped."""
    live = {name: [c for c in cands if c.id in rows] for name, cands in signals.items()}
    if options.fusion == "rrf":
        fused = rrf(live, options.rrf_k, options.weights if options.mode == "hybrid" else None)
    else:  # one signal: its min-max normalised score (same order, a scale that link spreading can use)
        fused = weighted(live, options.weights if options.mode == "hybrid" else dict.fromkeys(live, 1.0))
    if not fused:
        return Recipe([], {}, {}, {})
    scores = dict(fused)
    if options.link_weight > 0:
        scores = spread_links(fused, {rid: rows[rid].links for rid in fused}, options.link_weight)
    recency: dict[str, float] = {}
    if options.recency_half_life_days:
        for rid in scores:
            row = rows[rid]
            recency[rid] = recency_factor(
                row.valid_from or row.recorded_at, now, options.recency_half_life_days, options.recency_weight
            )
            scores[rid] *= recency[rid]
    # ties broken by id (creation order) so results are deterministic
    order = sorted(scores, key=lambda rid: (-scores[rid], rid))
    ranks = {name: {c.id: (i, c.score) for i, c in enumerate(cands, start=1)} for name, cands in live.items()}
    dense = ranks.get("dense", {})
    lexical = ranks.get("lexical", {})
    lex_lo = min((s for _, s in lexical.values()), default=0.0)
    lex_span = max((s for _, s in lexical.values()), default=0.0) - lex_lo
    low = scores[order[-1]]
    span = scores[order[0]] - low
    none = (None, None)
    out: dict[str, RecipeSignals] = {}
    for position, rid in enumerate(order, start=1):  # positional: this loop runs for the whole pool
        d_rank, d_score = dense.get(rid, none)
        l_rank, l_score = lexical.get(rid, none)
        out[rid] = RecipeSignals(
            1.0 if span == 0 else (scores[rid] - low) / span,
            position,
            d_score,
            d_rank,
            None if l_score is None else (1.0 if lex_span == 0 else (l_score - lex_lo) / lex_span),
            l_rank,
            fused[rid],
            scores[rid] / recency.get(rid, 1.0) - fused[rid],
        )
    return Recipe(order, scores, out, recency)


def diversify(
    ids: Sequence[str], scores: Sequence[float], vectors: np.ndarray, k: int, lam: float
) -> tuple[list[str], dict[str, float]]:
    """MMR over the top of a ranking (``ids`` best first, their ``scores`` and vectors): k ids and their
    MMR scores."""
    picked, values = mmr(list(scores), vectors, k, lam)
    chosen = [ids[i] for i in picked]
    return chosen, dict(zip(chosen, values, strict=True))
