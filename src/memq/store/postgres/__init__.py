"""The PostgreSQL + pgvector backend, sync and natively async.

* :class:`PostgresStore` — blocking, on a psycopg connection pool;
* :class:`AsyncPostgresStore` — ``await AsyncPostgresStore.connect(dsn)``, on psycopg's async pool.

Both have the same methods, written once (:mod:`.methods`), running the same operations — I/O-free
generators of statements (:mod:`.steps`), one module per concern: :mod:`.records` (records, versions,
history, archive, purge, stats), :mod:`.candidates` (dense and lexical candidates, visibility),
:mod:`.log` (the retrieval log and the feedback transaction), :mod:`.learners` (learner state),
:mod:`.transfer` (export, import, re-embedding) and :mod:`.schema` (migrations, the embedding space);
:mod:`.rows` maps rows to memq's types. The two store classes only run operations (blocking, or with
``await``), so they cannot drift apart.

Dense search is pgvector HNSW (cosine) with an exact re-run when a filter starves the index; rows of a
bulk load wait outside the index's graph for one build and are scanned exactly meanwhile
(:mod:`.hnsw`). Lexical search is BM25 over PostgreSQL full text, with term statistics kept by a
trigger (:mod:`.candidates`). Bulk writes go in by ``COPY``.
"""

from memq.store.postgres.aio import AsyncPostgresStore
from memq.store.postgres.sync import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore"]
