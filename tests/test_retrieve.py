"""Fusion, MMR, recency and the filter language, checked against hand-computed values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from memq.errors import FilterError
from memq.retrieve.filters import And, Cond, Not, Or, parse_filter
from memq.retrieve.fusion import mmr, recency_factor, rrf, weighted
from memq.store.base import Candidate


def test_rrf_matches_the_formula() -> None:
    fused = rrf({"dense": [Candidate("a", 0.9), Candidate("b", 0.8)], "lexical": [Candidate("b", 7.0)]}, k=60)
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    weighted_rrf = rrf(
        {"dense": [Candidate("a", 1.0)], "lexical": [Candidate("a", 1.0)]},
        weights={"dense": 2.0, "lexical": 0.5},
    )
    assert weighted_rrf["a"] == pytest.approx(2.5 / 61)


def test_weighted_fusion_normalises_each_signal() -> None:
    fused = weighted(
        {
            "dense": [Candidate("a", 0.9), Candidate("b", 0.5)],
            "lexical": [Candidate("b", 10.0), Candidate("c", 2.0)],
        },
        {"dense": 0.5, "lexical": 0.5},
    )
    assert fused == pytest.approx({"a": 0.5, "b": 0.5, "c": 0.0})


def test_recency_factor_halves_at_the_half_life() -> None:
    now = datetime(2025, 1, 31, tzinfo=UTC)
    assert recency_factor(now, now, 30, 1.0) == pytest.approx(1.0)
    assert recency_factor(now - timedelta(days=30), now, 30, 1.0) == pytest.approx(0.5)
    assert recency_factor(now - timedelta(days=30), now, 30, 0.3) == pytest.approx(0.85)


def test_mmr_skips_near_duplicates() -> None:
    vecs = np.array([[1, 0], [0.999, 0.0447], [0, 1]], dtype=np.float64)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    picked, _ = mmr([1.0, 0.95, 0.5], vecs, 2, 0.5)
    assert picked == [0, 2]
    picked_rel, _ = mmr([1.0, 0.95, 0.5], vecs, 2, 1.0)  # λ = 1: pure relevance
    assert picked_rel == [0, 1]
    assert mmr([], np.zeros((0, 2)), 3, 0.5) == ([], [])


def test_filter_parsing_builds_the_expected_tree() -> None:
    node = parse_filter({"kind": "fact", "or": [{"metadata.a": {"gte": 1}}, {"not": {"user": "x"}}]})
    assert node == And(
        (Cond("kind", "eq", "fact"), Or((Cond("metadata.a", "gte", 1), Not(Cond("user", "eq", "x")))))
    )
    assert parse_filter(None) is None and parse_filter({}) is None
    assert parse_filter({"recorded_at": {"lt": "2024-01-01"}}) == Cond(
        "recorded_at", "lt", datetime(2024, 1, 1, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"metadata": 1},
        {"metadata.": 1},
        {"metadata.a": {}},
        {"metadata.a": {"in": []}},
        {"metadata.a": {"exists": "yes"}},
        {"metadata.a": {"eq": [1, 2]}},
        {"metadata.a": {"lt": None}},
        {"metadata.a": float("nan")},
        {"not": []},
        {"or": {"a": 1}},
        {"valid_from": 5},
    ],
)
def test_filter_errors(bad: object) -> None:
    with pytest.raises(FilterError):
        parse_filter(bad)  # type: ignore[arg-type]


def test_deep_nesting_is_refused() -> None:
    spec: dict = {"kind": "fact"}
    for _ in range(20):
        spec = {"not": spec}
    with pytest.raises(FilterError, match="deeper"):
        parse_filter(spec)


def test_feature_word_lookups_agree_with_splitting_the_whole_text() -> None:
    """The query-record overlap features look each query word up instead of splitting every
    candidate's text: on texts built to stress word boundaries (apostrophes, case, digits, characters
    whose lower case is ASCII or longer), the words and numbers found are exactly those of a split."""
    import random

    from memq.retrieve import features as F

    rng = random.Random(7)
    # fmt: off
    pieces = ["John", "john", "JOHN", "'s", "'S", "'", "rock", "n", "roll", "it", "O'Brien", "3.5", "2,000",
              "1.2.3", "May", "2023", " ", " ", ", ", ". ", "’", "\u212a", "İstanbul", "ok", "s", "x", "-", "Y",
              "sY", "'t3", "9", "B", "ß", "é"]
    # fmt: on
    texts = ["John's dog", "JOHN'S dog", "rock'n'roll is 'great'", "'hello' world", "a'b'c d", "x'Y y"]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 14))) for _ in range(3000)]
    vocab = sorted({w for t in texts for w in F._words(t)} | {"s", "n", "b", "c", "brien", "k", "ok"})
    tricky = frozenset({"s", "n", "roll", "brien", "y", "k", "ok"})  # inside or after a word
    numbers = ["3.5", "2", "2,000", "000", "1.2", "2.3", "3", "2023"]
    for text in texts:
        wanted = frozenset(rng.sample(vocab, 6)) | tricky
        assert F._words_found(text, wanted) == wanted & F._words(text), text
        nums = frozenset(rng.sample(numbers, 3))
        split = frozenset((F._NUMBER_ASCII if text.isascii() else F._NUMBER).findall(text))
        assert F._numbers_found(text, nums) == nums & split, text
