"""The filter language for ``search`` and ``list``, and its compilation to SQL.

A filter is a JSON object. Keys are fields, values are a literal (equality) or an operator object;
``and`` / ``or`` take a list of filters and ``not`` takes one::

    {"kind": "fact"}
    {"metadata.topic": {"in": ["travel", "food"]}}
    {"metadata.year": {"gte": 2020, "lt": 2024}}
    {"metadata.tags": {"contains": "urgent"}}      # array membership, or substring of a string
    {"or": [{"user": "alice"}, {"not": {"metadata.private": true}}]}

Fields: ``kind``, ``user``, ``agent``, ``session``, ``source``, ``valid_from``, ``valid_to``,
``recorded_at``, and any ``metadata.<path>`` or ``payload.<path>`` (dot-separated keys).
Operators: ``eq``, ``ne``, ``in``, ``nin``, ``gt``, ``gte``, ``lt``, ``lte``, ``contains``, ``exists``.
Several keys in one object are combined with AND. Anything else raises :class:`FilterError`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from memq.errors import FilterError
from memq.types import as_utc

Dialect = Literal["sqlite", "postgres"]

COLUMN_FIELDS = {"kind", "user", "agent", "session", "source"}
TIME_FIELDS = {"valid_from", "valid_to", "recorded_at"}
JSON_ROOTS = {"metadata", "payload"}
OPERATORS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "contains", "exists"}
_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_DEPTH = 16
MAX_IN = 1000


@dataclass(frozen=True)
class Cond:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    item: Node


Node = Cond | And | Or | Not


def parse_filter(spec: dict[str, Any] | None) -> Node | None:
    """Validate a filter object and turn it into a tree. ``None`` or ``{}`` means no filter."""
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise FilterError(f"a filter must be a JSON object, got {type(spec).__name__}")
    if not spec:
        return None
    return _parse(spec, 0)


def _parse(spec: Any, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise FilterError(f"filter nested deeper than {MAX_DEPTH} levels")
    if not isinstance(spec, dict) or not spec:
        raise FilterError(f"expected a non-empty filter object, got {spec!r}")
    items: list[Node] = []
    for key, value in spec.items():
        if key in ("and", "or"):
            if not isinstance(value, list) or not value:
                raise FilterError(f"'{key}' takes a non-empty list of filters")
            sub = tuple(_parse(v, depth + 1) for v in value)
            items.append(And(sub) if key == "and" else Or(sub))
        elif key == "not":
            items.append(Not(_parse(value, depth + 1)))
        else:
            _check_field(key)
            items.extend(_parse_conditions(key, value))
    return items[0] if len(items) == 1 else And(tuple(items))


def _check_field(field: str) -> None:
    if field in COLUMN_FIELDS or field in TIME_FIELDS:
        return
    root, _, path = field.partition(".")
    if root in JSON_ROOTS and path and all(_KEY.match(p) for p in path.split(".")):
        return
    raise FilterError(
        f"unknown filter field {field!r}; use one of {sorted(COLUMN_FIELDS | TIME_FIELDS)} "
        "or 'metadata.<key>' / 'payload.<key>' (letters, digits, '_' and '-' in keys)"
    )


def _parse_conditions(field: str, value: Any) -> list[Cond]:
    if not isinstance(value, dict):
        return [_cond(field, "eq", value)]
    if not value:
        raise FilterError(f"empty operator object for {field!r}")
    return [_cond(field, op, v) for op, v in value.items()]


def _cond(field: str, op: str, value: Any) -> Cond:
    if op not in OPERATORS:
        raise FilterError(f"unknown operator {op!r} on {field!r}; use one of {sorted(OPERATORS)}")
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise FilterError(f"'{op}' on {field!r} takes a non-empty list")
        if len(value) > MAX_IN:
            raise FilterError(f"'{op}' on {field!r} takes at most {MAX_IN} values")
        values = [_scalar(field, op, v) for v in value]
        return Cond(field, op, tuple(values))
    if op == "exists":
        if not isinstance(value, bool):
            raise FilterError(f"'exists' on {field!r} takes true or false")
        return Cond(field, op, value)
    scalar = _scalar(field, op, value)
    if scalar is None and op != "eq" and op != "ne":
        raise FilterError(f"'{op}' on {field!r} needs a value, not null")
    if op in ("gt", "gte", "lt", "lte") and isinstance(scalar, bool):
        raise FilterError(f"'{op}' on {field!r} needs a number, string or time, not a boolean")
    return Cond(field, op, scalar)


def _scalar(field: str, op: str, value: Any) -> Any:
    if field in TIME_FIELDS:
        if isinstance(value, datetime):
            return as_utc(value)
        if isinstance(value, str):
            try:
                return as_utc(datetime.fromisoformat(value))
            except ValueError as exc:
                raise FilterError(f"{field!r} needs an ISO 8601 time, got {value!r}") from exc
        if value is None and op in ("eq", "ne"):
            return None
        raise FilterError(f"{field!r} needs an ISO 8601 time, got {value!r}")
    if value is None or isinstance(value, bool | int | float | str):
        if isinstance(value, float) and value != value:  # NaN never compares
            raise FilterError(f"NaN is not a valid filter value for {field!r}")
        return value
    raise FilterError(f"filter values must be strings, numbers, booleans or null; {field!r} got {value!r}")


# ---------------------------------------------------------------------------------------------
# SQL compilation. Stores pass the column names they use; values always travel as parameters.


@dataclass(frozen=True)
class SqlTarget:
    dialect: Dialect
    columns: dict[str, str]  # filter field -> SQL column expression
    time_param: Any  # callable datetime -> parameter value in the store's time representation


def compile_filter(node: Node | None, target: SqlTarget) -> tuple[str, list[Any]]:
    """Compile a parsed filter to a SQL boolean expression and its parameters."""
    if node is None:
        return "1=1" if target.dialect == "sqlite" else "TRUE", []
    params: list[Any] = []
    sql = _compile(node, target, params)
    return sql, params


def _ph(target: SqlTarget) -> str:
    return "?" if target.dialect == "sqlite" else "%s"


def _compile(node: Node, t: SqlTarget, params: list[Any]) -> str:
    if isinstance(node, And):
        return "(" + " AND ".join(_compile(n, t, params) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(_compile(n, t, params) for n in node.items) + ")"
    if isinstance(node, Not):
        return "(NOT COALESCE(" + _compile(node.item, t, params) + ", FALSE))"
    if node.field in COLUMN_FIELDS or node.field in TIME_FIELDS:
        return _compile_column(node, t, params)
    return _compile_json(node, t, params)


_CMP = {"eq": "=", "ne": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _null_test(c: Cond, present: str, value: str) -> str | None:
    """SQL for ``exists`` (is ``present`` not null) and for ``eq``/``ne`` null (is ``value`` null), the
    same for a column and a SQLite JSON path; None for any other condition."""
    if c.op == "exists":
        return f"({present} IS {'NOT ' if c.value else ''}NULL)"
    if c.value is None:
        return f"({value} IS {'NOT ' if c.op == 'ne' else ''}NULL)"
    return None


def _compile_column(c: Cond, t: SqlTarget, params: list[Any]) -> str:
    col = t.columns[c.field]
    ph = _ph(t)
    conv = t.time_param if c.field in TIME_FIELDS else (lambda v: v)
    if (null := _null_test(c, col, col)) is not None:
        return null
    if c.op in _CMP:
        params.append(conv(c.value))
        if c.op == "ne":
            return f"({col} IS NULL OR {col} <> {ph})"
        return f"({col} {_CMP[c.op]} {ph})"
    if c.op in ("in", "nin"):
        params.extend(conv(v) for v in c.value)
        inner = f"{col} IN ({', '.join(ph for _ in c.value)})"
        return f"({inner})" if c.op == "in" else f"({col} IS NULL OR NOT {inner})"
    if c.op == "contains":
        if not isinstance(c.value, str):
            raise FilterError(f"'contains' on {c.field!r} takes a string")
        params.append(c.value)
        if t.dialect == "sqlite":
            return f"(instr({col}, {ph}) > 0)"
        return f"(strpos({col}, {ph}) > 0)"
    raise FilterError(f"operator {c.op!r} is not supported on {c.field!r}")


def _compile_json(c: Cond, t: SqlTarget, params: list[Any]) -> str:
    root, _, path = c.field.partition(".")
    col = t.columns[root]
    keys = path.split(".")
    ph = _ph(t)
    if t.dialect == "sqlite":
        jpath = "$" + "".join(f'."{k}"' for k in keys)
        val = f"json_extract({col}, '{jpath}')"
        typ = f"json_type({col}, '{jpath}')"
        if (null := _null_test(c, typ, val)) is not None:  # JSON null and a missing key both count as null
            return null
        if c.op in _CMP:
            params.append(_sqlite_json_scalar(c.value))
            op = "=" if c.op == "ne" else _CMP[c.op]
            expr = f"({val} {op} {ph} AND {typ} IN ({_sqlite_types(c.value)}))"
            return f"(NOT COALESCE({expr}, FALSE))" if c.op == "ne" else expr
        if c.op in ("in", "nin"):
            parts = []
            for v in c.value:
                params.append(_sqlite_json_scalar(v))
                parts.append(f"({val} = {ph} AND {typ} IN ({_sqlite_types(v)}))")
            inner = "(" + " OR ".join(parts) + ")"
            return inner if c.op == "in" else f"(NOT COALESCE({inner}, FALSE))"
        if c.op == "contains":
            params.append(_sqlite_json_scalar(c.value))
            params.append(c.value if isinstance(c.value, str) else None)
            return (
                f"(({typ} = 'array' AND EXISTS (SELECT 1 FROM json_each({col}, '{jpath}') "
                f"WHERE value = {ph})) OR ({typ} = 'text' AND instr({val}, {ph}) > 0))"
            )
    else:
        arr = "'{" + ",".join(keys) + "}'"
        val = f"({col} #> {arr})"
        if c.op == "exists":
            return f"({val} IS {'NOT ' if c.value else ''}NULL)"
        if c.value is None:
            if c.op == "ne":
                return f"({val} IS NOT NULL AND {val} <> 'null'::jsonb)"
            return f"({val} IS NULL OR {val} = 'null'::jsonb)"
        if c.op in _CMP:
            params.append(json.dumps(_pg_json_scalar(c.value)))
            if c.op == "ne":
                return f"({val} IS NULL OR {val} <> {ph}::jsonb)"
            same_type = f"jsonb_typeof({val}) = jsonb_typeof({ph}::jsonb)"
            params.append(json.dumps(_pg_json_scalar(c.value)))
            return f"({val} {_CMP[c.op]} {ph}::jsonb AND {same_type})"
        if c.op in ("in", "nin"):
            params.append([json.dumps(_pg_json_scalar(v)) for v in c.value])
            inner = f"({val} = ANY({ph}::jsonb[]))"
            return inner if c.op == "in" else f"(NOT COALESCE({inner}, FALSE))"
        if c.op == "contains":
            params.append(json.dumps([_pg_json_scalar(c.value)]))
            params.append(c.value if isinstance(c.value, str) else None)
            return (
                f"((jsonb_typeof({val}) = 'array' AND {val} @> {ph}::jsonb) OR "
                f"(jsonb_typeof({val}) = 'string' AND strpos({col} #>> {arr}, {ph}) > 0))"
            )
    raise FilterError(f"operator {c.op!r} is not supported on {c.field!r}")


def _sqlite_json_scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return 1 if value else 0
    return value


def _sqlite_types(value: Any) -> str:
    """The json_type() names a value may compare equal to (keeps 1 from matching true)."""
    if isinstance(value, bool):
        return "'true','false'"
    if isinstance(value, int | float):
        return "'integer','real'"
    return "'text'"


def _pg_json_scalar(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value
