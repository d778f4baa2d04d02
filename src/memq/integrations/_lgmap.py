"""How LangGraph namespaces, keys, values and filters map onto memq records (pure functions).

A store item ``(namespace, key) -> value`` is one memq record:

* ``scope``: the store's tenant, plus the namespace labels the store's ``scope_map`` names, e.g.
  ``{"user": 1}`` makes ``("memories", "alice")`` belong to ``Scope(tenant, user="alice")``;
* ``payload``: ``{"value": <the value>}`` (LangGraph filters match ``payload.value.<field>``);
* ``text``: the indexed fields' text, joined by newlines (``["$"]``: the whole value as JSON); an
  item put with ``index=False``, or with none of the fields, stores its JSON as text and is marked
  not indexed;
* ``metadata.langgraph``: ``path`` (labels joined by ``.``, which LangGraph forbids inside labels),
  ``prefixes`` (the path of every prefix of the namespace, for prefix search), ``key``, ``ref`` (the
  JSON of ``[*namespace, key]``, unique per item), ``indexed`` and ``created_at``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import InvalidNamespaceError, get_text_at_path, tokenize_path

from memq.errors import FilterError, InvalidInputError, ScopeError
from memq.types import Scope
from memq.validate import coerce_scope

META = "langgraph"  # the metadata key that holds an item's place
SCOPE_FIELDS = ("user", "agent", "session")
_OPS = {"$eq": "eq", "$ne": "ne", "$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")  # the JSON keys memq's filter language addresses


def check_scope_map(scope_map: Mapping[str, int] | None) -> dict[str, int]:
    """``{"user": 1}``: namespace label 1 is the memq user. Fields: user, agent, session."""
    out: dict[str, int] = {}
    for name, pos in (scope_map or {}).items():
        if name not in SCOPE_FIELDS:
            raise ScopeError(f"scope_map names {name!r}; it maps namespace positions to {list(SCOPE_FIELDS)}")
        if not isinstance(pos, int) or isinstance(pos, bool) or pos < 0:
            raise ScopeError(f"scope_map[{name!r}] must be a namespace position (an int >= 0), got {pos!r}")
        out[name] = pos
    if len(set(out.values())) != len(out):
        raise ScopeError(f"scope_map maps two scope fields to one namespace position: {out}")
    return out


def scope_for(tenant: str, scope_map: Mapping[str, int], namespace: Sequence[str]) -> Scope:
    """The memq scope of a namespace (or of a search prefix: only the positions it covers)."""
    fields = {name: namespace[pos] for name, pos in scope_map.items() if pos < len(namespace)}
    return coerce_scope({"tenant": tenant, **fields})


def path_of(namespace: Sequence[str]) -> str:
    return ".".join(namespace)


def ref_of(namespace: Sequence[str], key: str) -> str:
    return json.dumps([*namespace, key], ensure_ascii=False)


def check_namespace(namespace: Any, *, for_write: bool) -> tuple[str, ...]:
    """LangGraph's rules (labels: non-empty strings without ``.``), and a tuple/list shape."""
    if not isinstance(namespace, tuple | list):
        raise InvalidNamespaceError(
            f"a namespace is a tuple of strings such as ('memories', 'alice'), not {type(namespace).__name__}"
        )
    ns = tuple(namespace)
    for label in ns:
        if not isinstance(label, str) or not label or "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"invalid namespace label {label!r} in {ns}: labels are non-empty strings without '.' or NUL"
            )
    if for_write and not ns:
        raise InvalidNamespaceError("a namespace to write to cannot be empty")
    if for_write and ns[0] == "langgraph":
        raise InvalidNamespaceError(f'the root label of a namespace cannot be "langgraph": {ns}')
    return ns


def placement(namespace: Sequence[str], key: str, *, indexed: bool, created_at: str) -> dict[str, Any]:
    """The ``metadata.langgraph`` block of an item."""
    return {
        "path": path_of(namespace),
        "prefixes": [path_of(namespace[: i + 1]) for i in range(len(namespace))],
        "key": key,
        "ref": ref_of(namespace, key),
        "indexed": indexed,
        "created_at": created_at,
    }


