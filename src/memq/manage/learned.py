"""``learned:PATH``: a write policy trained by reinforcement learning (``memq rl train``), no LLM.

For each item of the add, in order: the K current records of the same scope and kind most similar to
it (cosine; earlier items of the same batch count as stored) become candidates; the policy file at
PATH scores ADD, NOOP, UPDATE j and INVALIDATE j from their features (:mod:`memq.rl.features`) and
the best legal action is taken (greedy):

* ADD stores the item;
* UPDATE j writes a new version of candidate j holding the item's text (its metadata merged in, the
  item's keys winning; the old text stays in the history). A numeric policy cannot write a merged
  text, so UPDATE *replaces* — unlike Memory-R1, whose LLM writes the merged text m′;
* INVALIDATE j ends candidate j's world-time validity (history kept) and stores the item, linked
  ``supersedes`` → the old record (``reconcile``'s DELETE);
* NOOP stores nothing; the decision (with the nearest candidate) is in ``ManageResult.decisions``.

The plan is written as one batch like every manager's. The policy file is plain JSON read with numpy
(:mod:`memq.rl.policy`): neither gymnasium nor torch is needed to use a trained policy.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.rl.actions import decode
from memq.rl.features import Candidate, Observation, observe
from memq.rl.policy import Policy, load_policy
from memq.types import HistoryOp, Link, MemoryRecord, utcnow


@functools.lru_cache(maxsize=16)
def _cached_policy(path: str, mtime_ns: int, size: int) -> Policy:
    return load_policy(path)


def read_policy(path: str | Path) -> Policy:
    """The policy at ``path``, cached while the file is unchanged (InvalidInputError if unreadable)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return load_policy(p)  # raises the typed error with the reason
    return _cached_policy(str(p.resolve()), st.st_mtime_ns, st.st_size)


@dataclass
class _Slot:
    """A record an item can be compared with during one plan: stored, or an earlier item of the batch."""

    record: MemoryRecord
    vector: np.ndarray
    pending: bool  # an insert of this plan, not yet written
    order: int


class BatchState:
    """What one plan has decided so far: pending inserts, and stored records it changed or ended."""

    def __init__(self) -> None:
        self.slots: dict[str, _Slot] = {}
        self.ended: set[str] = set()
        self.counter = 0

    def next_order(self) -> int:
        self.counter += 1
        return 2**62 + self.counter  # after every stored record


def candidates(
    ctx: ManageContext, item: MemoryRecord, vector: np.ndarray, k: int, state: BatchState | None = None
) -> list[Candidate]:
    """The K records most similar to ``item`` (same scope and kind), as the policy sees them."""
    state = state or BatchState()
    found: dict[str, tuple[MemoryRecord, np.ndarray | None, float, int]] = {}
    extra = len(state.ended) + sum(1 for s in state.slots.values() if not s.pending)
    for record, cos in ctx.similar(vector, k + extra, kinds=[item.kind]):
        if record.id in state.ended or record.id in state.slots:
            continue
        order = int(record.recorded_at.timestamp() * 1e6)
        found[record.id] = (record, None, float(cos), order)
    for rid, slot in state.slots.items():
        if rid in state.ended or slot.record.kind != item.kind:
            continue
        cos = float(
            np.dot(vector, slot.vector) / (np.linalg.norm(vector) * np.linalg.norm(slot.vector) + 1e-12)
        )
        found[rid] = (slot.record, slot.vector, cos, slot.order)
    ranked = sorted(found.values(), key=lambda f: (-f[2], f[0].id))[:k]
    return [
        Candidate(r.id, r.text, cos, order, q=r.utility.q, n_used=r.utility.n_used)
        for r, _, cos, order in ranked
    ]


