"""The embedded SQLite store: one database file (WAL) plus a rebuildable vector index and lexical index
beside it, and an in-memory mirror of the light rows search reads.

It is assembled from one part per concern of the store contract (:mod:`memq.store.contract`):

* :mod:`.records` and :mod:`.transfer` — records and versions, export/import, re-embedding;
* :mod:`.candidates` — dense (usearch HNSW, exact below ``exact_threshold``) and lexical (BM25 as FTS5
  ranks it, from :mod:`.lexical`) candidates, the light rows ranking needs (:mod:`.mirror`), the shown
  records;
* :mod:`.log` — the retrieval log and the feedback transaction;
* :mod:`.learners` — learner states;

on :mod:`.base` (the connection, transactions, row mapping) and :mod:`.schema` (migrations).
"""

from __future__ import annotations

from memq.store.sqlite.base import EXACT_THRESHOLD, from_us, to_us
from memq.store.sqlite.candidates import SQLiteCandidates, top_k_desc
from memq.store.sqlite.learners import SQLiteLearners
from memq.store.sqlite.log import SQLiteLog
from memq.store.sqlite.transfer import SQLiteTransfer


class SQLiteStore(SQLiteTransfer, SQLiteCandidates, SQLiteLog, SQLiteLearners):
    """memq's embedded store (see :class:`memq.store.contract.Store` for the contract)."""

    def __enter__(self) -> SQLiteStore:
        return self


__all__ = ["EXACT_THRESHOLD", "SQLiteStore", "from_us", "to_us", "top_k_desc"]
