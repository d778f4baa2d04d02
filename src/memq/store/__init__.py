"""Storage backends behind one protocol, and ``open_store`` to pick one from a URL or path."""

from __future__ import annotations

from pathlib import Path

from memq.store.base import (
    AsyncStore,
    Candidate,
    CandidateQuery,
    InsertGroup,
    Store,
    VersionChange,
    WriteBatch,
)

__all__ = [
    "AsyncStore",
    "Candidate",
    "CandidateQuery",
    "InsertGroup",
    "Store",
    "VersionChange",
    "WriteBatch",
    "is_postgres_url",
    "open_store",
]


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def open_store(url: str | Path) -> Store:
    """A store from ``postgresql://...`` (PostgreSQL + pgvector) or a file path (SQLite)."""
    text = str(url)
    if is_postgres_url(text):
        from memq.store.postgres import PostgresStore

        return PostgresStore(text)
    if text.startswith("sqlite:///"):
        text = text.removeprefix("sqlite:///")
    from memq.store.sqlite import SQLiteStore

    return SQLiteStore(text)
