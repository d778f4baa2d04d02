"""PostgreSQL schema, its migrations, and the DDL that follows the embedding space.

Migrations are numbered SQL lists; ``memq_schema`` records the ones applied. They run in one
transaction under a transaction-scoped advisory lock, so any number of processes or workers may
open a fresh database at the same moment: the first migrates, the others wait on the lock and then
find nothing left to do.

The ``embedding`` column starts as an untyped ``vector``. pgvector cannot put an HNSW index on a
column without a fixed dimension, so the column is typed ``vector(dim)`` and indexed when the
embedding space is first recorded (first vector written, ``set_embedding_space`` or the store's
``dim=`` argument), in the same transaction that writes the space into ``meta``, under a second
advisory lock. Re-embedding into another dimension drops and re-creates both. How rows enter the
index's graph (at once, or by the next build after a bulk load) is :mod:`.hnsw`'s.

Everything here is written as *operations* (see :mod:`memq.store.postgres.steps`): generators that
yield statements, so the sync and async stores run the very same code.
"""

from __future__ import annotations

from memq.errors import DimensionMismatchError, InvalidInputError, StoreError
from memq.store.postgres.hnsw import (
    HNSW_INDEX,
    HNSW_MAX_DIM,
    HNSW_NEXT,
    build_memory_mb,
    create_index,
    index_sql,
    set_watermark,
    tail_size,
    watermark,
)
from memq.store.postgres.steps import Op, Q

# advisory locks: (memq namespace, what is locked). Literals in SQL, never user input.
LOCK_NAMESPACE = 0x6D656D71  # "memq"
LOCK_MIGRATE = 1
LOCK_SPACE = 2
LOCK_BUILD = 3  # session-level: one HNSW build at a time

__all__ = ["HNSW_INDEX", "HNSW_MAX_DIM", "MIGRATIONS", "SCHEMA_VERSION"]

MAX_DIM = 16000  # the most dimensions a pgvector ``vector`` holds

