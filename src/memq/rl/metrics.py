"""The answer metric of the RL environment's reward: MemoryAgentBench's ``substring_exact_match``
(SQuAD normalisation: lower case, no punctuation, no articles a/an/the, single spaces). The
benchmarks use the same functions (``memq_bench.metrics`` re-exports them)."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD's rule)."""
    text = str(text).lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def substring_match(golds: Iterable[str], texts: Iterable[str]) -> bool:
    """True if a normalised gold answer occurs in any of the normalised ``texts``."""
    norm_golds = [g for g in (normalize_answer(x) for x in golds) if g]
    if not norm_golds:
        return False
    norm_texts = [normalize_answer(t) for t in texts]
    return any(g in t for g in norm_golds for t in norm_texts)
