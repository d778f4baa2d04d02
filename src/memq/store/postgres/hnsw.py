"""The HNSW index over the vectors, and when rows go into its graph.

pgvector inserts every new row into the HNSW graph on its own, in the inserting backend, on one core:
at 100,000 records that is most of an add's time. Building the graph over many rows at once (``CREATE
INDEX``) is several times cheaper per row. So the index is *partial*, over the rows up to a watermark
row key ``W`` (kept in ``meta`` as ``hnsw_upto``) plus every row inserted into the graph one by one::

    CREATE INDEX records_embedding_hnsw ON records USING hnsw (embedding vector_cosine_ops)
        WITH (m = 16, ef_construction = 64) WHERE row_key <= W OR NOT deferred

An insert decides per batch (:func:`defer`): when the rows not yet in the graph (the *tail*: ``deferred``
rows above ``W``) plus this batch come to at least ``DEFER_RATIO`` of the rows in the graph, the batch
is written ``deferred`` and skips the graph: a build will take it faster than row-by-row inserts
would. Otherwise (a few rows into a large store, the usual agent write) it goes into the graph at once,
as before. A fresh store is a bulk load: everything is deferred until the first build.

Dense search stays exact and complete meanwhile: it searches the graph for the indexed rows and
scans the tail exactly (:mod:`.candidates`). The first dense search that finds ``BUILD_TAIL`` or
more rows in the tail builds the index again over every row (``schema.build_index``: ``CREATE INDEX
CONCURRENTLY`` of the next index with ``W`` = the newest row key, so writers are not blocked, then a
swap, then ``ANALYZE records`` so the planner has column statistics for the rows the load brought),
unless another session is building it, in which case the search scans the tail. That search
waits for the build, as the SQLite store's first search waits for its index: the trade-off is a slow
first search after a bulk load for adds that never wait on the graph (``PostgresStore.build_index()``
builds it right after a load instead).
"""

from __future__ import annotations

import math

from memq.store.postgres.steps import Op, Q

HNSW_INDEX = "records_embedding_hnsw"
HNSW_NEXT = "records_embedding_hnsw_next"  # the index being built, swapped in when done
HNSW_MAX_DIM = 2000  # pgvector 0.6 indexes at most 2,000 dimensions; above that search stays exact
HNSW_OPTIONS = "m = 16, ef_construction = 64"

# defer a batch when (tail + batch) >= DEFER_RATIO * rows in the graph: pgvector builds a graph about
# six times faster per row than it inserts rows one by one (measured at 20,000-100,000 384-d rows), so
# past ~1/5 of the graph's size rebuilding is the cheaper way to take the new rows in
DEFER_RATIO = 0.2
# a dense search builds the index when the tail reaches this many rows (below it, scanning the tail
# exactly costs a few milliseconds)
BUILD_TAIL = 1000
# memory for one build: pgvector builds fast while the graph fits in maintenance_work_mem
BUILD_MEMORY_MB = (64, 1024)

WATERMARK = "SELECT value::bigint AS upto FROM meta WHERE key = 'hnsw_upto'"


class IndexBehind(Exception):  # a signal from an operation to its runner, not an error
    """Raised by a dense search that finds ``BUILD_TAIL`` rows outside the graph and may build: the
    runner builds the index (outside any transaction) and runs the search again."""


def in_graph(upto: int, alias: str = "r.") -> str:
    """The index predicate for watermark ``upto`` (on alias ``r``): a query that states it may use the
    index. ``upto`` is an integer from ``meta``, spliced as a literal so the planner can match it."""
    return f"({alias}row_key <= {int(upto)} OR NOT {alias}deferred)"


def tail(upto: int) -> str:
    """The rows not in the graph (on alias ``r``), found through the ``records_deferred`` index."""
    return f"(r.deferred AND r.row_key > {int(upto)})"


def index_sql(name: str, upto: int, *, concurrently: bool = False) -> str:
    how = "CONCURRENTLY " if concurrently else ""
    return (
        f"CREATE INDEX {how}{name} ON records USING hnsw (embedding vector_cosine_ops) "
        f"WITH ({HNSW_OPTIONS}) WHERE {in_graph(upto, alias='')}"
    )


def create_index(dim: int) -> Op[None]:
    """The index over every row now in the table (inside the caller's transaction), unless it exists.

    For a new space (no rows, or rows just re-embedded) and repairs; a store with rows builds through
    ``schema.build_index`` instead, without blocking writers.
    """
    if dim > HNSW_MAX_DIM:
        return
    exists = yield Q("SELECT to_regclass(%s) IS NOT NULL", (HNSW_INDEX,), mode="one")
    if exists[0]:
        return
    top = yield Q("SELECT coalesce(max(row_key), 0) FROM records", mode="one")
    yield Q(index_sql(HNSW_INDEX, int(top[0])), mode="none")
    yield from set_watermark(int(top[0]))


def set_watermark(upto: int) -> Op[None]:
    yield Q(
        "INSERT INTO meta (key, value) VALUES ('hnsw_upto', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(int(upto)),),
        mode="none",
    )


def watermark() -> Op[int | None]:
    """The index's watermark row key; None when there is no index (no space yet, too many dimensions,
    or a re-embed in progress): dense search is then exact over every row."""
    row = yield Q(WATERMARK, mode="one")
    return None if row is None else int(row[0])


def graph_state(cap: int, ef_search: int) -> Op[tuple[int, int] | None]:
    """(watermark, tail size counted up to ``cap``) in one round trip, which also sets ``hnsw.ef_search``
    for the rest of the transaction; None when there is no index."""
    row = yield Q(
        f"SELECT w.upto, (SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.deferred AND r.row_key > w.upto "
        f"LIMIT %s) AS t), set_config('hnsw.ef_search', %s, true) FROM ({WATERMARK}) AS w",
        (max(0, int(cap)), str(int(ef_search))),
        mode="one",
    )
    return None if row is None else (int(row[0]), int(row[1]))


def tail_size(upto: int, cap: int) -> Op[int]:
    """How many rows are in the tail, counted up to ``cap``."""
    row = yield Q(
        f"SELECT count(*) FROM (SELECT 1 FROM records r WHERE {tail(upto)} LIMIT %s) AS t",
        (max(0, int(cap)),),
        mode="one",
    )
    return int(row[0])


def defer(count: int) -> Op[bool]:
    """Whether ``count`` new rows with vectors should skip the graph (see the module docstring).

    One round trip: the watermark, the newest row key (about the number of rows), and the tail counted
    up to the length that defers whatever comes."""
    if count <= 0:
        return False
    row = yield Q(
        "SELECT w.upto, t.top, (SELECT count(*) FROM (SELECT 1 FROM records r WHERE r.deferred AND "
        "r.row_key > w.upto LIMIT (SELECT ceil(%s * t.top)::bigint + 1)) AS x) "
        f"FROM ({WATERMARK}) AS w, (SELECT coalesce(max(row_key), 0) AS top FROM records) AS t",
        (DEFER_RATIO,),
        mode="one",
    )
    if row is None:  # no index: nothing to defer for
        return False
    rows, pending = int(row[1]), int(row[2])
    return pending + count >= DEFER_RATIO * max(0, rows - pending)


def build_memory_mb(rows: int, dim: int) -> int:
    """maintenance_work_mem for a build over ``rows`` vectors: the graph (vectors + neighbour lists,
    with headroom), clamped to ``BUILD_MEMORY_MB``."""
    need = rows * (4 * dim + 2 * 16 * 8 + 64) * 1.3 / 2**20
    low, high = BUILD_MEMORY_MB
    return int(min(high, max(low, math.ceil(need))))
