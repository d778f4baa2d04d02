"""``notes`` (A-MEM): each item becomes a ``note`` with keywords, tags and a context sentence, linked
to related older notes, which may *evolve* (their context and tags rewritten) in its light.

Per item: LLM call ``note_analyze`` → :class:`memq.manage.prompts.NoteAnalysis` (stored in
``payload.keywords/tags/context``; tags also in ``metadata.tags`` for filtering); then the top
``neighbours`` notes of the same scope, numbered for the prompt, and LLM call ``note_evolve`` →
which of them to link (``related`` links on the new note) and new context/tags for some of them (a
new version of each, whose history says why). With no older note the second call is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.manage.prompts import NoteAnalysis, evolution_schema, evolve_prompt, note_prompt
from memq.types import Kind, Link, MemoryRecord, Provenance


class NotesManager(BaseManager):
    name = "notes"
    uses_llm = True

    class Params(ManagerParams):
        neighbours: int = Field(
            default=5, ge=1, le=20, description="Older notes considered per note (A-MEM: 5)."
        )
        evolve: bool = Field(default=True, description="Ask for links and neighbour evolution.")
        max_tokens: int = Field(default=250, ge=16)

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        llm = ctx.require_llm(self.name)
        plan = Plan()
        vectors = ctx.embed([r.text for r in inputs])
        evolved: dict[
            str, dict[str, Any]
        ] = {}  # neighbour id -> payload so far (several notes may evolve one)
        for record, vector in zip(inputs, vectors, strict=True):
            analysis = llm.structured(
                note_prompt(record.text), NoteAnalysis, operation="note_analyze", max_tokens=p.max_tokens
            )
            found = ctx.similar(vector, p.neighbours, kinds=[Kind.NOTE.value]) if p.evolve else []
            links: list[Link] = []
            why = ""
            if found:
                olds = [r for r, _ in found]
                answer: Any = llm.structured(
                    evolve_prompt(record.text, analysis, olds),
                    evolution_schema(len(olds)),
                    operation="note_evolve",
                    max_tokens=p.max_tokens,
                )
                links = [Link(target=olds[i].id, type="related") for i in dict.fromkeys(answer.links)]
                why = f"; model: {short(answer.reason, 160)}" if answer.reason else ""
                for upd in answer.updates:
                    old = olds[upd.id]
                    payload = dict(evolved.get(old.id, old.payload))
                    changes: dict[str, Any] = {}
                    if upd.context:
                        payload["context"] = upd.context
                    if upd.tags:
                        payload["tags"] = list(upd.tags)
                        changes["metadata"] = {**old.metadata, "tags": list(upd.tags)}
                    if payload == evolved.get(old.id, old.payload):
                        continue
                    evolved[old.id] = payload
                    changes["payload"] = payload
                    plan.change(
                        old.id,
                        changes,
                        "EVOLVE",
                        f"notes EVOLVE: context/tags updated by new note {short(record.text, 60)!r}{why}",
                        text=old.text,
                    )
            note = ctx.new_record(
                record.text,
                kind=Kind.NOTE.value,
                payload={**record.payload, **analysis.model_dump()},
                metadata={**record.metadata, "tags": list(analysis.tags)},
                links=list(record.links) + links,
                provenance=record.provenance.model_copy(
                    update={"source": record.provenance.source or self.actor}
                )
                if record.provenance != Provenance()
                else Provenance(source=self.actor),
                valid_from=record.valid_from,
            )
            note.embedding = vector.tolist()
            plan.insert(note, "ADD", f"notes ADD: tags {', '.join(analysis.tags)}; {len(links)} link(s){why}")
        return plan
