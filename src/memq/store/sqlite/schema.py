"""SQLite schema and its migrations (``PRAGMA user_version`` counts the ones applied)."""

from __future__ import annotations

import sqlite3

# the records columns the light-row mirror holds: an update of any of them is logged (migration 7)
_MIRRORED_UPDATE = (
    "UPDATE OF id, tenant, user_id, agent_id, session_id, kind, text, metadata, valid_from, valid_to, "
    "recorded_at, expired_at, deleted"
)


def _logs_change(name: str, event: str, table: str, column: str) -> str:
    """A trigger logging into ``row_changes`` the record id in ``column`` of each row ``event`` touches
    (an update logs the old id, and the new one when it changed)."""
    body = f"INSERT INTO row_changes (id) VALUES ({'new' if event == 'INSERT' else 'old'}.{column});"
    if event.startswith("UPDATE"):
        body += f" INSERT INTO row_changes (id) SELECT new.{column} WHERE new.{column} IS NOT old.{column};"
    return f"CREATE TRIGGER {name} AFTER {event} ON {table} BEGIN {body} END;\n"


# Each entry migrates from version i to i+1. Append; never edit a released entry.
MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

    CREATE TABLE records (
        rowid INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        tenant TEXT NOT NULL,
        user_id TEXT,
        agent_id TEXT,
        session_id TEXT,
        kind TEXT NOT NULL,
        text TEXT NOT NULL,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        source TEXT,
        source_message_ids TEXT NOT NULL,
        parent_ids TEXT NOT NULL,
        valid_from INTEGER,
        valid_to INTEGER,
        recorded_at INTEGER NOT NULL,
        expired_at INTEGER,
        deleted INTEGER NOT NULL DEFAULT 0,
        embedding_model TEXT,
        embedding BLOB,
        UNIQUE (id, version)
    );
    -- at most one current version per record
    CREATE UNIQUE INDEX records_one_current ON records (id) WHERE expired_at IS NULL;
    CREATE INDEX records_tenant_id ON records (tenant, id);
    CREATE INDEX records_tenant_current ON records (tenant, kind) WHERE expired_at IS NULL;

    CREATE VIRTUAL TABLE records_fts USING fts5 (
        text, content = 'records', content_rowid = 'rowid',
        tokenize = 'porter unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER records_fts_ins AFTER INSERT ON records BEGIN
        INSERT INTO records_fts (rowid, text) VALUES (new.rowid, new.text);
    END;
    CREATE TRIGGER records_fts_del AFTER DELETE ON records BEGIN
        INSERT INTO records_fts (records_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    END;

    -- vectors removed by purge, replayed by every process's in-memory index
    CREATE TABLE vec_removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL);

    CREATE TABLE links (
        tenant TEXT NOT NULL,
        src TEXT NOT NULL,
        dst TEXT NOT NULL,
        type TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (src, type, dst)
    );
    CREATE INDEX links_dst ON links (dst);

    CREATE TABLE utility (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        q REAL,
        n_shown INTEGER NOT NULL DEFAULT 0,
        n_used INTEGER NOT NULL DEFAULT 0,
        reward_sum REAL NOT NULL DEFAULT 0,
        last_feedback_at INTEGER
    );

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        tenant TEXT NOT NULL,
        record_id TEXT NOT NULL,
        op TEXT NOT NULL,
        version INTEGER NOT NULL,
        at INTEGER NOT NULL,
        actor TEXT,
        reason TEXT
    );
    CREATE INDEX events_record ON events (record_id, seq);

    CREATE TABLE retrievals (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        query TEXT NOT NULL,
        policy TEXT NOT NULL,
        k INTEGER NOT NULL,
        shown TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX retrievals_tenant_time ON retrievals (tenant, created_at);
    """,
    # 2: the learning layer — a richer retrieval log, per-record learner stats, learner state
    """
    ALTER TABLE retrievals ADD COLUMN policy_version TEXT NOT NULL DEFAULT '1';
    ALTER TABLE retrievals ADD COLUMN pool TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE retrievals ADD COLUMN query_vector BLOB;
    ALTER TABLE retrievals ADD COLUMN embedding_model TEXT;
    ALTER TABLE retrievals ADD COLUMN feedback TEXT;
    ALTER TABLE utility ADD COLUMN stats TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE learner_state (
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (tenant, name)
    );
    """,
    # 3: a covering index for the visibility scan of exact dense search (avoids reading wide rows)
    """
    CREATE INDEX records_visible ON records (tenant, expired_at, valid_to, user_id, agent_id, session_id, kind, id);
    """,
    # 4: one read path for learning — what was served and its feature vectors; versioned learner state
    """
    ALTER TABLE retrievals ADD COLUMN learner TEXT;
    ALTER TABLE retrievals ADD COLUMN window TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE retrievals ADD COLUMN feature_set TEXT;
    ALTER TABLE retrievals ADD COLUMN features BLOB;
    ALTER TABLE retrievals ADD COLUMN shadow TEXT;
    ALTER TABLE learner_state ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE learner_state ADD COLUMN feedbacks INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX retrievals_feedback ON retrievals (tenant, created_at) WHERE feedback IS NOT NULL;
    """,
    # 5: lexical search moves from FTS5 to the in-memory index beside the file
    # (memq.store.sqlite.lexical): every removed row is logged for it, and FTS5 goes (its insert
    # trigger cost ~80 µs an add; the index gives the same BM25 ranking)
    """
    CREATE TABLE lex_removed (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL);
    CREATE TRIGGER records_lex_del AFTER DELETE ON records BEGIN
        INSERT INTO lex_removed (row) VALUES (old.rowid);
    END;
    DROP TRIGGER records_fts_ins;
    DROP TRIGGER records_fts_del;
    DROP TABLE records_fts;
    """,
    # 6: a logged search's pool scores packed (float32), not formatted as JSON numbers; ``pool``
    # keeps each candidate's id, which erasure searches (lines logged before keep their scores there)
    """
    ALTER TABLE retrievals ADD COLUMN pool_scores BLOB;
    """,
    # 7: the light rows search reads are mirrored in memory (memq.store.sqlite.mirror): every write
    # to what they hold logs the record's id, by trigger (_logs_change), so no writer can forget it; the
    # log keeps its last 65,536 entries (a mirror further behind starts again empty)
    "CREATE TABLE row_changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL);\n"
    + "".join(
        _logs_change(*t)
        for t in (
            ("records_changed", _MIRRORED_UPDATE, "records", "id"),
            ("records_gone", "DELETE", "records", "id"),
            ("utility_added", "INSERT", "utility", "id"),
            ("utility_changed", "UPDATE", "utility", "id"),
            ("utility_gone", "DELETE", "utility", "id"),
            ("links_added", "INSERT", "links", "src"),
            ("links_changed", "UPDATE", "links", "src"),
            ("links_gone", "DELETE", "links", "src"),
        )
    )
    + """
    CREATE TRIGGER row_changes_pruned AFTER INSERT ON row_changes WHEN new.seq % 4096 = 0 BEGIN
        DELETE FROM row_changes WHERE seq <= new.seq - 65536;
    END;
    """,
    # 8: the vector index's check on open (its saved file against the rows) counts the rows that have a
    # vector from this small partial index instead of reading every row of the table
    """
    CREATE INDEX IF NOT EXISTS records_embedded ON records (deleted) WHERE embedding IS NOT NULL;
    """,
    # 9: the vector index's removals are logged by trigger, as the lexical index's are (5): no writer
    # can delete a row with a vector without the index hearing of it, so a saved index file is checked
    # on open by its watermarks and last row (SQLiteBase._file_matches), not by counting the rows
    """
    CREATE TRIGGER IF NOT EXISTS records_vec_del AFTER DELETE ON records WHEN old.embedding IS NOT NULL BEGIN
        INSERT INTO vec_removed (row) VALUES (old.rowid);
    END;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations, each in its own transaction. Returns the schema version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if current > SCHEMA_VERSION:
        from memq.errors import StoreError

        raise StoreError(
            f"this database has schema version {current}, newer than this memq ({SCHEMA_VERSION}); upgrade memq"
        )
    for version in range(current, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check under the write lock: another process may have migrated meanwhile
            if conn.execute("PRAGMA user_version").fetchone()[0] != version:
                conn.execute("ROLLBACK")
                continue
            for statement in _split(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _split(script: str) -> list[str]:
    """Split a migration into statements (triggers contain ';' inside BEGIN ... END)."""
    statements: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        statements.append(buf.strip())
    return statements