def apply_action(
    plan: Plan,
    ctx: ManageContext,
    item: MemoryRecord,
    vector: np.ndarray,
    obs: Observation,
    action: int,
    state: BatchState,
    *,
    who: str,
    why: str = "",
) -> str:
    """Add the writes of ``action`` on ``item`` to ``plan`` (and to ``state``); returns the op name."""
    op, slot = decode(action, obs.k)
    if slot is not None and (slot >= len(obs.candidates) or not obs.mask[action]):
        raise ValueError(f"action {action} ({op} slot {slot}) is not legal here")
    target = obs.candidates[slot] if slot is not None else None
    tail = f"; {why}" if why else ""
    if op == "ADD":
        plan.insert(item, "ADD", f"{who} ADD{tail}")
        state.slots[item.id] = _Slot(item, vector, True, state.next_order())
    elif op == "NOOP":
        nearest = obs.candidates[0] if obs.candidates else None
        detail = f": nearest {short(nearest.text)!r} (cos {nearest.cos:.2f})" if nearest else ""
        plan.note(
            "NOOP",
            f"{who} NOOP, not stored{detail}{tail}",
            record_id=nearest and nearest.record_id,
            text=item.text,
        )
    elif op == "UPDATE":
        assert target is not None
        reason = (
            f"{who} UPDATE: was {short(target.text)!r}, now {short(item.text)!r} (cos {target.cos:.2f}){tail}"
        )
        pending = state.slots.get(target.record_id)
        if pending is not None and pending.pending:
            pending.record.text = item.text
            pending.record.metadata = {**pending.record.metadata, **item.metadata}
            pending.record.embedding = list(map(float, vector))
            pending.vector, pending.order = vector, state.next_order()
            plan.note(
                "UPDATE",
                reason + " (an item of this batch, before it was written)",
                target.record_id,
                item.text,
            )
        else:
            record = ctx.reader.get([target.record_id])[0]
            metadata = {**record.metadata, **item.metadata}
            plan.change(
                target.record_id, {"text": item.text, "metadata": metadata}, "UPDATE", reason, text=item.text
            )
            copy = record.model_copy(update={"text": item.text, "metadata": metadata})
            state.slots[target.record_id] = _Slot(copy, vector, False, state.next_order())
    else:  # INVALIDATE
        assert target is not None
        now = ctx.now or utcnow()
        item.links = [*item.links, Link(target=target.record_id, type="supersedes")]
        reason = (
            f"{who} INVALIDATE: superseded by {short(item.text)!r} ({item.id}) (cos {target.cos:.2f}){tail}"
        )
        pending = state.slots.get(target.record_id)
        if pending is not None and pending.pending:
            pending.record.valid_to = now
            plan.note(
                "INVALIDATE",
                reason + " (an item of this batch, stored as ended)",
                target.record_id,
                target.text,
            )
        else:
            plan.change(
                target.record_id,
                {"valid_to": now},
                "INVALIDATE",
                reason,
                text=target.text,
                history_op=HistoryOp.INVALIDATE,
            )
        state.ended.add(target.record_id)
        plan.insert(item, "ADD", f"{who} ADD: supersedes {target.record_id}{tail}")
        state.slots[item.id] = _Slot(item, vector, True, state.next_order())
    return op


class LearnedManager(BaseManager):
    name = "learned"
    uses_llm = False

    class Params(ManagerParams):
        path: str = Field(description="The policy file (JSON) written by `memq rl train`.")

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.policy = read_policy(self.params.path)

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        plan, state = Plan(), BatchState()
        vectors = np.asarray(ctx.embed([r.text for r in inputs]), dtype=np.float64)
        for record, vector in zip(inputs, vectors, strict=True):
            record.embedding = vector.tolist()  # the facade reuses it
            obs = observe(record.text, candidates(ctx, record, vector, self.policy.k, state), self.policy.k)
            probs = self.policy.probs(obs)
            action = int(np.argmax(probs))
            apply_action(
                plan, ctx, record, vector, obs, action, state, who="learned", why=f"p={probs[action]:.2f}"
            )
        return plan
