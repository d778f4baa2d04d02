"""mem0's shapes ↔ memq's records (pure functions; :mod:`memq.compat.mem0` does the I/O).

* ``user_id`` / ``agent_id`` / ``run_id`` are the memq scope's ``user`` / ``agent`` / ``session``;
* a memory's mem0 ``metadata`` is the record's memq ``metadata`` (filterable), with the per-message
  fields mem0 promotes to the top of a result (``role``, ``actor_id``, ``expiration_date``) kept there
  too and lifted out when a result is built;
* ``payload.mem0_created_at`` keeps the creation time (a memq version's ``recorded_at`` is the
  update time).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from memq.errors import FilterError, InvalidInputError, NotFoundError, ScopeError
from memq.types import HistoryEvent, MemoryRecord, Scope

ENTITY = {"user_id": "user", "agent_id": "agent", "run_id": "session"}
IDENTITY_KEYS = {*ENTITY, "actor_id"}  # never taken from caller metadata (mem0 drops them too)
PROMOTED = ("actor_id", "role", "attributed_to", "expiration_date")
CREATED = "mem0_created_at"
_OPS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", "contains"}
_EVENTS = {"add": "ADD", "import": "ADD", "update": "UPDATE", "delete": "DELETE"}


class Mem0NotFoundError(NotFoundError, ValueError):
    """A memory id that is not there. mem0 raises ``ValueError`` for it, memq ``NotFoundError``: this
    is both, so ``except ValueError`` and ``except memq.NotFoundError`` each catch it."""


def entity_id(value: Any, name: str) -> str | None:
    """mem0's id rules: ``None`` stays None; others become strings, trimmed, non-empty, no whitespace."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        raise ScopeError(f"Invalid {name}: cannot be empty or whitespace-only. Provide a valid identifier.")
    if any(c.isspace() for c in text):
        raise ScopeError(
            f"Invalid {name}: cannot contain whitespace. Provide a valid identifier without spaces."
        )
    return text


def scope_of(tenant: str, ids: Mapping[str, Any], *, required: str | None) -> Scope:
    """The memq scope of mem0 entity ids; at least one id is required (as in mem0) unless
    ``required`` is None (the filters name an entity in another form, e.g. ``"*"``)."""
    fields = {ENTITY[k]: entity_id(ids.get(k), k) for k in ENTITY}
    fields = {k: v for k, v in fields.items() if v is not None}
    if not fields and required is not None:
        raise ScopeError(f"At least one of 'user_id', 'agent_id', or 'run_id' must be provided ({required}).")
    return Scope(tenant=tenant, **fields)


def clean_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidInputError(f"metadata must be a dict, not {type(metadata).__name__}")
    return {k: v for k, v in metadata.items() if k not in IDENTITY_KEYS}


def expiry(value: Any) -> tuple[str | None, datetime | None]:
    """mem0's ``expiration_date`` (YYYY-MM-DD, a date or datetime) → (the date string, memq
    ``valid_to``): a memory expires after that day, so ``valid_to`` is the next midnight UTC."""
    if value is None:
        return None, None
    if isinstance(value, datetime):
        day = value.date()
    elif isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInputError("expiration_date must be a valid date in YYYY-MM-DD format.") from exc
    else:
        raise InvalidInputError("expiration_date must be a date string in YYYY-MM-DD format.")
    return day.isoformat(), datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)


def translate_filters(filters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """mem0 search filters → (entity ids for the scope, a memq filter or None).

    Top-level ``user_id`` / ``agent_id`` / ``run_id`` with a plain value narrow the scope; the rest
    are metadata conditions: a value (equality), ``"*"`` (the key exists), an operator object
    (``eq ne gt gte lt lte in nin contains``), or ``AND`` / ``OR`` / ``NOT`` lists.
    """
    if not isinstance(filters, Mapping):
        raise FilterError(f"filters must be a dict, not {type(filters).__name__}")
    ids: dict[str, Any] = {}
    conds: list[dict[str, Any]] = []
    for key, value in filters.items():
        if key in ENTITY and not isinstance(value, Mapping) and value != "*":
            ids[key] = value
        else:
            conds.append(_condition(key, value))
    if not conds:
        return ids, None
    return ids, conds[0] if len(conds) == 1 else {"and": conds}


def has_entity(filters: Mapping[str, Any]) -> bool:
    """mem0's rule for search / get_all: the filters name at least one of the entity ids."""
    return any(key in filters for key in ENTITY)


def _condition(key: str, value: Any) -> dict[str, Any]:
    if key in ("AND", "OR", "NOT"):
        if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
            raise FilterError(f"{key} takes a non-empty list of filter objects")
        parts = [_condition(k, v) for item in value for k, v in item.items()]
        if key == "AND":
            return {"and": parts}
        return {"or": parts} if key == "OR" else {"not": {"or": parts}}
    field = f"{ENTITY[key]}" if key in ENTITY else f"metadata.{key}"
    if value == "*":
        return {field: {"exists": True}} if key not in ENTITY else {field: {"ne": None}}
    if isinstance(value, Mapping):
        unknown = set(value) - _OPS
        if unknown:
            hint = " (icontains: memq's 'contains' is case-sensitive)" if "icontains" in unknown else ""
            raise FilterError(f"unsupported filter operator(s) {sorted(unknown)} on {key!r}{hint}")
        return {field: dict(value)}
    return {field: value}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def created_at(record: MemoryRecord) -> str:
    return str(record.payload.get(CREATED) or _iso(record.recorded_at))


def memory_item(
    record: MemoryRecord, *, score: float | None = None, with_score: bool = True
) -> dict[str, Any]:
    """A memq record as mem0 returns a memory (``get``, ``get_all``, ``search``)."""
    meta = dict(record.metadata)
    promoted = {k: meta.pop(k) for k in PROMOTED if k in meta}
    created = created_at(record)
    out: dict[str, Any] = {
        "id": record.id,
        "memory": record.text,
        "hash": hashlib.md5(record.text.encode()).hexdigest(),
        "metadata": None,
        "score": score,
        "created_at": created,
        "updated_at": created if record.version == 1 else _iso(record.recorded_at),
    }
    if not with_score:
        del out["score"]
    for name, field in ENTITY.items():
        value = getattr(record.scope, field)
        if value is not None:
            out[name] = value
    out.update(promoted)
    if meta:
        out["metadata"] = meta
    return out


def history_rows(events: list[HistoryEvent]) -> list[dict[str, Any]]:
    """memq history events as mem0's history rows (oldest first). mem0 has ADD / UPDATE / DELETE;
    memq's other operations keep their own names (INVALIDATE, ARCHIVE, RESTORE)."""
    rows: list[dict[str, Any]] = []
    previous: str | None = None
    created: str | None = None
    for event in events:
        record = event.record
        text = record.text if record is not None else previous
        if record is not None and created is None:
            created = created_at(record)
        deleted = event.op.value == "delete"
        meta = record.metadata if record is not None else {}
        rows.append(
            {
                "id": str(
                    uuid.uuid5(uuid.NAMESPACE_URL, f"memq:{event.record_id}:{event.version}:{event.op.value}")
                ),
                "memory_id": event.record_id,
                "old_memory": previous,
                "new_memory": None if deleted else text,
                "event": _EVENTS.get(event.op.value, event.op.value.upper()),
                "created_at": created,
                "updated_at": _iso(event.at),
                "is_deleted": deleted,
                "actor_id": meta.get("actor_id"),
                "role": meta.get("role"),
            }
        )
        previous = None if deleted else text
    return rows
