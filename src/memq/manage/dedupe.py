"""``dedupe``: no LLM, deterministic. An item whose normalised text equals a stored record's (exact
duplicate), or whose cosine to the nearest stored record of the same scope and kind is at least
``threshold`` (near duplicate), is merged into that record instead of stored again.

A merge keeps the existing record and writes a new version of it whose history says what was merged
and why (``near-duplicate of "…" (cos 0.97)``); metadata is unioned (the existing record's keys win)
and provenance ids are added. Items of one batch are deduplicated against each other the same way.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from memq.manage.base import BaseManager, Change, Insert, ManageContext, ManagerParams, Plan, short
from memq.types import MemoryRecord, Provenance

_PUNCT_EDGES = re.compile(r"^[\W_]+|[\W_]+$")


def normalise(text: str) -> str:
    """NFKC, case-folded, whitespace collapsed, punctuation trimmed from both ends."""
    folded = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return _PUNCT_EDGES.sub("", folded)


def text_hash(text: str) -> str:
    """SHA-256 of :func:`normalise` (hex): equal for texts that differ only in case, spacing or end punctuation."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def merged_provenance(old: Provenance, new: Provenance) -> Provenance:
    return Provenance(
        source=old.source or new.source,
        source_message_ids=list(dict.fromkeys(old.source_message_ids + new.source_message_ids)),
        parent_ids=list(dict.fromkeys(old.parent_ids + new.parent_ids)),
    )


def merged_metadata(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The union of two metadata objects; on a shared key the existing record's value wins."""
    return {**new, **old}


class DedupeManager(BaseManager):
    name = "dedupe"

    class Params(ManagerParams):
        threshold: float = Field(
            default=0.95, gt=0.0, le=1.0, description="Cosine at or above which items merge."
        )
        neighbours: int = Field(default=5, ge=1, le=100, description="Stored records compared per item.")
        merge_metadata: bool = Field(
            default=True, description="Union the item's metadata into the kept record."
        )

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        plan = Plan()
        vectors = ctx.embed([r.text for r in inputs])
        kept: list[tuple[MemoryRecord, np.ndarray]] = []  # this batch's records that will be inserted
        merges: dict[
            str, tuple[MemoryRecord, dict[str, Any], list[str]]
        ] = {}  # stored id -> (record, changes, reasons)
        for record, vector in zip(inputs, vectors, strict=True):
            record.embedding = vector.tolist()  # the facade reuses it
            target, how = self._match(record, vector, kept, ctx)
            if target is None:
                kept.append((record, vector))
                continue
            reason = f"dedupe: merged {how} {short(record.text)!r}"
            if any(
                k is target for k, _ in kept
            ):  # a duplicate inside this batch: fold into the pending insert
                self._fold(target, record)
                plan.note("MERGE", reason, record_id=target.id, text=record.text)
                continue
            _, changes, reasons = merges.setdefault(target.id, (target, {}, []))
            base = changes.get("metadata", target.metadata)
            if p.merge_metadata and merged_metadata(base, record.metadata) != target.metadata:
                changes["metadata"] = merged_metadata(base, record.metadata)
            prov = merged_provenance(changes.get("provenance", target.provenance), record.provenance)
            if prov != target.provenance:
                changes["provenance"] = prov
            reasons.append(reason)
            plan.note("MERGE", reason, record_id=target.id, text=record.text)
        for record, _ in kept:
            plan.inserts.append(Insert(record, "dedupe: no duplicate found"))
            plan.note("ADD", "dedupe: no duplicate found", record_id=record.id, text=record.text)
        for rid, (_, changes, reasons) in merges.items():
            plan.changes.append(Change(rid, changes, "; ".join(reasons)[:1000]))
        return plan

    def _match(
        self,
        record: MemoryRecord,
        vector: np.ndarray,
        kept: list[tuple[MemoryRecord, np.ndarray]],
        ctx: ManageContext,
    ) -> tuple[MemoryRecord | None, str]:
        key = normalise(record.text)
        candidates: list[tuple[MemoryRecord, float]] = [
            (other, float(np.dot(vector, v)))
            for other, v in kept
            if other.kind == record.kind and other.scope == record.scope
        ]
        if record.scope == ctx.scope:
            candidates += [
                (other, score)
                for other, score in ctx.similar(vector, self.params.neighbours, kinds=[record.kind])
            ]
        for other, _ in candidates:
            if normalise(other.text) == key:
                return other, f"exact duplicate of {other.id}:"
        best = max(candidates, key=lambda c: c[1], default=None)
        if best is not None and best[1] >= self.params.threshold:
            return best[0], f"near-duplicate of {best[0].id} (cos {best[1]:.3f}):"
        return None, ""

    def _fold(self, target: MemoryRecord, record: MemoryRecord) -> None:
        if self.params.merge_metadata:
            target.metadata = merged_metadata(target.metadata, record.metadata)
        target.provenance = merged_provenance(target.provenance, record.provenance)
