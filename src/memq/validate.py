"""Input checks and record building shared by :class:`Memory` and :class:`AsyncMemory`.

Everything here is pure: no I/O, no embedding. Bad input raises a typed :mod:`memq.errors` error
before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from memq.config import MemoryConfig
from memq.errors import EmptyTextError, InvalidInputError, ScopeError, TextTooLongError
from memq.ids import new_id
from memq.types import JSON, Link, MemoryRecord, NewRecord, Provenance, Scope, as_utc, utcnow

ScopeLike = Scope | str | Mapping[str, Any]


def coerce_scope(scope: ScopeLike | None, default: Scope | None = None) -> Scope:
    """A Scope from a Scope, a tenant name or a dict; the memory's default scope when None."""
    if scope is None:
        if default is None:
            raise ScopeError(
                "a scope with a tenant is required: pass scope='my-tenant' or "
                "scope=Scope(tenant=..., user=...), or set Memory(..., scope=...)"
            )
        return default
    if isinstance(scope, Scope):
        return scope
    if isinstance(scope, str):
        if not scope.strip():
            raise ScopeError("the tenant must be a non-empty string")
        return Scope(tenant=scope)
    if isinstance(scope, Mapping):
        if not scope.get("tenant"):
            raise ScopeError(f"the scope {dict(scope)!r} has no tenant; every scope needs one")
        try:
            return Scope.model_validate(dict(scope))
        except ValidationError as exc:
            raise ScopeError(f"invalid scope: {_first_error(exc)}") from exc
    raise ScopeError(f"scope must be a Scope, a tenant string or a dict, not {type(scope).__name__}")


def check_text(text: Any, config: MemoryConfig) -> str:
    if not isinstance(text, str):
        raise InvalidInputError(f"text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise EmptyTextError("text is empty; a memory needs some text to store and search")
    if len(text) > config.max_text_chars:
        raise TextTooLongError(
            f"text has {len(text):,} characters, over the limit of {config.max_text_chars:,}; "
            "split it, or raise MemoryConfig.max_text_chars"
        )
    if "\x00" in text:
        raise InvalidInputError("text contains a NUL character (\\x00), which memq does not store")
    return text


def check_json(value: Any, name: str, config: MemoryConfig) -> JSON:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{name} must be a JSON object (dict), not {type(value).__name__}")
    if not value:
        return {}
    try:
        encoded = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} is not JSON-serialisable: {exc}") from exc
    if "\\u0000" in encoded:
        raise InvalidInputError(f"{name} contains a NUL character (\\u0000), which memq does not store")
    if len(encoded.encode()) > config.max_json_bytes:
        raise InvalidInputError(
            f"{name} is {len(encoded.encode()):,} bytes as JSON, over the limit of {config.max_json_bytes:,}"
        )
    return json.loads(encoded)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    return f"{where}: {err.get('msg')}" if where else str(err.get("msg"))


def to_new_records(items: Any) -> tuple[list[NewRecord], bool]:
    """Normalise what ``add`` accepts (text, dict, NewRecord, or a list of them). Returns (items, single)."""
    single = isinstance(items, str | Mapping | NewRecord)
    seq: Sequence[Any] = [items] if single else items
    if not isinstance(seq, Sequence) or isinstance(seq, bytes):
        raise InvalidInputError("add() takes a text, a dict, a NewRecord, or a list of them")
    out: list[NewRecord] = []
    for i, item in enumerate(seq):
        try:
            if isinstance(item, NewRecord):
                out.append(item)
            elif isinstance(item, str):
                out.append(NewRecord(text=item))
            elif isinstance(item, Mapping):
                out.append(NewRecord.model_validate(dict(item)))
            else:
                raise InvalidInputError(
                    f"item {i} is a {type(item).__name__}; expected text, dict or NewRecord"
                )
        except ValidationError as exc:
            raise InvalidInputError(f"item {i}: {_first_error(exc)}") from exc
    return out, single


