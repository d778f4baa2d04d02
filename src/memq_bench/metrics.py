"""Retrieval and answer metrics shared by the benchmarks (pure functions, no I/O).

* :func:`recall_any`, :func:`recall_all`, :func:`recall_fraction`, :func:`ndcg_binary` - a ranked
  list of ids against a set of gold ids (LongMemEval's ``src/retrieval/eval_utils.py``; LoCoMo's
  evidence recall is :func:`recall_fraction`).
* :func:`first_seen` - collapse a ranking of fine units (turns) into a ranking of the coarse units
  they belong to (sessions), each at its best position.
* :func:`normalize_answer`, :func:`substring_match` - MemoryAgentBench's ``substring_exact_match``
  (SQuAD normalisation: lower case, no punctuation, no articles, single spaces); defined in
  :mod:`memq.rl.metrics`, whose environment rewards with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Hashable, Iterable, Sequence
from typing import TypeVar

from memq.rl.metrics import normalize_answer as normalize_answer
from memq.rl.metrics import substring_match as substring_match

T = TypeVar("T", bound=Hashable)


def recall_any(ranked: Sequence[T], gold: Collection[T], k: int) -> float:
    """1.0 if any gold id is among the first ``k`` ranked ids, else 0.0 (0.0 for empty gold)."""
    top = set(ranked[:k])
    return float(any(g in top for g in gold))


def recall_all(ranked: Sequence[T], gold: Collection[T], k: int) -> float:
    """1.0 if every gold id is among the first ``k`` ranked ids, else 0.0.

    Empty gold is a caller error here (LongMemEval's code would score it 1.0); skip such questions."""
    if not gold:
        raise ValueError("recall_all needs at least one gold id")
    top = set(ranked[:k])
    return float(all(g in top for g in gold))


def recall_fraction(ranked: Sequence[T], gold: Collection[T], k: int) -> float:
    """Share of the distinct gold ids found among the first ``k`` ranked ids."""
    wanted = set(gold)
    if not wanted:
        raise ValueError("recall_fraction needs at least one gold id")
    return len(wanted & set(ranked[:k])) / len(wanted)


def _dcg(relevances: Iterable[float]) -> float:
    return sum(rel / math.log2(i + 2) for i, rel in enumerate(relevances))


def ndcg_binary(ranked: Sequence[T], gold: Collection[T], k: int) -> float:
    """nDCG@k with binary relevance (LongMemEval's ``ndcg_any``): a gold id at rank r (1-based) earns
    1/log2(r+1); the ideal ranking puts min(|gold|, k) gold ids first. 0.0 for empty gold."""
    wanted = set(gold)
    if not wanted:
        return 0.0
    actual = _dcg(1.0 if r in wanted else 0.0 for r in ranked[:k])
    ideal = _dcg([1.0] * min(len(wanted), k))
    return actual / ideal


def first_seen(ranked: Iterable[T], group: Callable[[T], Hashable]) -> list[Hashable]:
    """The groups of ``ranked`` in order of their first (best) member: turns → sessions."""
    return list(dict.fromkeys(group(x) for x in ranked))
