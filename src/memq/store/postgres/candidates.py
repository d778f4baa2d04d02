"""What search reads: dense and lexical candidates, and the records a query may see.
Operations, see :mod:`.steps`; each runs in one read-only snapshot."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.store.base import Candidate, CandidatePool, CandidateQuery, CandidateRow
from memq.store.postgres import hnsw
from memq.store.postgres.rows import DECODE, RECORDS, columns, hydrate, vector_from_send, where
from memq.store.postgres.steps import Fork, Join, Op, Q
from memq.store.sqlcommon import candidate_row_of, dedupe, query_terms
from memq.types import MemoryRecord

# BM25 parameters: those of SQLite FTS5's bm25(), so both stores rank alike
K1 = 1.2
B = 0.75
# lexical search scores the rows of its rarest terms in full; past this many rows (by the terms'
# document frequencies) it keeps only rows that match several of the commoner terms (see plan_lexical)
LEXICAL_BUDGET = 1000
MOST_COMMON_TERMS = 6  # commoner terms combined in that case (the rarest of them)


def visible(query: CandidateQuery, ids: Sequence[str], with_embedding: bool) -> Op[dict[str, MemoryRecord]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    clause, params = where(query)
    rows = yield Q(
        f"SELECT {columns(with_embedding)} FROM {RECORDS} WHERE r.id = ANY(%s) AND {clause} ORDER BY r.version",
        (ids, *params),
    )
    return {r.id: r for r in hydrate(rows, with_embedding)}


def search_candidates(
    query: CandidateQuery, n: int, vector: np.ndarray | None, text: str | None, build: bool = False
) -> Op[CandidatePool]:
    """One search's reads in one snapshot: the dense and lexical candidates, then their light rows.
    With both signals the dense search is forked (``steps.Fork``): it runs on a second connection,
    in the same snapshot, while this one runs the lexical search."""
    signals: dict[str, list[Candidate]] = {}
    if vector is not None and text is not None:
        dense = yield Fork(dense_candidates(query, vector, n, build))
        lexical = yield from lexical_candidates(query, text, n)
        signals["dense"] = yield Join(dense)
        signals["lexical"] = lexical
    elif vector is not None:
        signals["dense"] = yield from dense_candidates(query, vector, n, build)
    elif text is not None:
        signals["lexical"] = yield from lexical_candidates(query, text, n)
    rows = yield from candidate_rows(query, [c.id for found in signals.values() for c in found])
    return CandidatePool(signals, rows)


def candidate_rows(query: CandidateQuery, ids: Sequence[str]) -> Op[dict[str, CandidateRow]]:
    """The light rows ranking needs, looked up by id (each visible version, its utility, its links)."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    clause, params = where(query)
    rows = yield Q(
        "SELECT r.id, r.kind, r.text, r.valid_from, r.recorded_at, u.q, u.n_shown, u.n_used, u.reward_sum, u.stats, "
        "(SELECT array_agg(l.dst) FROM links l WHERE l.tenant = r.tenant AND l.src = r.id), r.metadata "
        f"FROM records r LEFT JOIN utility u ON u.id = r.id WHERE r.id = ANY(%s) AND {clause}",
        (ids, *params),
    )
    return {row[0]: candidate_row_of(row, DECODE, row[10] or ()) for row in rows}


def vectors(tenant: str, ids: Sequence[str]) -> Op[dict[str, np.ndarray]]:
    """The current vector of each id that has one."""
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    rows = yield Q(
        "SELECT id, vector_send(embedding) FROM records WHERE tenant = %s AND id = ANY(%s) "
        "AND expired_at IS NULL AND embedding IS NOT NULL",
        (tenant, ids),
    )
    return {rid: np.asarray(vector_from_send(bytes(data)), dtype=np.float32) for rid, data in rows}


# -- dense ------------------------------------------------------------------------------------------------


