"""``experience`` (MemP / MemRL write rules): an agent's finished task becomes an ``experience`` record.

Each item is one task: ``text`` = the task, ``payload.outcome`` = ``success`` | ``failure`` (or a
``payload.reward``: > 0 is a success), ``payload.trajectory`` = what the agent did (any JSON),
optionally ``payload.answer``. On success the LLM (operation ``experience_script``) writes a 3-5 step
script; on failure it writes a reflection (operation ``experience_reflection``: what went wrong, what
to avoid, what to do instead), stored with ``payload.type = "adjustment"``. Both keep the trajectory.

The record is built exactly as :meth:`memq.Memory.remember_experience` builds one
(:func:`experience_item`): the task text is the key that is embedded and searched, a task whose
nearest stored experience has cosine ≥ 0.9 joins that experience's task key (MemRL's merge), and the
``memq`` learner's agreement statistics are updated after the write.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from memq.errors import InvalidInputError
from memq.ids import new_id
from memq.learn.experience import NEIGHBOURS, TASK_KEY_SIMILARITY, experience_payload
from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.manage.prompts import Reflection, Script, experience_prompt
from memq.store.base import Candidate
from memq.types import Kind, Link, MemoryRecord, NewRecord

OUTCOME_FIELDS = ("outcome", "reward", "trajectory", "answer")


def experience_item(
    task: str,
    answer: str,
    outcome: str,
    reward: float,
    trajectory: Any,
    metadata: Mapping[str, Any] | None,
    nearest: Sequence[Candidate],
    neighbours: Mapping[str, MemoryRecord],
    extra: Mapping[str, Any] | None = None,
) -> NewRecord:
    """The experience record to write: it joins the nearest experience's task key at cosine ≥ 0.9."""
    key_of = None
    if nearest and nearest[0].score >= TASK_KEY_SIMILARITY:
        key_of = neighbours.get(nearest[0].id)
    record_id = new_id()
    task_key = record_id if key_of is None else key_of.payload.get("task_key", key_of.id)
    payload = experience_payload(task, answer, outcome, reward, trajectory, task_key)
    return NewRecord(
        id=record_id,
        text=task,
        kind=Kind.EXPERIENCE.value,
        payload={**(extra or {}), **payload},
        metadata=dict(metadata or {}),
        links=[] if key_of is None else [Link(target=key_of.id, type="same_task")],
    )


def outcome_of(record: MemoryRecord) -> tuple[bool, float]:
    """(success, reward) of an item: ``payload.outcome`` and/or ``payload.reward``."""
    outcome = record.payload.get("outcome")
    reward = record.payload.get("reward")
    if reward is not None and (
        isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward)
    ):
        raise InvalidInputError(f"payload.reward must be a finite number, got {reward!r}")
    if outcome is None and reward is None:
        raise InvalidInputError(
            f"experience item {short(record.text)!r} needs payload.outcome ('success' or 'failure') or payload.reward"
        )
    if outcome is not None and outcome not in ("success", "failure"):
        raise InvalidInputError(f"payload.outcome must be 'success' or 'failure', got {outcome!r}")
    success = outcome == "success" if outcome is not None else float(reward) > 0  # type: ignore[arg-type]
    return success, float(reward) if reward is not None else (1.0 if success else 0.0)


class ExperienceManager(BaseManager):
    name = "experience"
    uses_llm = True

    class Params(ManagerParams):
        reflect: bool = Field(
            default=True, description="Ask for a reflection on failures (else store as is)."
        )
        script: bool = Field(
            default=True, description="Ask for a step script on successes (else store as is)."
        )
        max_tokens: int = Field(default=300, ge=16)

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        outcomes = [outcome_of(r) for r in inputs]  # bad input fails before any LLM call
        llm = ctx.require_llm(self.name) if (p.script or p.reflect) else None
        plan = Plan()
        vectors = ctx.embed([r.text for r in inputs])
        built: list[tuple[MemoryRecord, str, list[Candidate], dict[str, MemoryRecord]]] = []
        for record, (success, reward), vector in zip(inputs, outcomes, vectors, strict=True):
            trajectory = record.payload.get("trajectory")
            extra = {k: v for k, v in record.payload.items() if k not in OUTCOME_FIELDS}
            answer = record.payload.get("answer")
            if success and p.script and llm is not None:
                script = llm.structured(
                    experience_prompt(record.text, trajectory, True),
                    Script,
                    operation="experience_script",
                    max_tokens=p.max_tokens,
                )
                extra["script"] = script.steps
                derived = "SCRIPT: " + " ".join(f"{i}. {s}" for i, s in enumerate(script.steps, 1))
                why = f"experience: success, {len(script.steps)}-step script"
            elif not success and p.reflect and llm is not None:
                refl = llm.structured(
                    experience_prompt(record.text, trajectory, False),
                    Reflection,
                    operation="experience_reflection",
                    max_tokens=p.max_tokens,
                )
                extra["reflection"] = refl.model_dump()
                extra["type"] = "adjustment"
                derived = f"WENT WRONG: {refl.went_wrong} AVOID: {refl.avoid} INSTEAD: {refl.improve}"
                why = f"experience: failure, reflection: avoid {short(refl.avoid, 100)!r}"
            else:
                derived = str(answer) if answer else ("success" if success else "failure")
                why = f"experience: {'success' if success else 'failure'}, stored without LLM"
            found = ctx.similar(
                vector, NEIGHBOURS, kinds=[Kind.EXPERIENCE.value], include_invalidated=True, same_scope=False
            )
            nearest = [Candidate(r.id, s) for r, s in found]
            neighbours = {r.id: r for r, _ in found}
            item = experience_item(
                record.text,
                str(answer) if answer else derived,
                "success" if success else "failure",
                reward,
                trajectory,
                record.metadata,
                nearest,
                neighbours,
                extra,
            )
            new = ctx.build(item)
            new.embedding = None if vector is None else vector.tolist()
            if new.links:
                why += f"; same task as {new.links[0].target}"
            built.append((new, why, nearest, neighbours))
        for new, why, nearest, neighbours in built:
            plan.insert(new, "ADD", why, nearest=nearest, neighbours=neighbours)
        return plan
