"""Storage backends behind one contract (:mod:`memq.store.contract`), and ``open_store`` to pick one."""

from __future__ import annotations

from pathlib import Path

from memq.store.base import (
    Candidate,
    CandidateQuery,
    CandidateRow,
    InsertGroup,
    LogEntry,
    VersionChange,
    WriteBatch,
)
from memq.store.contract import AsyncStore, Candidates, LearnerStates, Records, RetrievalLog, Store

__all__ = [
    "AsyncStore",
    "Candidate",
    "CandidateQuery",
    "CandidateRow",
    "Candidates",
    "InsertGroup",
    "LearnerStates",
    "LogEntry",
    "Records",
    "RetrievalLog",
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