def dense_candidates(
    query: CandidateQuery, vector: np.ndarray, n: int, build: bool = False
) -> Op[list[Candidate]]:
    """Up to ``n`` visible records nearest to ``vector`` by cosine distance, exact and complete.

    The rows in the HNSW graph are searched through the index, the rows still outside it (the tail
    of a bulk load, see :mod:`.hnsw`) exactly; the two lists merge by distance. With ``build``, a tail
    of ``hnsw.BUILD_TAIL`` rows or more raises :class:`hnsw.IndexBehind` instead (the runner builds
    the index and searches again).

    pgvector 0.6 filters *after* the HNSW scan, which stops at ``hnsw.ef_search`` candidates: with a
    selective filter (a small tenant in a big table, a narrow metadata filter, an as-of time) the
    index can return fewer than ``n`` rows although more visible rows exist. So ef_search is raised
    for the query (``set_config(..., true)``: this transaction only), and when the result is short while the
    visible rows with vectors are more, the query is re-run exactly: ordering by
    ``(embedding <=> q) + 0`` is an expression the index cannot serve, so the planner scans the
    visible rows (through the tenant index) and sorts them. All queries see one snapshot.
    """
    if n <= 0:
        return []
    clause, params = where(query)
    clause += " AND r.embedding IS NOT NULL"
    vec = np.asarray(vector, dtype=np.float32)
    state = yield from hnsw.graph_state(hnsw.BUILD_TAIL, ef_search=max(40, min(1000, 2 * int(n))))
    if state is None:  # no index (too many dimensions, or a re-embed in progress): exact
        return (yield from _exact(clause, params, vec, n))
    upto, pending = state
    if build and pending >= hnsw.BUILD_TAIL:
        raise hnsw.IndexBehind
    rows = yield Q(
        f"SELECT r.id, r.embedding <=> %s AS d FROM records r WHERE {clause} AND {hnsw.in_graph(upto)} "
        "ORDER BY d LIMIT %s",
        (vec, *params, n),
    )
    tail_rows = []
    if pending:
        tail_rows = yield Q(
            f"SELECT r.id, (r.embedding <=> %s) + 0 AS d FROM records r WHERE {hnsw.tail(upto)} AND {clause} "
            "ORDER BY d LIMIT %s",
            (vec, *params, n),
        )
    if len(rows) < n:
        seen = yield Q(
            f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {clause} LIMIT %s) AS v",
            (*params, n),
            "one",
        )
        if seen[0] > len(rows) + len(tail_rows):  # the index scan starved: exact over every visible row
            return (yield from _exact(clause, params, vec, n))
    merged = sorted(rows + tail_rows, key=lambda r: r[1])[:n]
    return dedupe([Candidate(rid, 1.0 - float(d)) for rid, d in merged if d is not None])


def _exact(clause: str, params: list[Any], vec: np.ndarray, n: int) -> Op[list[Candidate]]:
    rows = yield Q(
        f"SELECT r.id, (r.embedding <=> %s) + 0 AS d FROM records r WHERE {clause} ORDER BY d LIMIT %s",
        (vec, *params, n),
    )
    return dedupe([Candidate(rid, 1.0 - float(d)) for rid, d in rows if d is not None])


# -- lexical: BM25 -------------------------------------------------------------------------------------

# the query's lexemes (PostgreSQL's english stemming and stopwords) with their document frequency in
# the tenant, and the tenant's document count and total length, from the lexicon the trigger keeps
LEXEMES = (
    "SELECT q.lexeme, "
    "coalesce((SELECT sum(x.df) FROM lexicon x WHERE x.tenant = %s AND x.lexeme = q.lexeme), 0)::float8, "
    "(SELECT sum(docs) FROM lexicon_docs WHERE tenant = %s)::float8, "
    "(SELECT sum(lexemes) FROM lexicon_docs WHERE tenant = %s)::float8 "
    "FROM unnest(tsvector_to_array(to_tsvector('english', %s))) AS q(lexeme)"
)
# the best ``n`` visible rows matching a tsquery, scored in the statement: for each of the query's
# lexemes in the row (``ts_filter`` keeps them, ``unnest`` gives their positions: tf), its weight
# idf x (k1 + 1) (parameters, by lexeme) x tf / (tf + k1 (1 - b + b dl / avgdl)), summed; ties by row key
SCORED = (
    "SELECT r.row_key, r.id, s.score FROM records r, LATERAL ("
    "SELECT sum(w.weight * u.tf / (u.tf + %s + %s * length(r.tsv))) AS score FROM ("
    "SELECT lexeme, coalesce(array_length(positions, 1), 1)::float8 AS tf "
    "FROM unnest(ts_filter(setweight(r.tsv, 'A', %s), '{a}'))) u "
    "JOIN unnest(%s::text[], %s::float8[]) AS w(lexeme, weight) ON w.lexeme = u.lexeme) s "
    "WHERE r.tsv @@ %s::tsquery AND "
)