# Each entry migrates from version i to i+1. Append; never edit a released entry.
MIGRATIONS: list[list[str]] = [
    # 1: the initial schema
    [
        "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
        # payload/metadata are kept twice: ``*_json`` (json) is the exact text the caller gave, so
        # key order and number spelling survive a round trip (export -> import -> export is
        # byte-identical, also against SQLite); the generated jsonb columns serve the filters.
        # ids sort bytewise (COLLATE "C"), like SQLite, so list() pages in the same order.
        """
        CREATE TABLE records (
            row_key bigserial PRIMARY KEY,
            id text COLLATE "C" NOT NULL,
            version integer NOT NULL,
            tenant text NOT NULL,
            user_id text,
            agent_id text,
            session_id text,
            kind text NOT NULL,
            text text NOT NULL,
            payload_json json NOT NULL,
            metadata_json json NOT NULL,
            payload jsonb GENERATED ALWAYS AS (payload_json::jsonb) STORED,
            metadata jsonb GENERATED ALWAYS AS (metadata_json::jsonb) STORED,
            source text,
            source_message_ids jsonb NOT NULL,
            parent_ids jsonb NOT NULL,
            valid_from timestamptz,
            valid_to timestamptz,
            recorded_at timestamptz NOT NULL,
            expired_at timestamptz,
            deleted boolean NOT NULL DEFAULT false,
            embedding_model text,
            embedding vector,
            tsv tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
            UNIQUE (id, version)
        )
        """,
        # at most one current version per record
        "CREATE UNIQUE INDEX records_one_current ON records (id) WHERE expired_at IS NULL",
        "CREATE INDEX records_tenant_id ON records (tenant, id)",
        "CREATE INDEX records_tenant_current ON records (tenant, kind) WHERE expired_at IS NULL",
        "CREATE INDEX records_tsv ON records USING gin (tsv)",
        """
        CREATE TABLE links (
            tenant text NOT NULL,
            src text COLLATE "C" NOT NULL,
            dst text COLLATE "C" NOT NULL,
            type text NOT NULL,
            created_at timestamptz NOT NULL,
            PRIMARY KEY (src, type, dst)
        )
        """,
        "CREATE INDEX links_dst ON links (dst)",
        """
        CREATE TABLE utility (
            id text COLLATE "C" PRIMARY KEY,
            tenant text NOT NULL,
            q double precision,
            n_shown bigint NOT NULL DEFAULT 0,
            n_used bigint NOT NULL DEFAULT 0,
            reward_sum double precision NOT NULL DEFAULT 0,
            last_feedback_at timestamptz
        )
        """,
        """
        CREATE TABLE events (
            seq bigserial PRIMARY KEY,
            tenant text NOT NULL,
            record_id text COLLATE "C" NOT NULL,
            op text NOT NULL,
            version integer NOT NULL,
            at timestamptz NOT NULL,
            actor text,
            reason text
        )
        """,
        "CREATE INDEX events_record ON events (tenant, record_id, seq)",
        """
        CREATE TABLE retrievals (
            id text PRIMARY KEY,
            tenant text NOT NULL,
            query text NOT NULL,
            policy text NOT NULL,
            k integer NOT NULL,
            shown jsonb NOT NULL,
            created_at timestamptz NOT NULL
        )
        """,
        "CREATE INDEX retrievals_tenant_time ON retrievals (tenant, created_at)",
    ],
    # 2: the learning layer — a richer retrieval log, per-record learner stats, learner state.
    # ``query_vector`` is the float32 vector's raw little-endian bytes (numpy ``tobytes``), exactly as
    # SQLite keeps it. ``utility.stats`` is ``json``, not ``jsonb``: like payload_json it keeps the
    # caller's key order, so an export carrying a learner's stats stays byte-identical across backends.
    [
        "ALTER TABLE retrievals ADD COLUMN policy_version text NOT NULL DEFAULT '1'",
        "ALTER TABLE retrievals ADD COLUMN pool jsonb NOT NULL DEFAULT '[]'",
        "ALTER TABLE retrievals ADD COLUMN query_vector bytea",
        "ALTER TABLE retrievals ADD COLUMN embedding_model text",
        "ALTER TABLE retrievals ADD COLUMN feedback jsonb",
        "ALTER TABLE utility ADD COLUMN stats json NOT NULL DEFAULT '{}'",
        """
        CREATE TABLE learner_state (
            tenant text NOT NULL,
            name text NOT NULL,
            state jsonb NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (tenant, name)
        )
        """,
    ],
    # 3: bulk loads and lexical search at scale.
    # ``deferred``: rows written without a graph insert, for the next HNSW build (hnsw.py); an index
    # made before this migration covers every row, so it keeps serving with watermark 0.
    # ``lexicon``: each tenant's document frequency of each lexeme, and ``lexicon_docs``: each tenant's
    # number of documents and their total length in lexemes, for BM25 (candidates.py). Per tenant, so a
    # tenant's scores depend on its own records only. A statement trigger keeps both on every insert
    # and delete of records (memq never changes a row's text in place). Both are split in 16 shards by
    # backend, so concurrent writers on different connections rarely wait on one row; a writer takes
    # its shard's lexicon_docs rows first (in tenant order), so two writers of one shard queue rather
    # than deadlock over lexemes.
    [
        "ALTER TABLE records ADD COLUMN deferred boolean NOT NULL DEFAULT false",
        "CREATE INDEX records_deferred ON records (row_key) WHERE deferred",
        "INSERT INTO meta (key, value) SELECT 'hnsw_upto', '0' "
        "WHERE to_regclass('records_embedding_hnsw') IS NOT NULL",
        """
        CREATE TABLE lexicon (
            tenant text NOT NULL,
            lexeme text NOT NULL,
            shard smallint NOT NULL,
            df bigint NOT NULL,
            PRIMARY KEY (tenant, lexeme, shard)
        )
        """,
        """
        CREATE TABLE lexicon_docs (
            tenant text NOT NULL,
            shard smallint NOT NULL,
            docs bigint NOT NULL,
            lexemes bigint NOT NULL,
            PRIMARY KEY (tenant, shard)
        )
        """,
        """
        CREATE FUNCTION memq_lexicon() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
            direction integer := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
            shard_no smallint := pg_backend_pid() % 16;
        BEGIN
            INSERT INTO lexicon_docs AS d (tenant, shard, docs, lexemes)
                SELECT c.tenant, shard_no, direction * count(*), direction * coalesce(sum(length(c.tsv)), 0)
                FROM changed AS c GROUP BY c.tenant ORDER BY c.tenant
                ON CONFLICT (tenant, shard) DO UPDATE
                SET docs = d.docs + excluded.docs, lexemes = d.lexemes + excluded.lexemes;
            INSERT INTO lexicon AS x (tenant, lexeme, shard, df)
                SELECT c.tenant, u.lexeme, shard_no, direction * count(*)
                FROM changed AS c, unnest(tsvector_to_array(c.tsv)) AS u(lexeme)
                GROUP BY c.tenant, u.lexeme ORDER BY c.tenant, u.lexeme
                ON CONFLICT (tenant, lexeme, shard) DO UPDATE SET df = x.df + excluded.df;
            RETURN NULL;
        END
        $$
        """,
        "CREATE TRIGGER records_lexicon_insert AFTER INSERT ON records REFERENCING NEW TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION memq_lexicon()",
        "CREATE TRIGGER records_lexicon_delete AFTER DELETE ON records REFERENCING OLD TABLE AS changed "
        "FOR EACH STATEMENT EXECUTE FUNCTION memq_lexicon()",
        "INSERT INTO lexicon (tenant, lexeme, shard, df) SELECT r.tenant, u.lexeme, 0, count(*) "
        "FROM records AS r, unnest(tsvector_to_array(r.tsv)) AS u(lexeme) GROUP BY r.tenant, u.lexeme",
        "INSERT INTO lexicon_docs (tenant, shard, docs, lexemes) "
        "SELECT tenant, 0, count(*), coalesce(sum(length(tsv)), 0) FROM records GROUP BY tenant",
    ],
    # 4: one read path for learning — what was served and its feature vectors (float32 bytes, as
    # SQLite keeps them); versioned learner states with a feedback count
    [
        "ALTER TABLE retrievals ADD COLUMN learner text",
        "ALTER TABLE retrievals ADD COLUMN \"window\" jsonb NOT NULL DEFAULT '[]'",
        "ALTER TABLE retrievals ADD COLUMN feature_set text",
        "ALTER TABLE retrievals ADD COLUMN features bytea",
        "ALTER TABLE retrievals ADD COLUMN shadow jsonb",
        "ALTER TABLE learner_state ADD COLUMN version integer NOT NULL DEFAULT 1",
        "ALTER TABLE learner_state ADD COLUMN feedbacks bigint NOT NULL DEFAULT 0",
        "CREATE INDEX retrievals_feedback ON retrievals (tenant, created_at) WHERE feedback IS NOT NULL",
    ],
    # 5: a logged search's pool scores packed (float32 bytes), not formatted as JSON numbers; ``pool``
    # keeps each candidate's id, which erasure searches (lines logged before keep their scores there)
    ["ALTER TABLE retrievals ADD COLUMN pool_scores bytea"],
    # 6: new rows' text-index entries wait in the GIN index's pending list until it holds 256 kB (not
    # PostgreSQL's default 4 MB) or a vacuum merges them, since every lexical search scans the whole
    # list (measurements: commit e21059d; turning fastupdate off instead cost far more on adds)
    ["ALTER INDEX records_tsv SET (gin_pending_list_limit = 256)"],
]

