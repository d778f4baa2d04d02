"""``reconcile`` (mem0 v1 / Memory-R1): extract facts, then ADD / UPDATE / DELETE / NOOP each one
against the most similar stored memories.

1. LLM call 1 (operation ``extract``): the add's items are conversation turns; the answer is
   :class:`memq.manage.prompts.Facts` — "no facts" must be said explicitly (``status: none``);
   an empty list under ``status: facts`` is invalid and re-asked, never taken as success.
2. Each fact is embedded; the top ``neighbours`` (s) current records of the same scope and kind are
   retrieved; their union (at most ``max_memories``) is numbered 0..m-1 for the prompt — record ids
   never reach the model.
3. LLM call 2 (operation ``reconcile``, skipped when no memory is similar): one decision per fact,
   validated by a schema made for this call (an unknown memory number is invalid → re-asked).
4. Mapped back and applied: ADD stores the fact; UPDATE writes a new version of the memory with the
   merged text; DELETE *invalidates* the memory (world time ends, history kept) and stores the fact,
   linked ``supersedes`` → the old memory — so a contradiction never removes the newer fact; NOOP
   writes nothing new (with ``log_noop``, a same-content version of the memory carries the decision
   in its history).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from memq.llm.base import Message
from memq.llm.safety import FLAGS_KEY
from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.manage.dedupe import normalise
from memq.manage.prompts import Facts, decisions_schema, extract_prompt, reconcile_prompt
from memq.types import HistoryOp, Link, MemoryRecord, Provenance


def turns(inputs: Sequence[MemoryRecord]) -> list[tuple[str, str]]:
    """(role, text) of each input: ``metadata.role`` / ``metadata.speaker`` / ``payload.role``, else ``user``."""
    out = []
    for r in inputs:
        role = r.metadata.get("role") or r.metadata.get("speaker") or r.payload.get("role") or "user"
        out.append((str(role), r.text))
    return out


def inherited_metadata(inputs: Sequence[MemoryRecord]) -> dict[str, Any]:
    """The inputs' metadata merged (later items win), without per-text fields (role, injection flags)."""
    merged: dict[str, Any] = {}
    for r in inputs:
        merged.update(r.metadata)
    for key in ("role", "speaker", FLAGS_KEY):
        merged.pop(key, None)
    return merged


@dataclass
class Neighbourhood:
    """The memories shown to the reconcile call, numbered as in the prompt."""

    records: list[MemoryRecord]
    scores: list[float]


