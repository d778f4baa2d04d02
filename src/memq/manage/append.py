"""``append``: store every item as given (what ``Memory.add`` does without a manager), with an op log."""

from __future__ import annotations

from collections.abc import Sequence

from memq.manage.base import BaseManager, ManageContext, Plan
from memq.types import MemoryRecord


class AppendManager(BaseManager):
    name = "append"

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        plan = Plan()
        for record in inputs:
            plan.insert(record, "ADD", "append: stored as given")
        return plan
