"""One feature vector per (query, candidate): what every scorer of the one read path sees.

The recipe's own signals (dense and lexical scores and ranks, the fused score, what link spreading
added, age), the record's utility statistics (q, how often it was shown and used, its reward
evidence, agreement with its neighbours), its kind and length, and query–record features that carry
over to records no feedback has touched yet (term overlap; names, metadata values such as a speaker,
dates and numbers of the query found in the record). Formulas: docs/algorithms.md §features; the names are :data:`NAMES`, versioned as
:data:`FEATURE_SET` — the retrieval log keeps the set's name beside each logged matrix, so a learner
never reads columns of another layout.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import numpy as np

from memq.store.base import CandidateRow
from memq.types import Kind

FEATURE_SET = "v1"
KINDS = (Kind.FACT.value, Kind.EPISODE.value, Kind.EXPERIENCE.value, Kind.NOTE.value, Kind.INSIGHT.value)
NAMES: tuple[str, ...] = (
    "bias",
    "base",
    "base_rank",
    "dense",
    "dense_rank",
    "lexical",
    "lexical_rank",
    "fused",
    "links",
    "age",
    "q",
    "shown",
    "used_rate",
    "evidence",
    "agree",
    "overlap",
    "names",
    "meta",
    "dates",
    "numbers",
    "length",
    *(f"kind_{k}" for k in KINDS),
    "kind_other",
)
COLUMN = {name: i for i, name in enumerate(NAMES)}
_N_VALUES = COLUMN[f"kind_{KINDS[0]}"]  # the columns before the one-hot kind
Q_INIT = 0.5  # q of a record that no feedback has updated yet

_WORD = re.compile(r"[A-Za-z0-9]+(?:'[a-z]+)?")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)?\b")
_NUMBER_ASCII = re.compile(_NUMBER.pattern, re.ASCII)  # the same matches in ASCII text, twice as fast


@lru_cache(maxsize=4_096)  # bounded: a server keeps it for its lifetime
def _words(text: str) -> frozenset[str]:
    """A text's lower-cased words: ``_WORD``'s matches, lower-cased. Only the rare texts
    :func:`_words_found` cannot settle by lookups are split whole (cached)."""
    # the tokens hold no spaces: lower-casing them joined is lower-casing each, in one C call
    return frozenset(" ".join(_WORD.findall(text)).lower().split())


_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_ALNUM = _LOWER | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _words_found(text: str, wanted: frozenset[str]) -> frozenset[str]:
    """The words of ``wanted`` (lower-cased ``_WORD`` matches, as :func:`query_terms` makes them)
    that are among ``text``'s words — ``wanted & _words(text)`` — without splitting the whole text:
    each is looked for in the lower-cased text and checked where it would start a word.

    A match of ``_WORD`` cannot span a character outside ``[A-Za-z0-9']``, so where the character
    before an occurrence is such a character (or there is none), the scan of the whole text starts a
    match exactly there, and the word is the text's iff that match ends where the occurrence does.
    After a letter or digit, an occurrence that begins with a lower-case letter is inside an earlier
    word, and so is any other while the text holds no apostrophe. The rest may start a word or not
    (``'[a-z]+`` extends a word, and stops before a capital or a digit): those rare cases split the
    whole text."""
    if not wanted:
        return frozenset()
    lowered = text.lower()
    if len(lowered) != len(text):  # a character lower-cases to several: positions would drift
        return wanted & _words(text)
    found = []
    for w in wanted:
        at = lowered.find(w)
        while at >= 0:
            before = text[at - 1] if at else " "
            if before not in _ALNUM and before != "'":
                m = _WORD.match(text, at)
                if m is not None and m.end() == at + len(w):
                    found.append(w)
                    break
            elif before == "'" or (text[at] not in _LOWER and "'" in text):
                if w in _words(text):
                    found.append(w)
                break
            at = lowered.find(w, at + 1)
    return frozenset(found)


def _numbers_found(text: str, wanted: frozenset[str]) -> frozenset[str]:
    """The numbers of ``wanted`` among ``text``'s numbers (``_NUMBER``'s matches); the text is
    scanned only when one of them occurs in it at all."""
    if not wanted or not any(n in text for n in wanted):
        return frozenset()
    return wanted & frozenset((_NUMBER_ASCII if text.isascii() else _NUMBER).findall(text))


_MONTHS = (
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec"
).split()
_DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_DATE_WORDS = frozenset(_MONTHS + _DAYS)
_STOP = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into "
    "is it its me my of on or our she so than that the their them then there these they this to was we were "
    "what when where which who whom why will with would you your".split()
)
# capitalised words that are not names when they open a question
_QUESTION_WORDS = frozenset(
    "what when where which who whom why how did does do is are was were can could would".split()
)


@dataclass(slots=True)
class RecipeSignals:
    """What the recipe computed for one candidate (absent signals are None; the fields in this order
    are the recipe's positional arguments)."""

    base: float
    base_rank: int
    dense: float | None
    dense_rank: int | None
    lexical: float | None  # min-max normalised within the pool
    lexical_rank: int | None
    fused: float
    links: float


@dataclass(frozen=True)
class QueryTerms:
    """The query's terms, computed once per search."""

    words: frozenset[str]  # content words, lower case, stopwords dropped
    all_words: frozenset[str]  # every word, lower case
    names: frozenset[str]  # capitalised words (lower-cased) that are not question words
    dates: frozenset[str]  # month / weekday names and four-digit years
    numbers: frozenset[str]


def query_terms(text: str) -> QueryTerms:
    tokens = _WORD.findall(text)
    lower = [t.lower() for t in tokens]
    words = frozenset(t for t in lower if t not in _STOP)
    names = frozenset(
        t.lower()
        for t in tokens
        if t[:1].isupper() and t.lower() not in _QUESTION_WORDS and t.lower() not in _STOP
    )
    years = {t for t in lower if len(t) == 4 and t.isdigit() and t[:2] in ("19", "20")}
    dates = frozenset({t for t in lower if t in _DATE_WORDS} | years)
    return QueryTerms(words, frozenset(lower), names - dates, dates, frozenset(_NUMBER.findall(text)) - years)


def _share(wanted: frozenset[str], have: frozenset[str]) -> float:
    return len(wanted & have) / len(wanted) if wanted else 0.0


def _meta_mentioned(metadata: object, words: frozenset[str]) -> float:
    """1 when a short text value of the record's metadata (a speaker, a user, a topic) is named in the
    query — every word of it among the query's words — else 0."""
    if not metadata or not words or metadata == "{}":
        return 0.0
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return 0.0
    if not isinstance(metadata, dict):
        return 0.0
    for value in metadata.values():
        if isinstance(value, str) and 2 <= len(value) <= 40 and any(c.isalpha() for c in value):
            tokens = {t.lower() for t in _WORD.findall(value)}
            if tokens and tokens <= words:
                return 1.0
    return 0.0


def _rank_value(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / math.log2(1.0 + rank)


FEATURE_BOUND = 1e6


def feature_matrix(
    terms: QueryTerms,
    rows: Sequence[CandidateRow],
    signals: Mapping[str, RecipeSignals],
    now: datetime,
) -> np.ndarray:
    """The features of each row (``len(rows) × len(NAMES)``, float64)."""
    out = np.zeros((len(rows), len(NAMES)))
    kind_column = {k: COLUMN[f"kind_{k}"] for k in KINDS}
    other = COLUMN["kind_other"]
    log_1000, log_3650 = math.log1p(1000.0), math.log1p(3650.0)
    looked_for = terms.words | terms.names | terms.dates  # the words the features ask about
    for i, row in enumerate(rows):
        sig = signals[row.id]
        words = _words_found(row.text, looked_for)
        numbers = _numbers_found(row.text, terms.numbers)
        when = row.valid_from or row.recorded_at
        age_days = max((now - when).total_seconds(), 0.0) / 86_400
        st = row.stats
        total = st.get("agree_total", 0.0)
        n = st.get("n", 0.0)
        mean = (st.get("s", 0.0) + 1.0) / (n + 2.0)
        # in the order of NAMES, up to the kind columns
        out[i, :_N_VALUES] = (
            1.0,
            sig.base,
            _rank_value(sig.base_rank),
            sig.dense or 0.0,
            _rank_value(sig.dense_rank),
            sig.lexical or 0.0,
            _rank_value(sig.lexical_rank),
            sig.fused,
            sig.links,
            min(math.log1p(age_days) / log_3650, 1.5),
            Q_INIT if row.q is None else row.q,
            min(math.log1p(row.n_shown) / log_1000, 1.5),
            (row.n_used + 1.0) / (row.n_shown + 2.0),
            (2.0 * mean - 1.0) * n / (n + 2.0),
            st.get("agree", 0.0) / total if total > 0 else 0.5,
            _share(terms.words, words),
            _share(terms.names, words),
            _meta_mentioned(row.metadata, terms.all_words),
            _share(terms.dates, words),
            _share(terms.numbers, numbers),
            min(math.log1p(len(row.text)) / 7.0, 1.5),
        )
        out[i, kind_column.get(row.kind, other)] = 1.0
    # recipe signals of extreme inputs (a huge importance, a far-future date) stay finite and fit float32
    return np.clip(
        np.nan_to_num(out, nan=0.0, posinf=FEATURE_BOUND, neginf=-FEATURE_BOUND),
        -FEATURE_BOUND,
        FEATURE_BOUND,
    )
