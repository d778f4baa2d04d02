"""Rank fusion, recency weighting and MMR diversity. Pure functions; see docs/algorithms.md."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np

from memq.store.base import Candidate

RRF_K = 60


def rrf(
    signals: Mapping[str, Sequence[Candidate]], k: int = RRF_K, weights: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Reciprocal rank fusion: score(d) = Σ_s w_s / (k + rank_s(d)), ranks from 1 (Cormack et al. 2009)."""
    fused: dict[str, float] = {}
    for name, candidates in signals.items():
        w = 1.0 if weights is None else weights.get(name, 0.0)
        for rank, cand in enumerate(candidates, start=1):
            fused[cand.id] = fused.get(cand.id, 0.0) + w / (k + rank)
    return fused


def weighted(signals: Mapping[str, Sequence[Candidate]], weights: Mapping[str, float]) -> dict[str, float]:
    """Weighted sum of min-max normalised scores; a record missing from a signal scores 0 there."""
    fused: dict[str, float] = {}
    for name, candidates in signals.items():
        if not candidates:
            continue
        w = weights.get(name, 0.0)
        scores = [c.score for c in candidates]
        lo, hi = min(scores), max(scores)
        span = hi - lo
        for cand in candidates:
            norm = 1.0 if span == 0 else (cand.score - lo) / span
            fused[cand.id] = fused.get(cand.id, 0.0) + w * norm
    return fused


def spread_links(
    scores: Mapping[str, float], links: Mapping[str, Sequence[str]], weight: float
) -> dict[str, float]:
    """One hop of score spreading along links, inside the candidate pool.

    score'(d) = score(d) + w · max_{n ∈ N(d)} score(n), where N(d) are the candidates d links to or
    that link to d (links are read both ways). Candidates without linked candidates keep their
    score; records outside the pool neither give nor get anything. Spreading reads the scores
    before spreading, so the order in which candidates are visited does not matter.
    """
    neighbours: dict[str, set[str]] = {}
    for src, targets in links.items():
        if not targets or src not in scores:
            continue
        for dst in targets:
            if dst != src and dst in scores:
                neighbours.setdefault(src, set()).add(dst)
                neighbours.setdefault(dst, set()).add(src)
    out = dict(scores)  # most candidates link to no candidate: their score stays
    for rid, near in neighbours.items():
        out[rid] = scores[rid] + weight * max(scores[n] for n in near)
    return out


def recency_factor(when: datetime, now: datetime, half_life_days: float, weight: float) -> float:
    """Multiplier (1 − w) + w · 0.5^(age / half-life): 1 for brand-new records, 1 − w for very old ones."""
    age_days = max((now - when).total_seconds(), 0.0) / 86_400
    return (1.0 - weight) + weight * math.pow(0.5, age_days / half_life_days)


def mmr(relevance: Sequence[float], vectors: np.ndarray, k: int, lam: float) -> tuple[list[int], list[float]]:
    """Maximal marginal relevance (Carbonell & Goldstein 1998).

    Picks greedily argmax λ·rel(i) − (1−λ)·max_{j picked} cos(i, j). ``relevance`` is rescaled to
    [0, 1] first so that both terms share a scale. Returns picked indices and their MMR scores.
    """
    n = len(relevance)
    if n == 0 or k <= 0:
        return [], []
    rel = np.asarray(relevance, dtype=np.float64)
    span = rel.max() - rel.min()
    rel = np.ones_like(rel) if span == 0 else (rel - rel.min()) / span
    sims = np.asarray(vectors, dtype=np.float64) @ np.asarray(vectors, dtype=np.float64).T
    picked: list[int] = []
    scores: list[float] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(min(k, n)):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = lam * rel - (1 - lam) * penalty
        score[~available] = -np.inf
        best = int(np.argmax(score))
        picked.append(best)
        scores.append(float(score[best]))
        available[best] = False
        max_sim = np.maximum(max_sim, sims[best])
    return picked, scores
