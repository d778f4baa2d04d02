"""``insights`` (ExpeL): a list of general rules kept as ``insight`` records, edited by the LLM from
success/failure pairs with ADD / EDIT / REMOVE / AGREE and a strength counter per rule.

Each item is an attempt (``text`` = task, ``payload.outcome`` or ``payload.reward``, optional
``payload.trajectory``), as for the ``experience`` manager (use both: ``experience`` stores the
attempt, ``insights`` learns rules from it). Every item is paired with the most similar attempt of
the opposite outcome — from the same add, else from the stored experiences — and the pairs (at most
``max_pairs``) go to one LLM call (operation ``insights``) with the current rules, numbered.

Counters (ExpeL): ADD creates a rule with strength ``initial_strength`` (2); EDIT rewrites it, +1;
AGREE +1; REMOVE −1, and a rule whose strength reaches 0 is *invalidated* (world time ends; the
history keeps every version). The strength is ``payload.strength``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import Field

from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.manage.experience import outcome_of
from memq.manage.prompts import insights_prompt, rule_ops_schema
from memq.types import HistoryOp, Kind, MemoryRecord, Provenance


class InsightsManager(BaseManager):
    name = "insights"
    uses_llm = True

    class Params(ManagerParams):
        initial_strength: int = Field(default=2, ge=1, description="Strength of a new rule (ExpeL: 2).")
        max_rules: int = Field(default=30, ge=1, le=200, description="Most rules shown to the model.")
        max_pairs: int = Field(default=3, ge=1, le=10, description="Most success/failure pairs per call.")
        pair_threshold: float = Field(
            default=0.5, ge=-1.0, le=1.0, description="Least cosine of a pair's tasks."
        )
        max_tokens: int = Field(default=400, ge=16)

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        outcomes = [outcome_of(r)[0] for r in inputs]
        llm = ctx.require_llm(self.name)
        vectors = ctx.embed([r.text for r in inputs])
        attempts = self._attempts(inputs, outcomes, vectors, ctx)
        rules = sorted(ctx.reader.of_kind(Kind.INSIGHT.value, p.max_rules), key=lambda r: r.id)
        schema = rule_ops_schema(len(rules))
        answer: Any = llm.structured(
            insights_prompt(rules, attempts), schema, operation="insights", max_tokens=p.max_tokens
        )
        plan = Plan()
        if answer.status == "no_change":
            plan.note("NOOP", f"insights: no rule change from {len(attempts)} attempt(s)")
            return plan
        for op in answer.ops:
            why = f"model: {short(op.reason, 160)}" if op.reason else ""
            if op.op == "ADD":
                record = ctx.new_record(
                    op.text,
                    kind=Kind.INSIGHT.value,
                    payload={"strength": p.initial_strength},
                    provenance=Provenance(source=self.actor),
                )
                plan.insert(record, "ADD", _join(f"insights ADD (strength {p.initial_strength})", why))
                continue
            rule = rules[op.rule]
            strength = int(rule.payload.get("strength", p.initial_strength))
            if op.op == "REMOVE":
                strength -= 1
                changes: dict[str, Any] = {"payload": {**rule.payload, "strength": strength}}
                if strength <= 0:
                    changes["valid_to"] = ctx.now
                    plan.change(
                        rule.id,
                        changes,
                        "REMOVE",
                        _join("insights REMOVE: strength 0, rule retired", why),
                        text=rule.text,
                        history_op=HistoryOp.INVALIDATE,
                    )
                else:
                    plan.change(
                        rule.id,
                        changes,
                        "REMOVE",
                        _join(f"insights REMOVE: strength {strength}", why),
                        text=rule.text,
                    )
                continue
            strength += 1
            changes = {"payload": {**rule.payload, "strength": strength}}
            if op.op == "EDIT":
                changes["text"] = op.text
            plan.change(
                rule.id,
                changes,
                op.op,
                _join(f"insights {op.op}: strength {strength}", why),
                text=changes.get("text", rule.text),
            )
        return plan

    def _attempts(
        self, inputs: Sequence[MemoryRecord], outcomes: list[bool], vectors: np.ndarray, ctx: ManageContext
    ) -> list[tuple[str, str, Any]]:
        """Success/failure pairs (each item with its closest opposite-outcome attempt), flattened."""
        shown: list[tuple[str, str, Any]] = []
        seen: set[str] = set()

        def add(record: MemoryRecord, success: bool) -> None:
            if record.id not in seen:
                seen.add(record.id)
                shown.append(
                    ("success" if success else "failure", record.text, record.payload.get("trajectory"))
                )

        for i, (record, success) in enumerate(zip(inputs, outcomes, strict=True)):
            if len(seen) >= 2 * self.params.max_pairs:
                break
            add(record, success)
            partner: tuple[MemoryRecord, float] | None = None
            for j, other in enumerate(inputs):
                sim = float(np.dot(vectors[i], vectors[j]))
                if (
                    outcomes[j] != success
                    and sim >= self.params.pair_threshold
                    and (partner is None or sim > partner[1])
                ):
                    partner = (other, sim)
            if partner is None:
                for other, sim in ctx.similar(vectors[i], 5, kinds=[Kind.EXPERIENCE.value], same_scope=False):
                    other_success = _stored_success(other)
                    if (
                        other_success is not None
                        and other_success != success
                        and sim >= self.params.pair_threshold
                    ):
                        partner = (other, sim)
                        break
            if partner is not None:
                add(partner[0], not success)
        return shown


def _stored_success(record: MemoryRecord) -> bool | None:
    outcome = record.payload.get("outcome")
    if outcome in ("success", "failure"):
        return outcome == "success"
    reward = record.payload.get("reward")
    return None if not isinstance(reward, int | float) else reward > 0


def _join(head: str, why: str) -> str:
    return f"{head}; {why}" if why else head
