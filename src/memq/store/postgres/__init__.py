"""The PostgreSQL + pgvector backend, sync and natively async.

* :class:`PostgresStore` — blocking, on a psycopg connection pool;
* :class:`AsyncPostgresStore` — ``await AsyncPostgresStore.connect(dsn)``, on psycopg's async pool.

Both run the same operations (:mod:`.sql`, :mod:`.schema`, driven as described in :mod:`.steps`),
so they cannot drift apart. Dense search is pgvector HNSW (cosine) with an exact re-run when a
filter starves the index; lexical search is PostgreSQL full text (``ts_rank_cd``).
"""

from memq.store.postgres.aio import AsyncPostgresStore
from memq.store.postgres.sync import PostgresStore

__all__ = ["AsyncPostgresStore", "PostgresStore"]