def prefix_filter(prefix: Sequence[str]) -> dict[str, Any]:
    """Records of this store under ``prefix`` (every item of the store for an empty prefix)."""
    if not prefix:
        return {f"metadata.{META}.ref": {"exists": True}}
    return {f"metadata.{META}.prefixes": {"contains": path_of(prefix)}}


def value_filter(spec: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """A LangGraph ``filter`` as memq filter conditions on ``payload.value``.

    Supported: equality on a field (nested dicts name nested fields) and ``$eq`` ``$ne`` ``$gt``
    ``$gte`` ``$lt`` ``$lte`` with a scalar. Refused with a FilterError: list values (memq filters
    compare scalars) and field names outside ``[A-Za-z0-9_-]``.
    """
    if spec is None:
        return []
    if not isinstance(spec, Mapping):
        raise FilterError(f"a LangGraph filter is a dict of field -> value, not {type(spec).__name__}")
    return _conditions(spec, ("payload", "value"))


def _conditions(spec: Mapping[str, Any], path: tuple[str, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, want in spec.items():
        if not isinstance(name, str) or not _KEY.match(name):
            raise FilterError(
                f"filter field {name!r}: memq filters name fields with letters, digits, '_' and '-' (at most 64)"
            )
        field = (*path, name)
        if isinstance(want, Mapping):
            ops = [k for k in want if isinstance(k, str) and k.startswith("$")]
            if not want:
                raise FilterError(f"filter field {name!r} has an empty object")
            if ops and len(ops) != len(want):
                raise FilterError(f"filter field {name!r} mixes operators and nested fields")
            if not ops:
                out.extend(_conditions(want, field))
                continue
            for op, value in want.items():
                if op not in _OPS:
                    raise FilterError(f"unknown filter operator {op!r}; LangGraph filters use {sorted(_OPS)}")
                out.append({".".join(field): {_OPS[op]: _scalar(name, value)}})
        else:
            out.append({".".join(field): {"eq": _scalar(name, want)}})
    return out


def _scalar(name: str, value: Any) -> Any:
    if isinstance(value, list | tuple | Mapping):
        raise FilterError(
            f"filter field {name!r}: memq filters compare scalar values (string, number, boolean, null), "
            f"not {type(value).__name__}"
        )
    return value


def index_fields(index: Any) -> list[str]:
    """The fields an ``index`` config embeds. memq embeds with the Memory's own embedder, so an
    ``embed`` or ``dims`` entry is refused rather than silently ignored."""
    if index is None:
        return ["$"]
    if not isinstance(index, Mapping):
        raise InvalidInputError(
            f"index must be a dict such as {{'fields': ['text']}}, not {type(index).__name__}"
        )
    unknown = set(index) - {"fields"}
    if unknown:
        raise InvalidInputError(
            f"index keys {sorted(unknown)} are not used by MemqStore: memq embeds with the Memory's "
            "embedder (Memory(embedder=...)); the index config only says which fields to embed"
        )
    fields = index.get("fields") or ["$"]
    if isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields):
        raise InvalidInputError(f"index['fields'] must be a list of field paths, got {fields!r}")
    return list(fields)


def item_text(value: Mapping[str, Any], fields: Sequence[str] | None) -> tuple[str, bool]:
    """(text to store, indexed?) for a value: the text at ``fields``; the value's JSON when
    ``fields`` is None (``index=False``) or none of them holds text."""
    texts: list[str] = []
    for field in fields or ():
        texts.extend(get_text_at_path(value, field if field == "$" else tokenize_path(field)))
    texts = [t for t in texts if t.strip()]
    if texts:
        return "\n".join(texts), True
    return json.dumps(value, sort_keys=True, ensure_ascii=False), False


def matches(match_type: str, pattern: Sequence[str], namespace: Sequence[str]) -> bool:
    """A ListNamespaces match condition: ``prefix`` or ``suffix``, ``"*"`` matching any one label."""
    if match_type not in ("prefix", "suffix"):
        raise InvalidInputError(f"unknown namespace match type {match_type!r}; use 'prefix' or 'suffix'")
    if len(namespace) < len(pattern):
        return False
    if match_type == "prefix":
        pairs = zip(namespace, pattern, strict=False)
    else:
        pairs = zip(reversed(namespace), reversed(pattern), strict=False)
    return all(want in ("*", have) for have, want in pairs)