SCHEMA_VERSION = len(MIGRATIONS)

# every table memq owns (for stats' byte count)
TABLES = (
    "memq_schema",
    "meta",
    "records",
    "links",
    "utility",
    "events",
    "retrievals",
    "learner_state",
    "lexicon",
    "lexicon_docs",
)


def lock(key: int) -> Q:
    """Take one of memq's advisory locks until the transaction ends."""
    return Q(f"SELECT pg_advisory_xact_lock({LOCK_NAMESPACE}, {int(key)})", mode="none")


def migrate(dim: int | None = None) -> Op[int]:
    """Create the extension, apply pending migrations, and (with ``dim``) prepare the vector column.

    Runs in one transaction under the migration lock. Also repairs a space left without its HNSW
    index (a re-embed that stopped before its last batch).
    """
    yield lock(LOCK_MIGRATE)
    yield Q("CREATE EXTENSION IF NOT EXISTS vector", mode="none")
    yield Q(
        "CREATE TABLE IF NOT EXISTS memq_schema ("
        "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
        mode="none",
    )
    row = yield Q("SELECT coalesce(max(version), 0) FROM memq_schema", mode="one")
    current = int(row[0])
    if current > SCHEMA_VERSION:
        raise StoreError(
            f"this database has memq schema version {current}, newer than this memq ({SCHEMA_VERSION}); "
            "upgrade memq"
        )
    for version in range(current, SCHEMA_VERSION):
        for statement in MIGRATIONS[version]:
            yield Q(statement, mode="none")
        yield Q("INSERT INTO memq_schema (version) VALUES (%s)", (version + 1,), mode="none")
    if dim is not None:
        yield from prepare_dim(dim)
    else:
        yield from ensure_vector_index()
    return SCHEMA_VERSION


