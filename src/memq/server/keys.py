"""API keys: random secrets bound to one tenant and a set of scopes, stored hashed.

A key reads ``memq_<id>_<secret>``: ``id`` (16 hex characters) is public — it names the key in
``memq keys list`` and ``revoke`` and is how a presented key is looked up — and ``secret`` is 32
random bytes (``secrets.token_urlsafe``). Only the SHA-256 of the whole key is stored. A fast hash
is enough here because the key carries 256 bits of randomness: a slow password hash (bcrypt,
argon2) protects low-entropy human passwords against guessing, which a 256-bit secret does not
need, while costing every request milliseconds. The digest is compared in constant time.

The keys live in the same database as the memories (SQLite file or PostgreSQL), in their own table
``memq_api_keys``, created on first use; the memory store's schema is not touched.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from memq.errors import InvalidInputError, NotFoundError, StoreError
from memq.store import is_postgres_url
from memq.types import utcnow

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "memq"
_KEY_RE = re.compile(r"^memq_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")

_TABLE = """CREATE TABLE IF NOT EXISTS memq_api_keys (
    id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    name TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
)"""
_COLUMNS = "id, tenant, scopes, name, created_at, revoked_at"


class ApiKey(BaseModel):
    """A stored API key, without its secret."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    tenant: str
    scopes: list[str]
    name: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def check_scopes(scopes: Sequence[str]) -> list[str]:
    wanted = [s.strip().lower() for s in scopes if s.strip()]
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown:
        raise InvalidInputError(f"unknown scopes {unknown}; use {', '.join(SCOPES)}")
    if not wanted:
        raise InvalidInputError(f"a key needs at least one scope ({', '.join(SCOPES)})")
    return [s for s in SCOPES if s in wanted]


class _Backend(Protocol):
    local: bool

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def close(self) -> None: ...


class _SQLiteBackend:
    local = True  # an embedded file: a lookup takes microseconds

    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute(_TABLE)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the key store in {path}: {exc}") from exc

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"key store: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PostgresBackend:
    local = False

    def __init__(self, dsn: str) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool

        self._errors = (psycopg.Error,)
        try:
            with psycopg.connect(dsn, autocommit=False) as conn:
                # several workers may start at once: one creates the table, the others wait
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('memq_api_keys'))")
                conn.execute(_TABLE)
                conn.commit()
            self._pool = ConnectionPool(dsn, min_size=1, max_size=4, open=True, kwargs={"autocommit": True})
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the key store: {exc}") from exc

    def run(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._pool.connection() as conn:
                cur = conn.execute(sql.replace("?", "%s"), tuple(params))
                return cur.fetchall() if cur.description else []
        except self._errors as exc:
            raise StoreError(f"key store: {exc}") from exc

    def close(self) -> None:
        self._pool.close()


def _row(row: Sequence[Any]) -> ApiKey:
    return ApiKey(
        id=row[0],
        tenant=row[1],
        scopes=[s for s in str(row[2]).split(",") if s],
        name=row[3],
        created_at=datetime.fromisoformat(row[4]),
        revoked_at=None if row[5] is None else datetime.fromisoformat(row[5]),
    )


class KeyStore:
    """Create, list, revoke and verify API keys (see the module docstring for the format)."""

    def __init__(self, backend: _Backend) -> None:
        self._db = backend
        # True when verify() is cheap enough to call on the event loop (SQLite); False: a network round trip
        self.local = backend.local

    def create(self, tenant: str, scopes: Sequence[str], name: str | None = None) -> tuple[ApiKey, str]:
        """A new key. Returns the stored key and the secret, which is shown this once and never again."""
        if not isinstance(tenant, str) or not tenant.strip() or len(tenant) > 200:
            raise InvalidInputError("a key needs a tenant: a non-empty string of at most 200 characters")
        if name is not None and len(name) > 200:
            raise InvalidInputError("a key's name is at most 200 characters")
        key = ApiKey(
            id=secrets.token_hex(8),
            tenant=tenant,
            scopes=check_scopes(scopes),
            name=name,
            created_at=utcnow(),
        )
        secret = f"{KEY_PREFIX}_{key.id}_{secrets.token_urlsafe(32)}"
        self._db.run(
            "INSERT INTO memq_api_keys (id, key_hash, tenant, scopes, name, created_at, revoked_at) "
            "VALUES (?, ?, ?, ?, ?, ?, NULL)",
            (
                key.id,
                hash_key(secret),
                key.tenant,
                ",".join(key.scopes),
                key.name,
                key.created_at.isoformat(),
            ),
        )
        return key, secret

    def verify(self, secret: str) -> ApiKey | None:
        """The key this secret belongs to, or None (malformed, unknown, wrong secret or revoked)."""
        match = _KEY_RE.match(secret.strip()) if isinstance(secret, str) else None
        if match is None:
            return None
        rows = self._db.run(f"SELECT {_COLUMNS}, key_hash FROM memq_api_keys WHERE id = ?", (match[1],))
        if not rows or not hmac.compare_digest(rows[0][6], hash_key(secret.strip())):
            return None
        key = _row(rows[0])
        return None if key.revoked else key

    def get(self, key_id: str) -> ApiKey:
        rows = self._db.run(f"SELECT {_COLUMNS} FROM memq_api_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFoundError(f"no API key {key_id!r}")
        return _row(rows[0])

    def list(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (revoked ones too), oldest first; only ``tenant``'s when given."""
        sql = f"SELECT {_COLUMNS} FROM memq_api_keys"
        params: tuple[Any, ...] = ()
        if tenant is not None:
            sql, params = sql + " WHERE tenant = ?", (tenant,)
        return [_row(r) for r in self._db.run(sql + " ORDER BY created_at, id", params)]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (it stops working at once, in every worker). Revoking twice keeps the first time."""
        self.get(key_id)
        self._db.run(
            "UPDATE memq_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (utcnow().isoformat(), key_id),
        )
        return self.get(key_id)

    def close(self) -> None:
        self._db.close()


def open_key_store(db: str) -> KeyStore:
    """The key store of a memq database: a SQLite file path or a ``postgresql://`` DSN."""
    if is_postgres_url(db):
        return KeyStore(_PostgresBackend(db))
    return KeyStore(_SQLiteBackend(db.removeprefix("sqlite:///")))
