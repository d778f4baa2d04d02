"""The retrieval log keeps a search's pool scores as float32 without turning a finite score into inf."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from memq import Memory
from memq.embed import HashingEmbedder


def test_a_score_beyond_float32_is_logged_finite_and_without_a_warning(tmp_path: Path) -> None:
    mem = Memory(str(tmp_path / "m.db"), embedder=HashingEmbedder(dim=64), scope="t")
    _, pear, _ = mem.add(["the red apple", "a green pear", "apple pie recipe"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # the cast used to warn: overflow
        found = mem.search("apple", k=3, weights={"dense": 1e300, "lexical": 1e300})
    logged = mem.retrieval(found.id)
    scores = [p.score for p in logged.pool]
    assert scores and all(s is not None and math.isfinite(s) for s in scores)
    assert max(scores) == float(np.finfo(np.float32).max)  # 1e300 and more: kept at float32's largest
    assert {p.id: p.lexical for p in logged.pool}[
        pear.id
    ] is None  # BM25 did not find it: NaN, read back as None
    mem.close()
