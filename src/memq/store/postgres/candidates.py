"""What search reads: dense and lexical candidates, and the records a query may see.
Operations, see :mod:`.steps`; each runs in one read-only snapshot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memq.store.base import Candidate, CandidateQuery
from memq.store.postgres.rows import columns, dedupe, hydrate, where
from memq.store.postgres.steps import Op, Q
from memq.store.sqlcommon import query_terms
from memq.types import MemoryRecord


def visible(query: CandidateQuery, ids: Sequence[str], with_embedding: bool) -> Op[dict[str, MemoryRecord]]:
    ids = list(dict.fromkeys(ids))
    if not ids:
        return {}
    clause, params = where(query)
    rows = yield Q(
        f"SELECT {columns(with_embedding)} FROM records r WHERE r.id = ANY(%s) AND {clause} ORDER BY r.version",
        (ids, *params),
    )
    records = yield from hydrate(rows, with_embedding)
    return {r.id: r for r in records}


def dense_candidates(query: CandidateQuery, vector: np.ndarray, n: int) -> Op[list[Candidate]]:
    """Up to ``n`` visible records nearest to ``vector`` by cosine distance.

    pgvector 0.6 filters *after* the HNSW scan, which stops at ``hnsw.ef_search`` candidates: with a
    selective filter (a small tenant in a big table, a narrow metadata filter, an as-of time) the
    index can return fewer than ``n`` rows although more visible rows exist. So ef_search is raised
    for the query (``SET LOCAL``: this transaction only), and when the result is short while the
    visible rows with vectors are more, the query is re-run exactly: ordering by
    ``(embedding <=> q) + 0`` is an expression the index cannot serve, so the planner scans the
    visible rows (through the tenant index) and sorts them. Both queries see one snapshot.
    """
    if n <= 0:
        return []
    clause, params = where(query)
    vec = np.asarray(vector, dtype=np.float32)
    yield Q(f"SET LOCAL hnsw.ef_search = {max(40, min(1000, 2 * int(n)))}", mode="none")
    rows = yield Q(
        f"SELECT r.id, r.embedding <=> %s AS d FROM records r WHERE {clause} AND r.embedding IS NOT NULL "
        "ORDER BY d LIMIT %s",
        (vec, *params, n),
    )
    if len(rows) < n:
        row = yield Q(
            f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {clause} AND r.embedding IS NOT NULL "
            "LIMIT %s) AS v",
            (*params, n),
            mode="one",
        )
        if row[0] > len(rows):
            rows = yield Q(
                f"SELECT r.id, (r.embedding <=> %s) + 0 AS d FROM records r "
                f"WHERE {clause} AND r.embedding IS NOT NULL ORDER BY d LIMIT %s",
                (vec, *params, n),
            )
    return dedupe([Candidate(rid, 1.0 - float(d)) for rid, d in rows if d is not None])


def lexical_candidates(query: CandidateQuery, text: str, n: int) -> Op[list[Candidate]]:
    """Full-text candidates: ``ts_rank_cd`` over the generated ``tsv`` column, any term matching.

    Each query term goes through ``plainto_tsquery`` as a bind parameter and the parts are OR-ed
    with ``||``, so no user text is ever parsed as tsquery syntax.
    """
    terms = query_terms(text)
    if not terms or n <= 0:
        return []
    tsq = "(" + " || ".join(["plainto_tsquery('english', %s)"] * len(terms)) + ")"
    clause, params = where(query)
    rows = yield Q(
        f"SELECT r.id, ts_rank_cd(r.tsv, {tsq}) AS s FROM records r WHERE r.tsv @@ {tsq} AND {clause} "
        "ORDER BY s DESC, r.row_key LIMIT %s",
        (*terms, *terms, *params, n),
    )
    return dedupe([Candidate(rid, float(score)) for rid, score in rows])
