"""The SQLite store's learner states: one row per (tenant, learner), saved with a version check."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from memq.errors import ConflictError
from memq.store.base import StoredLearnerState
from memq.store.sqlite.base import SQLiteBase, from_us, to_us
from memq.types import utcnow


class SQLiteLearners(SQLiteBase):
    """Learner states (:class:`memq.store.contract.LearnerStates`)."""

    def learner_state(self, tenant: str, name: str) -> StoredLearnerState | None:
        rows = self._read(
            "SELECT state, version, feedbacks, updated_at FROM learner_state WHERE tenant = ? AND name = ?",
            (tenant, name),
        )
        if not rows:
            return None
        state, version, feedbacks, updated = rows[0]
        return StoredLearnerState(json.loads(state), version, feedbacks, from_us(updated))  # type: ignore[arg-type]

    def save_learner_state(
        self, tenant: str, name: str, state: dict[str, Any], *, expected_version: int | None
    ) -> int:
        text = json.dumps(state)

        def tx(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT version FROM learner_state WHERE tenant = ? AND name = ?", (tenant, name)
            ).fetchone()
            stored = 0 if row is None else row[0]
            if expected_version is not None and stored != expected_version:
                raise ConflictError(
                    f"the {name!r} learner of tenant {tenant!r} was saved by another writer "
                    f"(version {stored}, expected {expected_version}); reload it"
                )
            conn.execute(
                "INSERT INTO learner_state (tenant, name, state, updated_at, version, feedbacks) VALUES (?,?,?,?,?,0) "
                "ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, "
                "updated_at = excluded.updated_at, version = excluded.version",
                (tenant, name, text, to_us(utcnow()), stored + 1),
            )
            return stored + 1

        return self._write(tx)
