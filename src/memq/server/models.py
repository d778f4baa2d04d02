"""Request and response bodies of the REST API.

Responses reuse :mod:`memq.types` (``MemoryRecord``, ``Retrieval``, ``HistoryEvent``, ...). Request
models forbid unknown fields and have **no tenant field**: the tenant is the API key's, and a
``scope`` object narrows it by ``user`` / ``agent`` / ``session`` only.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from memq.retrieve.pipeline import MAX_K
from memq.types import Link, MemoryRecord, Provenance

MAX_BATCH = 1000  # records per POST /v1/memories/batch (the body size limit applies as well)
MAX_LIMIT = 1000  # records per page of GET /v1/memories
MAX_IDS = 1000  # ids per purge

Name = Annotated[str, Field(min_length=1, max_length=200)]
RecordId = Annotated[str, Field(min_length=1, max_length=100)]
MAX_TEXT = 32_000  # MemoryConfig.max_text_chars (the server's Memory uses the default config)
# memq also refuses blank text and NUL characters (400 empty_text / invalid_input). A JSON Schema
# pattern could say so, but it makes schema-driven clients and fuzzers (schemathesis) crawl.
Text = Annotated[
    str, Field(min_length=1, max_length=MAX_TEXT, description="Non-blank text, no NUL characters.")
]


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def iso_only(value: object) -> object:
    """Times are ISO 8601 strings, never numbers (pydantic would read 0 or "0.5" as a Unix time)."""
    if isinstance(value, int | float) or (isinstance(value, str) and _NUMBER.fullmatch(value.strip())):
        raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00Z")
    return value


# strict=False: FastAPI validates parsed JSON in Python mode, where a strict datetime refuses strings
IsoTime = Annotated[datetime, Field(strict=False), BeforeValidator(iso_only)]


class _Request(BaseModel):
    # strict: no coercion of JSON types (false is not 0.0, 0 is not a datetime); times are ISO 8601 strings
    model_config = ConfigDict(extra="forbid", strict=True)


class ScopeIn(_Request):
    """Narrows the key's tenant. There is no ``tenant`` field: the tenant is the API key's."""

    user: Name | None = None
    agent: Name | None = None
    session: Name | None = None


class ItemIn(_Request):
    """One memory to add. memq assigns the id, version and times."""

    text: Text = Field(description="The memory's text (what gets embedded and searched).")
    kind: str = Field(default="fact", min_length=1, max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="Filterable JSON (filters: metadata.<path>)."
    )
    provenance: Provenance = Field(default_factory=Provenance)
    links: list[Link] = Field(default_factory=list, max_length=100)
    valid_from: IsoTime | None = None
    valid_to: IsoTime | None = None
    scope: ScopeIn | None = Field(default=None, description="user / agent / session of this memory.")

    def as_new(self) -> dict[str, Any]:
        """The fields ``Memory.add`` takes for this item (scope handled by the caller)."""
        return self.model_dump(exclude={"scope"}, exclude_unset=True)


class BatchAddIn(_Request):
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_BATCH)
    scope: ScopeIn | None = Field(default=None, description="Scope of items that set none themselves.")


class BatchAddOut(BaseModel):
    records: list[MemoryRecord]


class SearchIn(_Request):
    query: Text = Field(description="What to look for.")
    k: int = Field(default=10, ge=1, le=MAX_K)
    scope: ScopeIn | None = None
    filters: dict[str, Any] | None = Field(default=None, description="memq's JSON filter language.")
    kinds: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=50
    )
    as_of: IsoTime | None = Field(default=None, description="System time: what memq knew then.")
    valid_at: IsoTime | None = Field(default=None, description="World time: what held then.")
    include_invalidated: bool = False
    explain: bool = Field(default=False, description="Per-signal scores on each hit.")
    policy: Literal["similarity", "memrl", "memento_q", "memq"] | None = Field(
        default=None,
        description="A learned policy picks the k (dense candidates) instead of the hybrid recipe.",
    )
    mode: Literal["hybrid", "dense", "lexical"] | None = None
    fusion: Literal["rrf", "weighted"] | None = None
    weights: dict[Literal["dense", "lexical"], Annotated[float, Field(ge=0, allow_inf_nan=False)]] | None = (
        None
    )
    rrf_k: int | None = Field(default=None, ge=1, le=10_000)
    candidates: int | None = Field(default=None, ge=1, le=10 * MAX_K)
    recency_half_life_days: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    recency_weight: float | None = Field(default=None, ge=0, le=1)
    mmr_lambda: float | None = Field(default=None, ge=0, le=1)

    def options(self) -> dict[str, Any]:
        """The ranking options the caller set (unset ones keep the server's defaults)."""
        names = (
            "mode",
            "fusion",
            "weights",
            "rrf_k",
            "candidates",
            "recency_half_life_days",
            "recency_weight",
            "mmr_lambda",
        )
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


class UpdateIn(_Request):
    """Fields to change (at least one); the others are kept. Writes version + 1."""

    text: Text | None = None
    kind: str | None = Field(default=None, min_length=1, max_length=64)
    payload: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    provenance: Provenance | None = None
    links: list[Link] | None = Field(default=None, max_length=100)
    valid_from: IsoTime | None = None
    valid_to: IsoTime | None = None
    reason: str | None = Field(default=None, max_length=1000, description="Kept in the history.")

    def changes(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.model_fields_set if k != "reason"}


class InvalidateIn(_Request):
    at: IsoTime | None = Field(default=None, description="End of validity (default now).")
    reason: str | None = Field(default=None, max_length=1000)


class PurgeIn(_Request):
    ids: list[RecordId] = Field(min_length=1, max_length=MAX_IDS)


class PurgeOut(BaseModel):
    purged: int


class FeedbackIn(_Request):
    reward: float = Field(allow_inf_nan=False, description="The reward the retrieval earned (e.g. 0..1).")
    used: list[RecordId] | None = Field(default=None, max_length=MAX_K, description="Ids the agent used.")
    credit: Literal["shown", "used", "rank"] | None = None
    accumulate: bool = Field(default=False, description="Allow a second feedback on the same retrieval.")


class TenantStats(BaseModel):
    """Counts of the caller's tenant."""

    backend: str
    records: int
    versions: int
    deleted: int
    invalidated: int
    embedding_model: str | None
    embedding_dim: int | None
    kinds: dict[str, int]


class WhoAmI(BaseModel):
    tenant: str
    scopes: list[str]
    key_id: str | None


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    backend: str