# -- the embedding space ------------------------------------------------------------------------------


def check_dim(dim: int) -> int:
    """A dimension safe to splice into DDL (``vector(n)`` takes no bind parameter)."""
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
        raise InvalidInputError(f"embedding dimension must be an integer from 1 to {MAX_DIM}, got {dim!r}")
    return dim


def read_space() -> Op[tuple[str, int] | None]:
    rows = yield Q("SELECT key, value FROM meta WHERE key IN ('embedding_model', 'embedding_dim')")
    values = dict(rows)
    if "embedding_model" not in values:
        return None
    return values["embedding_model"], int(values["embedding_dim"])


def column_dim() -> Op[int | None]:
    """The dimension the ``embedding`` column is typed with (None while untyped)."""
    row = yield Q(
        "SELECT atttypmod FROM pg_attribute WHERE attrelid = 'records'::regclass AND attname = 'embedding'",
        mode="one",
    )
    return None if row is None or row[0] < 0 else int(row[0])


def mismatch(space: tuple[str, int], model_id: str, dim: int) -> DimensionMismatchError:
    return DimensionMismatchError(
        f"this store holds vectors of {space[0]!r} ({space[1]}-d); "
        f"the embedder is {model_id!r} ({dim}-d). Use the same embedder, or re-embed the store "
        "with `memq reembed` / Memory.reembed()"
    )


def check_or_set_space(model_id: str, dim: int) -> Op[None]:
    """Record the space on first use, or raise DimensionMismatchError if another one is set.

    The common case (space set and equal) is one read and no lock. Setting it takes the space lock
    and reads again: under READ COMMITTED that read sees a space another transaction committed
    while this one waited, so two first writers cannot both type the column. Callers run this
    before touching ``records``: the ALTER TABLE needs an exclusive lock on the table, and a
    transaction that already read it while waiting for the space lock would deadlock with it.
    """
    check_dim(dim)
    space = yield from read_space()
    if space is None:
        yield lock(LOCK_SPACE)
        space = yield from read_space()
        if space is None:
            yield from type_column(dim, keep_values=True)
            yield from write_space(model_id, dim)
            return
    if space != (model_id, dim):
        raise mismatch(space, model_id, dim)


def write_space(model_id: str, dim: int) -> Op[None]:
    yield Q(
        "INSERT INTO meta (key, value) VALUES ('embedding_model', %s), ('embedding_dim', %s)",
        (model_id, str(dim)),
        mode="none",
    )


def reset_space(model_id: str, dim: int) -> Op[None]:
    """Forget every vector and switch the store to a new space (the first step of a re-embed).

    The index is created by :func:`ensure_vector_index` after the last batch: building HNSW over
    the finished column is much faster than growing it row by row.
    """
    check_dim(dim)
    yield lock(LOCK_SPACE)
    yield Q("DELETE FROM meta WHERE key IN ('embedding_model', 'embedding_dim')", mode="none")
    yield from type_column(dim, keep_values=False)
    yield Q("UPDATE records SET embedding_model = NULL WHERE embedding_model IS NOT NULL", mode="none")
    yield from write_space(model_id, dim)


def type_column(dim: int, *, keep_values: bool) -> Op[None]:
    """Type the embedding column ``vector(dim)`` (a no-op if it already is) and index it.

    ``keep_values=False`` empties the column (re-embed); with True, existing values must already
    have ``dim`` dimensions (there are none when no space is recorded).
    """
    dim = check_dim(dim)
    current = yield from column_dim()
    if current != dim or not keep_values:
        yield Q(f"DROP INDEX IF EXISTS {HNSW_INDEX}", mode="none")
        yield Q(f"DROP INDEX IF EXISTS {HNSW_NEXT}", mode="none")
        yield Q("DELETE FROM meta WHERE key = 'hnsw_upto'", mode="none")
        using = f"embedding::vector({dim})" if keep_values else f"NULL::vector({dim})"
        yield Q(f"ALTER TABLE records ALTER COLUMN embedding TYPE vector({dim}) USING {using}", mode="none")
    if keep_values:
        yield from create_index(dim)


def ensure_vector_index() -> Op[None]:
    """Create the HNSW index if a space is recorded and the column typed but the index is missing."""
    space = yield from read_space()
    if space is None:
        return
    typed = yield from column_dim()
    if typed == space[1]:
        yield from create_index(space[1])