def lexical_candidates(query: CandidateQuery, text: str, n: int) -> Op[list[Candidate]]:
    """Up to ``n`` visible records by BM25 over the ``tsv`` column (English stemming), best first.

    Any query term may match (an OR of the terms, as in the SQLite store). Scores are Okapi BM25 with
    FTS5's parameters, term statistics from the ``lexicon`` table (every version of the tenant's
    records: a tenant's scores depend on its own records only), document length in distinct lexemes. Which rows are scored is planned from the
    terms' document frequencies (:func:`plan_lexical`) so the work stays bounded as the store grows;
    when that leaves fewer than ``n`` visible rows, every matching row is scored. Lexemes reach the
    ``tsquery`` quoted (:func:`quote`), so no user text is ever parsed as tsquery syntax.
    """
    terms = query_terms(text)
    if not terms or n <= 0:
        return []
    tenant = query.scope.tenant
    rows = yield Q(LEXEMES, (tenant, tenant, tenant, " ".join(terms)))
    if not rows:  # only words PostgreSQL drops (its stopwords)
        return []
    docs = max(float(rows[0][2] or 0.0), 1.0)
    avgdl = max(float(rows[0][3] or 0.0) / docs, 1.0)
    df = {lexeme: float(freq) for lexeme, freq, _, _ in rows}
    idf = {lexeme: math.log(1.0 + (docs - f + 0.5) / (f + 0.5)) for lexeme, f in df.items()}
    clause, params = where(query)
    lexemes = sorted(df)
    planned, exact = plan_lexical(df, docs)
    weights = [idf[lexeme] * (K1 + 1) for lexeme in lexemes]
    best: list[tuple[str, float]] = []
    if planned:
        best = yield from _bm25(planned, lexemes, weights, avgdl, clause, params, n)
    if not exact and len(best) < n:
        best = yield from _bm25(" | ".join(map(quote, lexemes)), lexemes, weights, avgdl, clause, params, n)
    return dedupe([Candidate(rid, score) for rid, score in best])


def _bm25(
    tsquery: str,
    lexemes: list[str],
    weights: list[float],
    avgdl: float,
    clause: str,
    params: list[Any],
    n: int,
) -> Op[list[tuple[str, float]]]:
    """(id, score) of the best ``n`` visible rows matching ``tsquery``, best first (ties: row key)."""
    rows = yield Q(
        SCORED + clause + " ORDER BY s.score DESC, r.row_key LIMIT %s",
        (K1 * (1.0 - B), K1 * B / avgdl, lexemes, lexemes, weights, tsquery, *params, n),
    )
    return [(rid, float(score)) for _, rid, score in rows]


def plan_lexical(
    df: dict[str, float], docs: float, budget: int = LEXICAL_BUDGET, most: int = MOST_COMMON_TERMS
) -> tuple[str, bool]:
    """Which matching rows to score: a ``tsquery`` and whether it takes every matching row.

    Rows matching the rarest lexemes are all taken, while their document frequencies add up to at
    most ``budget``. A row that matches only one of the remaining, common lexemes scores low (its
    one term has a low IDF), so it is taken only if it matches at least ``m`` of the ``most`` rarest
    common lexemes, with the smallest ``m`` >= 2 whose expected number of rows (the lexemes taken as
    independent) fits what is left of the budget. This is MaxScore's idea at the level of terms; it
    can miss rows that a full scoring would rank in the top ``n`` (about 1 in 25 of the top 50 on the
    store benchmark's corpus), and the caller scores every matching row when it yields too few.
    """
    order = sorted(df, key=lambda lexeme: (df[lexeme], lexeme))
    rare: list[str] = []
    used = 0.0
    for lexeme in order:
        if used + df[lexeme] > budget:
            break
        rare.append(lexeme)
        used += df[lexeme]
    common = order[len(rare) :][:most]
    if not common:
        return " | ".join(map(quote, rare)), True
    parts = [quote(lexeme) for lexeme in rare]
    left = max(budget - used, budget / 4)
    chance = [df[lexeme] / docs for lexeme in common]
    for m in range(2, len(common) + 1):
        if docs * _at_least(chance, m) <= left:
            parts += [
                "(" + " & ".join(map(quote, group)) + ")" for group in itertools.combinations(common, m)
            ]
            break
    return " | ".join(parts), False


def _at_least(chance: list[float], m: int) -> float:
    """The probability that at least ``m`` of independent events of these probabilities happen."""
    dist = [1.0]  # dist[i]: probability that exactly i happened so far
    for p in chance:
        dist = [a * (1 - p) + b * p for a, b in zip([*dist, 0.0], [0.0, *dist], strict=True)]
    return sum(dist[m:])


def quote(lexeme: str) -> str:
    """A lexeme as a quoted ``tsquery`` operand (taken as it is: no parsing, no stemming)."""
    return "'" + lexeme.replace("\\", "\\\\").replace("'", "''") + "'"
