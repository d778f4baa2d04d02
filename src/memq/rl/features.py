"""What a write policy sees: numeric features of an incoming item and its related stored records.

Pure functions over texts, cosines and record metadata (numpy only), shared by the training
environment (:mod:`memq.rl.env`) and the ``learned:PATH`` manager (:mod:`memq.manage.learned`), so a
policy sees at run time exactly the features it was trained on.

Pair features relate the item x to one candidate m (one of the K stored records most similar to x):

* ``cos`` — cosine of their embeddings; ``jaccard`` — word-set overlap;
* ``prefix`` / ``suffix`` — the longest common word prefix / suffix, over the shorter length;
* ``rest_overlap`` — word overlap of what is left after the common prefix;
* ``frame`` — a template-free "same subject and relation, other value" signal: the two sentences
  share a prefix, end differently, and what follows the prefix has no word in common
  (``prefix · [rests disjoint] · [suffix = 0] · [x ≠ m]``). "The capital of X is A" / "The capital of
  X is B" → 0.83; "The capital of X is A" / "The capital of Y is B" → 0 (the rests share "is": the
  sentences part before the relation's last word, so the subject differs); "X worked in the city of
  A" / "X was born in the city of B" → 0. It assumes the value comes last, as in most English fact
  sentences; no relation list is involved. (Feature version 1 used ``prefix · (1 − rest_overlap)``,
  which scored such different-subject pairs ≈ 0.5; a policy trained on it overwrote 66 of 869 records
  wrongly on the 32k context);
* ``frame_gap`` — ``frame`` minus the best ``frame`` among the candidates (0 for the best);
* ``exact`` — the normalised texts are equal;
* ``sim_rank`` / ``recency_rank`` — the candidate's rank by cosine and by recency (0 = first, 1 =
  last), so a policy can prefer the newest of several matches;
* ``q`` / ``used`` — the record's learned utility minus 0.5 (0 when never rated) and log(1 + times
  used): utility evidence from ``feedback``.

Item features summarise the candidates for the ADD / NOOP scores: the best ``cos``, ``frame`` and
``jaccard``, the share of the K slots filled, whether an exact duplicate is stored, the share of the
item's words no candidate has (``novelty``), and the item's length.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FEATURE_VERSION = 2  # bumped whenever a feature's definition changes; policy files record it
PAIR_FEATURES: tuple[str, ...] = (
    "bias",
    "cos",
    "jaccard",
    "prefix",
    "suffix",
    "rest_overlap",
    "frame",
    "frame_gap",
    "exact",
    "sim_rank",
    "recency_rank",
    "q",
    "used",
)
ITEM_FEATURES: tuple[str, ...] = (
    "bias",
    "max_cos",
    "max_frame",
    "max_jaccard",
    "filled",
    "any_exact",
    "novelty",
    "length",
)
_WORD = re.compile(r"\w+(?:['’]\w+)*", re.UNICODE)  # Xi'an, O'Brien: one word


def words(text: str) -> list[str]:
    """Case-folded word tokens (NFKC; punctuation dropped)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


@dataclass(frozen=True)
class Candidate:
    """A stored record the item is compared with: its id, text, cosine to the item, and age order."""

    record_id: str
    text: str
    cos: float
    order: int  # larger = written later (recorded_at / id order)
    q: float | None = None
    n_used: int = 0


def pair_values(item_words: Sequence[str], cand_words: Sequence[str], cos: float) -> dict[str, float]:
    """The text-and-cosine pair features of one (item, candidate) pair."""
    a, b = list(item_words), list(cand_words)
    shorter = max(1, min(len(a), len(b)))
    lcp = _common_prefix(a, b)
    lcs = _common_prefix(a[lcp:][::-1], b[lcp:][::-1])
    exact = float(a == b)
    rest_a, rest_b = set(a[lcp : len(a) - lcs]), set(b[lcp : len(b) - lcs])
    rest_overlap = _jaccard(rest_a, rest_b) if (rest_a or rest_b) else 1.0
    prefix = lcp / shorter
    disjoint = float(bool(rest_a) and bool(rest_b) and not (rest_a & rest_b))
    frame = prefix * disjoint * float(lcs == 0) * (1.0 - exact)
    return {
        "cos": float(cos),
        "jaccard": _jaccard(set(a), set(b)),
        "prefix": prefix,
        "suffix": lcs / shorter,
        "rest_overlap": rest_overlap,
        "frame": frame,
        "exact": exact,
    }


@dataclass
class Observation:
    """One decision point: the item, its K candidates (best cosine first) and their features.

    ``pair`` is (K, len(PAIR_FEATURES)) with zero rows for empty slots, ``item`` is
    (len(ITEM_FEATURES),), ``mask`` (2 + 2K,) marks the legal actions (see :mod:`memq.rl.actions`).
    """

    text: str
    candidates: list[Candidate]
    pair: np.ndarray
    item: np.ndarray
    mask: np.ndarray

    @property
    def k(self) -> int:
        return int(self.pair.shape[0])


def observe(text: str, candidates: Sequence[Candidate], k: int) -> Observation:
    """Features of ``text`` against up to ``k`` candidates (taken best cosine first)."""
    from memq.rl.actions import action_mask

    cands = sorted(candidates, key=lambda c: -c.cos)[:k]
    item_words = words(text)
    cand_words = [words(c.text) for c in cands]
    rows = [pair_values(item_words, w, c.cos) for c, w in zip(cands, cand_words, strict=True)]
    n = len(cands)
    best_frame = max((r["frame"] for r in rows), default=0.0)
    by_recency = sorted(range(n), key=lambda i: -cands[i].order)  # newest first
    recency = {i: pos for pos, i in enumerate(by_recency)}
    pair = np.zeros((k, len(PAIR_FEATURES)), dtype=np.float64)
    for i, (c, r) in enumerate(zip(cands, rows, strict=True)):
        denom = max(1, n - 1)
        values = {
            "bias": 1.0,
            **r,
            "frame_gap": r["frame"] - best_frame,
            "sim_rank": i / denom,
            "recency_rank": recency[i] / denom,
            "q": 0.0 if c.q is None else float(c.q) - 0.5,
            "used": math.log1p(max(0, c.n_used)),
        }
        pair[i] = [values[name] for name in PAIR_FEATURES]
    seen: set[str] = set().union(*(set(w) for w in cand_words)) if cand_words else set()
    item_set = set(item_words)
    item_values = {
        "bias": 1.0,
        "max_cos": max((c.cos for c in cands), default=0.0),
        "max_frame": best_frame,
        "max_jaccard": max((r["jaccard"] for r in rows), default=0.0),
        "filled": n / k if k else 0.0,
        "any_exact": float(any(r["exact"] for r in rows)),
        "novelty": len(item_set - seen) / len(item_set) if item_set else 0.0,
        "length": min(len(item_words), 100) / 20.0,
    }
    item = np.array([item_values[name] for name in ITEM_FEATURES], dtype=np.float64)
    return Observation(text, list(cands), pair, item, action_mask(n, k))