def index_ok() -> Op[bool]:
    """True when the vector column and its HNSW index match the recorded space (used by tests).

    No space: nothing to check. Above HNSW_MAX_DIM there is deliberately no index.
    """
    space = yield from read_space()
    if space is None:
        return True
    typed = yield from column_dim()
    if typed != space[1]:
        return False
    if space[1] > HNSW_MAX_DIM:
        return True
    row = yield Q(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'records'::regclass AND c.relname = %s",
        (HNSW_INDEX,),
        mode="one",
    )
    return row is not None and bool(row[0])


def build_index(wait: bool) -> Op[bool]:
    """Build the HNSW index again over every row, if rows wait outside its graph (see :mod:`.hnsw`).

    A *maintenance* operation: the runner runs it on an autocommit connection (``CREATE INDEX
    CONCURRENTLY`` cannot run in a transaction), and afterwards releases the session's advisory locks
    and resets its settings whatever happened. The next index is built beside the current one, which
    keeps serving, with writers never blocked; the swap (drop the old, rename the new, move the
    watermark) is one short transaction. One build at a time: with ``wait`` this waits for a build of
    another session to end (then has nothing left to do), without it returns False at once.
    Returns True when the index covers every row.
    """
    if wait:
        yield Q(f"SELECT pg_advisory_lock({LOCK_NAMESPACE}, {LOCK_BUILD})", mode="none")
    else:
        got = yield Q(f"SELECT pg_try_advisory_lock({LOCK_NAMESPACE}, {LOCK_BUILD})", mode="one")
        if not got[0]:
            return False
    space = yield from read_space()
    upto = yield from watermark()
    if space is None or space[1] > HNSW_MAX_DIM or upto is None:
        return True  # nothing to build (no vectors, no index for this dimension, or a re-embed running)
    if (yield from tail_size(upto, 1)) == 0:
        return True
    top = yield Q("SELECT coalesce(max(row_key), 0) FROM records", mode="one")
    upto = int(top[0])
    yield Q(f"DROP INDEX CONCURRENTLY IF EXISTS {HNSW_NEXT}", mode="none")  # a failed build's remains
    yield Q(f"SET maintenance_work_mem = '{build_memory_mb(upto, space[1])}MB'", mode="none")
    yield Q(index_sql(HNSW_NEXT, upto, concurrently=True), mode="none")
    yield Q("BEGIN", mode="none")
    yield lock(LOCK_SPACE)  # a re-embed that started meanwhile dropped the next index, or voided it
    space_now = yield from read_space()
    upto_now = yield from watermark()
    built = yield Q("SELECT to_regclass(%s) IS NOT NULL", (HNSW_NEXT,), mode="one")
    if space_now != space or upto_now is None or not built[0]:
        yield Q("ROLLBACK", mode="none")
        yield Q(f"DROP INDEX CONCURRENTLY IF EXISTS {HNSW_NEXT}", mode="none")
        return False
    yield Q(f"DROP INDEX IF EXISTS {HNSW_INDEX}", mode="none")
    yield Q(f"ALTER INDEX {HNSW_NEXT} RENAME TO {HNSW_INDEX}", mode="none")
    yield from set_watermark(upto)
    yield Q("COMMIT", mode="none")
    # a build follows a bulk load, often before autovacuum has been through the new rows: without column
    # statistics the planner takes a tenant for one row and sorts all of them instead of using the graph;
    # every lexical search scans the text index's pending list, where new rows' entries wait until a
    # vacuum merges them; and each row's first reader sets its hint bits. VACUUM does all three
    # (beside readers and writers)
    yield Q("VACUUM (ANALYZE) records", mode="none")
    return True


# what a maintenance runner runs on its connection afterwards, whatever happened (after a rollback
# that ends a swap a failure interrupted)
MAINTENANCE_RESET = ("RESET maintenance_work_mem", "SELECT pg_advisory_unlock_all()")


def prepare_dim(dim: int) -> Op[None]:
    """At open with ``dim=``: refuse a store of another dimension, or type and index the column now.

    Typing the column at deploy time keeps the DDL off the first insert of a busy service.
    """
    dim = check_dim(dim)
    yield lock(LOCK_SPACE)
    space = yield from read_space()
    if space is not None:
        if space[1] != dim:
            raise DimensionMismatchError(
                f"this store holds {space[1]}-d vectors of {space[0]!r}, but it was opened with dim={dim}; "
                "open it with the same dimension, or re-embed it with `memq reembed` / Memory.reembed()"
            )
        yield from ensure_vector_index()
        return
    yield from type_column(dim, keep_values=True)
