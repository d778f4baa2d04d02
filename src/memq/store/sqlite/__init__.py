"""The embedded SQLite backend."""

from memq.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
