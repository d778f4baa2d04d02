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


def _meta_mentioned(metadata: object, words: frozenset[str]) -> float:
    """1 when a short text value of the record's metadata (a speaker, a user, a topic) is named in the
    query — every word of it among the query's words — else 0."""
    if not metadata or not words or metadata == "{}":
        return 0.0
    values = _meta_values(metadata) if isinstance(metadata, str) else _values_of(metadata)
    return 1.0 if any(tokens <= words for tokens in values) else 0.0


@lru_cache(maxsize=4_096)  # a store has few distinct metadata documents (a speaker, a topic)
def _meta_values(document: str) -> tuple[frozenset[str], ...]:
    """The word sets of a metadata document's short text values (JSON text, parsed once)."""
    try:
        metadata = json.loads(document)
    except ValueError:
        return ()
    return _values_of(metadata)


def _values_of(metadata: object) -> tuple[frozenset[str], ...]:
    """The lower-cased word sets of the short (2-40 characters) text values of a metadata mapping
    that hold a letter, in order; empty ones left out."""
    if not isinstance(metadata, dict):
        return ()
    out = []
    for value in metadata.values():
        if isinstance(value, str) and 2 <= len(value) <= 40 and any(c.isalpha() for c in value):
            tokens = frozenset(t.lower() for t in _WORD.findall(value))
            if tokens:
                out.append(tokens)
    return tuple(out)


def _share(wanted: frozenset[str], have: frozenset[str]) -> float:
    """The share of ``wanted`` found in ``have`` (0 when nothing is wanted)."""
    return len(wanted & have) / len(wanted) if wanted else 0.0


def _rank_value(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / math.log2(1.0 + rank)


FEATURE_BOUND = 1e6

_KIND_COLUMN = {k: COLUMN[f"kind_{k}"] for k in KINDS}
_OTHER_KIND = COLUMN["kind_other"]
_LOG_1000, _LOG_3650 = math.log1p(1000.0), math.log1p(3650.0)


def _age_value(seconds: float) -> float:
    """log1p(age in days) / log1p(3650), at most 1.5 (a future date counts as age 0)."""
    return min(math.log1p(max(seconds, 0.0) / 86_400) / _LOG_3650, 1.5)


def _shown_value(n_shown: int) -> float:
    return min(math.log1p(n_shown) / _LOG_1000, 1.5)


def _length_value(chars: int) -> float:
    return min(math.log1p(chars) / 7.0, 1.5)


def feature_matrix(
    terms: QueryTerms,
    rows: Sequence[CandidateRow],
    signals: Mapping[str, RecipeSignals],
    now: datetime,
) -> np.ndarray:
    """The features of each row (``len(rows) × len(NAMES)``, float64)."""
    if not rows:
        return np.zeros((0, len(NAMES)))
    looked_for = terms.words | terms.names | terms.dates  # the words the features ask about
    q_words, q_names, q_dates, q_numbers = terms.words, terms.names, terms.dates, terms.numbers
    all_words = terms.all_words
    values = []
    kinds = []
    for row in rows:  # one list per row, in the order of NAMES up to the kind columns
        sig = signals[row.id]
        text = row.text
        words = _words_found(text, looked_for)
        st = row.stats
        if st:
            total = st.get("agree_total", 0.0)
            n = st.get("n", 0.0)
            evidence = (2.0 * (st.get("s", 0.0) + 1.0) / (n + 2.0) - 1.0) * n / (n + 2.0)
            agree = st.get("agree", 0.0) / total if total > 0 else 0.5
        else:
            evidence, agree = 0.0, 0.5
        shown = row.n_shown
        values.append(
            [
                1.0,
                sig.base,
                _rank_value(sig.base_rank),
                sig.dense or 0.0,
                _rank_value(sig.dense_rank),
                sig.lexical or 0.0,
                _rank_value(sig.lexical_rank),
                sig.fused,
                sig.links,
                _age_value((now - (row.valid_from or row.recorded_at)).total_seconds()),
                Q_INIT if row.q is None else row.q,
                _shown_value(shown),
                (row.n_used + 1.0) / (shown + 2.0),
                evidence,
                agree,
                _share(q_words, words),
                _share(q_names, words),
                _meta_mentioned(row.metadata, all_words),
                _share(q_dates, words),
                _share(q_numbers, _numbers_found(text, q_numbers)),
                _length_value(len(text)),
            ]
        )
        kinds.append(_KIND_COLUMN.get(row.kind, _OTHER_KIND))
    out = np.zeros((len(rows), len(NAMES)))
    out[:, :_N_VALUES] = values
    out[np.arange(len(rows)), kinds] = 1.0
    # recipe signals of extreme inputs (a huge importance, a far-future date) stay finite and fit float32
    return np.clip(
        np.nan_to_num(out, nan=0.0, posinf=FEATURE_BOUND, neginf=-FEATURE_BOUND),
        -FEATURE_BOUND,
        FEATURE_BOUND,
    )