def build_records(
    items: Sequence[NewRecord],
    *,
    scope: Scope,
    config: MemoryConfig,
    defaults: Mapping[str, Any],
    now: datetime | None = None,
) -> list[MemoryRecord]:
    """Validate and turn new items into version-1 records (without embeddings yet).

    ``defaults`` holds the keyword arguments given to ``add`` (kind, metadata, ...); a field set on
    the item itself wins over them.
    """
    if not items:
        raise InvalidInputError("add() got an empty list; nothing to store")
    if len(items) > config.max_batch:
        raise InvalidInputError(
            f"add() got {len(items):,} records, over the batch limit of {config.max_batch:,}; split the batch"
        )
    now = now or utcnow()
    records: list[MemoryRecord] = []
    seen: set[str] = set()
    for i, item in enumerate(items):

        def pick(name: str, item: NewRecord = item) -> Any:
            return (
                getattr(item, name)
                if name in item.model_fields_set
                else defaults.get(name, getattr(item, name))
            )

        try:
            text = check_text(item.text, config)
            item_scope = item.scope or scope
            if item_scope.tenant != scope.tenant:
                raise ScopeError(f"item {i} belongs to tenant {item_scope.tenant!r}, not {scope.tenant!r}")
            valid_from, valid_to = pick("valid_from"), pick("valid_to")
            valid_from = None if valid_from is None else as_utc(valid_from)
            valid_to = None if valid_to is None else as_utc(valid_to)
            if valid_from and valid_to and valid_to <= valid_from:
                raise InvalidInputError(f"item {i}: valid_to must be after valid_from")
            rid = item.id or new_id()
            if rid in seen:
                raise InvalidInputError(f"item {i}: id {rid} appears twice in one batch")
            seen.add(rid)
            provenance = pick("provenance")
            links = pick("links")
            record = MemoryRecord(
                id=rid,
                scope=item_scope,
                kind=pick("kind"),
                text=text,
                payload=check_json(pick("payload"), "payload", config),
                metadata=check_json(pick("metadata"), "metadata", config),
                provenance=Provenance.model_validate(provenance)
                if isinstance(provenance, Mapping)
                else provenance,
                links=[Link.model_validate(x) if isinstance(x, Mapping) else x for x in links],
                valid_from=valid_from,
                valid_to=valid_to,
                recorded_at=now,
            )
        except ValidationError as exc:
            raise InvalidInputError(f"item {i}: {_first_error(exc)}") from exc
        except InvalidInputError as exc:
            if len(items) > 1 and not str(exc).startswith("item "):
                raise type(exc)(f"item {i}: {exc}") from exc
            raise
        records.append(record)
    return records


UPDATABLE = ("text", "kind", "payload", "metadata", "valid_from", "valid_to", "links", "provenance")


def next_version(
    current: MemoryRecord, changes: Mapping[str, Any], config: MemoryConfig, now: datetime | None = None
) -> MemoryRecord:
    """The next version of ``current`` with ``changes`` applied (fields left out are kept)."""
    unknown = set(changes) - set(UPDATABLE)
    if unknown:
        raise InvalidInputError(f"cannot update {sorted(unknown)}; updatable fields are {list(UPDATABLE)}")
    data = current.model_dump()
    data.update(
        version=current.version + 1,
        recorded_at=now or utcnow(),
        expired_at=None,
        deleted=False,
    )
    if "text" in changes:
        data["text"] = check_text(changes["text"], config)
    for name in ("payload", "metadata"):
        if name in changes:
            data[name] = check_json(changes[name], name, config)
    for name in ("kind", "valid_from", "valid_to", "links", "provenance"):
        if name in changes:
            data[name] = changes[name]
    try:
        new = MemoryRecord.model_validate(data)
    except ValidationError as exc:
        raise InvalidInputError(f"invalid update: {_first_error(exc)}") from exc
    if new.valid_from and new.valid_to and new.valid_to <= new.valid_from:
        raise InvalidInputError("valid_to must be after valid_from")
    return new
