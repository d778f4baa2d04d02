"""Storage backends behind one contract (:mod:`memq.store.contract`), and ``open_store`` to pick one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from memq._lazy import lazy_attributes

if TYPE_CHECKING:
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
# the contract's names load on first use: ``is_postgres_url`` (the CLI, the server's settings) must not
# pay for numpy and the domain models
_LAZY = {
    **dict.fromkeys(
        (
            "Candidate",
            "CandidateQuery",
            "CandidateRow",
            "InsertGroup",
            "LogEntry",
            "VersionChange",
            "WriteBatch",
        ),
        "memq.store.base",
    ),
    **dict.fromkeys(
        ("AsyncStore", "Candidates", "LearnerStates", "Records", "RetrievalLog", "Store"),
        "memq.store.contract",
    ),
}
__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


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
