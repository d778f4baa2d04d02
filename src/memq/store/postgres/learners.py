"""Each learner's stored state per tenant: its model (JSON), a version every save increments, and how
many feedbacks it has counted. Operations, see :mod:`.steps`."""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from memq.errors import ConflictError
from memq.store.base import StoredLearnerState
from memq.store.postgres.rows import utc
from memq.store.postgres.steps import Op, Q
from memq.types import utcnow


def learner_state(tenant: str, name: str) -> Op[StoredLearnerState | None]:
    row = yield Q(
        "SELECT state, version, feedbacks, updated_at FROM learner_state WHERE tenant = %s AND name = %s",
        (tenant, name),
        mode="one",
    )
    if row is None:
        return None
    return StoredLearnerState(row[0], int(row[1]), int(row[2]), utc(row[3]))  # type: ignore[arg-type]


def save_learner_state(
    tenant: str, name: str, state: dict[str, Any], expected_version: int | None
) -> Op[int]:
    """Write the state if the stored version is still ``expected_version`` (the row locked while it is
    checked); returns the new version, or ConflictError when another writer saved first."""
    row = yield Q(
        "SELECT version FROM learner_state WHERE tenant = %s AND name = %s FOR UPDATE",
        (tenant, name),
        mode="one",
    )
    stored = 0 if row is None else int(row[0])
    if expected_version is not None and stored != expected_version:
        raise ConflictError(
            f"the {name!r} learner of tenant {tenant!r} was saved by another writer "
            f"(version {stored}, expected {expected_version}); reload it"
        )
    yield Q(
        "INSERT INTO learner_state (tenant, name, state, updated_at, version, feedbacks) VALUES (%s, %s, %s, %s, %s, 0) "
        "ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, "
        "version = excluded.version",
        (tenant, name, Jsonb(state), utcnow(), stored + 1),
        mode="none",
    )
    return stored + 1
