"""Each learner's stored state per tenant (its model as JSON, and when it was written).
Operations, see :mod:`.steps`."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

from memq.store.postgres.steps import Op, Q
from memq.types import utcnow

UPSERT_LEARNER_STATE = (
    "INSERT INTO learner_state (tenant, name, state, updated_at) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (tenant, name) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at"
)


def learner_state(tenant: str, name: str) -> Op[dict[str, Any] | None]:
    row = yield Q(
        "SELECT state FROM learner_state WHERE tenant = %s AND name = %s", (tenant, name), mode="one"
    )
    return None if row is None else row[0]  # type: ignore[no-any-return]


def learner_state_stamped(tenant: str, name: str) -> Op[tuple[dict[str, Any], datetime] | None]:
    row = yield Q(
        "SELECT state, updated_at FROM learner_state WHERE tenant = %s AND name = %s",
        (tenant, name),
        mode="one",
    )
    return None if row is None else (row[0], row[1])


def save_learner_state(
    tenant: str, name: str, state: dict[str, Any], after: datetime | None = None
) -> Op[datetime]:
    """Upsert the learner's state; returns its new ``updated_at`` (now, but later than ``after``)."""
    stamp = utcnow()
    if after is not None and stamp <= after:
        stamp = after + timedelta(microseconds=1)  # a new state never keeps the stamp of the old one
    yield Q(UPSERT_LEARNER_STATE, (tenant, name, Jsonb(state), stamp), mode="none")
    return stamp
