"""The manager protocol: a write policy turns what ``add`` got into a :class:`Plan` of writes.

A manager only *reads* (through :class:`ManageContext`) and asks its LLM; it never writes. The facade
(:meth:`memq.Memory.add` with ``manager=``) runs the manager first — every LLM call and every
embedding happens before anything is written — and then applies the plan. A manager whose LLM call
fails raises :class:`memq.errors.LLMError` from ``plan`` and so writes nothing.

Every write of a plan carries a concise reason; the facade writes it to the record's history with
``actor="manager:<name>"`` (the operation log). Decisions that change no text (NOOP, a merge into an
existing record) are written as a new version of the existing record with the reason, and are also
returned in :class:`ManageResult.decisions`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memq.config import MemoryConfig
from memq.errors import InvalidInputError
from memq.llm.base import LLM, CallStats
from memq.store.base import Candidate
from memq.types import HistoryOp, Link, MemoryRecord, NewRecord, Provenance, Scope
from memq.validate import build_records

REASON_CHARS = 300  # longest reason kept in the history


def short(text: str, limit: int = 80) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


class Decision(BaseModel):
    """One decision a manager made, written or not: ADD, UPDATE, INVALIDATE, MERGE, NOOP, LINK, ..."""

    model_config = ConfigDict(extra="forbid")

    op: str
    record_id: str | None = None  # the record it wrote or concerned
    text: str | None = None
    reason: str


class ManageResult(BaseModel):
    """What ``Memory.add(..., manager=...)`` returns: every decision, and the versions it wrote."""

    model_config = ConfigDict(extra="forbid")

    manager: str
    decisions: list[Decision]
    written: list[MemoryRecord] = Field(default_factory=list)  # new records and new versions (no vectors)
    usage: CallStats = Field(default_factory=CallStats)  # this add's LLM calls

    @property
    def ids(self) -> list[str]:
        return list(dict.fromkeys(r.id for r in self.written))


@dataclass
class Insert:
    """A new version-1 record to write, with the reason the history keeps."""

    record: MemoryRecord
    reason: str
    # experiences only: the nearest stored experiences, for the learner's agreement statistics
    nearest: list[Candidate] | None = None
    neighbours: dict[str, MemoryRecord] | None = None


@dataclass
class Change:
    """A new version of an existing record: ``changes`` as :meth:`memq.Memory.update` takes them
    (empty: the same content, written only to log the decision), ``op`` UPDATE or INVALIDATE."""

    record_id: str
    changes: dict[str, Any]
    reason: str
    op: HistoryOp = HistoryOp.UPDATE


@dataclass
class Plan:
    """Everything one ``add`` will write. Built without writing; applied by the facade."""

    inserts: list[Insert] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def insert(self, record: MemoryRecord, op: str, reason: str, **hooks: Any) -> None:
        self.inserts.append(Insert(record, reason, **hooks))
        self.decisions.append(Decision(op=op, record_id=record.id, text=record.text, reason=reason))

    def change(
        self,
        record_id: str,
        changes: dict[str, Any],
        op: str,
        reason: str,
        *,
        text: str | None = None,
        history_op: HistoryOp = HistoryOp.UPDATE,
    ) -> None:
        self.changes.append(Change(record_id, changes, reason, history_op))
        self.decisions.append(Decision(op=op, record_id=record_id, text=text, reason=reason))

    def note(self, op: str, reason: str, record_id: str | None = None, text: str | None = None) -> None:
        """A decision that writes nothing."""
        self.decisions.append(Decision(op=op, record_id=record_id, text=text, reason=reason))


class Reader(Protocol):
    """The read access a manager gets (sync; the async facade bridges to its event loop)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def similar(
        self, vector: np.ndarray, k: int, *, kinds: Sequence[str] | None, include_invalidated: bool
    ) -> list[tuple[MemoryRecord, float]]: ...

    def get(self, ids: Sequence[str], *, with_embedding: bool = False) -> list[MemoryRecord]: ...

    def of_kind(self, kind: str, limit: int) -> list[MemoryRecord]: ...


@dataclass
class ManageContext:
    """What a manager's ``plan`` may use: the scope of the add, the LLM, config, and reads."""

    scope: Scope
    config: MemoryConfig
    reader: Reader
    llm: LLM | None = None
    now: datetime | None = None

    def require_llm(self, manager: str) -> LLM:
        if self.llm is None:
            raise InvalidInputError(
                f"the {manager!r} manager needs an LLM: pass Memory(..., llm=...) or `memq add --llm SPEC`"
            )
        return self.llm

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.reader.embed(texts)

    def new_record(
        self,
        text: str,
        *,
        kind: str = "fact",
        payload: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        links: Sequence[Link] = (),
        provenance: Provenance | None = None,
        valid_from: datetime | None = None,
    ) -> MemoryRecord:
        """A validated version-1 record in the add's scope (InvalidInputError on bad text or JSON)."""
        item = NewRecord(
            text=text,
            kind=kind,
            payload=payload or {},
            metadata=metadata or {},
            links=list(links),
            provenance=provenance or Provenance(),
            valid_from=valid_from,
        )
        return self.build(item)

    def build(self, item: NewRecord) -> MemoryRecord:
        """``item`` validated into a version-1 record of the add's scope (InvalidInputError if bad)."""
        return build_records([item], scope=self.scope, config=self.config, defaults={}, now=self.now)[0]

    def similar(
        self,
        vector: np.ndarray,
        k: int,
        *,
        kinds: Sequence[str] | None = None,
        include_invalidated: bool = False,
        same_scope: bool = True,
    ) -> list[tuple[MemoryRecord, float]]:
        """Up to ``k`` current records nearest to ``vector`` (cosine), best first.

        ``same_scope``: only records whose scope equals the add's scope exactly (a record of another
        user is never a duplicate of this user's memory)."""
        found = self.reader.similar(
            vector, k * 2 if same_scope else k, kinds=kinds, include_invalidated=include_invalidated
        )
        if same_scope:
            found = [(r, s) for r, s in found if r.scope == self.scope]
        return found[:k]


@runtime_checkable
class Manager(Protocol):
    """A write policy. ``plan`` reads and asks the LLM, and returns the writes; it never writes."""

    name: str
    uses_llm: bool

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan: ...


class ManagerParams(BaseModel):
    """The base of every manager's ``Params``: unknown keyword arguments are an error."""

    model_config = ConfigDict(extra="forbid")


class BaseManager:
    """Shared plumbing: ``Params`` (a :class:`ManagerParams`) validates the constructor's keyword arguments."""

    name: ClassVar[str] = "base"
    uses_llm: ClassVar[bool] = False
    Params: ClassVar[type[ManagerParams]] = ManagerParams

    def __init__(self, **params: Any) -> None:
        try:
            self.params = self.Params(**params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ()))
            raise InvalidInputError(
                f"invalid parameter for the {self.name!r} manager: {where}: {err['msg']}"
            ) from exc

    @property
    def actor(self) -> str:
        return f"manager:{self.name}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"