class ReconcileManager(BaseManager):
    name = "reconcile"
    uses_llm = True

    class Params(ManagerParams):
        neighbours: int = Field(
            default=5, ge=1, le=50, description="Similar memories retrieved per fact (s)."
        )
        max_memories: int = Field(default=10, ge=1, le=100, description="Most memories shown in one prompt.")
        kind: str = Field(default="fact", description="Kind of the records reconciled and written.")
        log_noop: bool = Field(default=True, description="Write NOOP into the known memory's history.")
        extract_max_tokens: int = Field(default=400, ge=16)
        decide_max_tokens: int = Field(default=600, ge=16)

    # -- pure steps (also used by benchmarks to size the prompts) ------------------------------------
    def extraction_messages(
        self, inputs: Sequence[MemoryRecord], ctx: ManageContext | None = None
    ) -> list[Message]:
        return extract_prompt(turns(inputs), None if ctx is None else ctx.now)

    def reconcile_messages(
        self, facts: Sequence[str], memories: Sequence[MemoryRecord | str]
    ) -> list[Message]:
        return reconcile_prompt(facts, memories)

    # -- the manager -----------------------------------------------------------------------------
    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        llm = ctx.require_llm(self.name)
        plan = Plan()
        answer = llm.structured(
            self.extraction_messages(inputs, ctx), Facts, operation="extract", max_tokens=p.extract_max_tokens
        )
        facts = list(dict.fromkeys(f for f in answer.facts))  # exact repeats collapse
        facts = [f for i, f in enumerate(facts) if normalise(f) not in {normalise(g) for g in facts[:i]}]
        if answer.status == "none" or not facts:
            plan.note("NOOP", "reconcile: the model found no facts worth remembering (status none)")
            return plan
        vectors = ctx.embed(facts)
        hood = self._neighbourhood(vectors, ctx)
        if not hood.records:
            decisions = [
                {"fact": i, "op": "ADD", "id": None, "text": None, "reason": "nothing similar stored"}
                for i in range(len(facts))
            ]
        else:
            schema = decisions_schema(len(facts), len(hood.records))
            out = llm.structured(
                self.reconcile_messages(facts, hood.records),
                schema,
                operation="reconcile",
                max_tokens=p.decide_max_tokens,
            )
            decisions = [d.model_dump() for d in out.decisions]  # type: ignore[attr-defined]
        base = inherited_metadata(inputs)
        sources = list(dict.fromkeys(m for r in inputs for m in r.provenance.source_message_ids))
        valid_from = max((r.valid_from for r in inputs if r.valid_from), default=None)
        for d in sorted(decisions, key=lambda d: d["fact"]):
            fact = facts[d["fact"]]
            why = d.get("reason") or ""
            old = hood.records[d["id"]] if d.get("id") is not None else None
            score = hood.scores[d["id"]] if d.get("id") is not None else None

            def new_fact(links: list[Link] = [], fact: str = fact) -> MemoryRecord:  # noqa: B006
                return ctx.new_record(
                    fact,
                    kind=p.kind,
                    metadata=base,
                    links=links,
                    provenance=Provenance(source=self.actor, source_message_ids=sources),
                    valid_from=valid_from,
                )

            if d["op"] == "ADD" or old is None:
                plan.insert(new_fact(), "ADD", _reason("ADD", why))
            elif d["op"] == "UPDATE":
                text = d.get("text") or fact
                plan.change(
                    old.id,
                    {"text": text},
                    "UPDATE",
                    _reason("UPDATE", why, f"was {short(old.text)!r}; fact {short(fact)!r}", score),
                    text=text,
                )
            elif d["op"] == "DELETE":
                record = new_fact([Link(target=old.id, type="supersedes")])
                plan.change(
                    old.id,
                    {"valid_to": ctx.now},
                    "INVALIDATE",
                    _reason(
                        "DELETE→invalidate", why, f"contradicted by {short(fact)!r} ({record.id})", score
                    ),
                    text=old.text,
                    history_op=HistoryOp.INVALIDATE,
                )
                plan.insert(record, "ADD", _reason("ADD", why, f"supersedes {old.id}"))
            else:  # NOOP
                reason = _reason("NOOP", why, f"already known: {short(fact)!r}", score)
                if p.log_noop:
                    plan.change(old.id, {}, "NOOP", reason, text=old.text)
                else:
                    plan.note("NOOP", reason, record_id=old.id, text=old.text)
        return plan

    def _neighbourhood(self, vectors: Any, ctx: ManageContext) -> Neighbourhood:
        best: dict[str, tuple[MemoryRecord, float]] = {}
        for vector in vectors:
            for record, score in ctx.similar(vector, self.params.neighbours, kinds=[self.params.kind]):
                if record.id not in best or score > best[record.id][1]:
                    best[record.id] = (record, score)
        ranked = sorted(best.values(), key=lambda rs: -rs[1])[: self.params.max_memories]
        return Neighbourhood([r for r, _ in ranked], [s for _, s in ranked])


def _reason(op: str, why: str, detail: str = "", score: float | None = None) -> str:
    parts = [f"reconcile {op}"]
    if detail:
        parts.append(detail + (f" (cos {score:.2f})" if score is not None else ""))
    if why:
        parts.append(f"model: {short(why, 160)}")
    return ": ".join(parts[:1]) + ": " + "; ".join(parts[1:]) if len(parts) > 1 else parts[0]
