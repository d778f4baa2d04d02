"""The ``reconcile`` variant of ``memq bench conflict``: facts written through the LLM manager.

Each fact is its own ``Memory.add(fact, manager="reconcile")``: the model extracts the fact, then
decides ADD / UPDATE / DELETE→invalidate / NOOP against the most similar current records (see
:mod:`memq.manage.reconcile`). Search then sees what the manager left current. The record texts are
the model's (an UPDATE rewrites an old record's text), so questions are scored on the retrieved
records' own texts, not on the dataset's fact of the same key.

An add whose manager raises :class:`~memq.errors.LLMError` (transport failure, or an answer that
never validated) writes nothing (the manager's contract); it is counted in ``llm_errors`` and the
fact is skipped, never silently dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from memq.embed.base import Embedder
from memq.errors import LLMError
from memq.llm.base import LLM, CallStats
from memq_bench.systems import BenchDoc, MemqSystem

NO_FACTS = "reconcile: the model found no facts"  # the reason ReconcileManager gives a status-none add


class ReconcilingMemq(MemqSystem):
    """A memq preset whose adds go through ``manager="reconcile"`` with ``llm``, one fact per add."""

    def __init__(self, preset: str, embedder: Embedder, llm: LLM, **kwargs: Any) -> None:
        super().__init__(preset, embedder, **kwargs)
        self.memory.llm = llm
        self.llm = llm
        self._usage_at_start = llm.usage.snapshot().total.model_copy()
        self.decisions: Counter[str] = Counter()  # ADD / UPDATE / INVALIDATE / NOOP
        self.llm_errors = 0
        self.no_facts = 0  # adds where the model extracted nothing (status none): nothing written
        self.error_messages: list[str] = []
        self._texts: dict[str, str] = {}  # record id → text, of the last search

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        from memq.types import NewRecord

        for d in docs:
            item = NewRecord(text=d.text, metadata={"key": d.key, **d.meta}, valid_from=d.when)
            try:
                result = self.memory.add([item], scope=self._scope(space), manager="reconcile")
            except LLMError as exc:
                self.llm_errors += 1
                if len(self.error_messages) < 5:
                    self.error_messages.append(f"{d.key}: {exc.code}: {str(exc)[:160]}")
                continue
            self.decisions.update(dec.op for dec in result.decisions)
            self.no_facts += any(d.reason.startswith(NO_FACTS) for d in result.decisions)
            self._records += sum(dec.op == "ADD" for dec in result.decisions)  # records created

    def search(self, space: str, query: str, k: int) -> list[str]:
        """Record ids (``text_of`` gives their texts): reconcile's records carry the model's text."""
        got = self.memory.search(query, k=k, scope=self._scope(space), policy=self._policy, **self._options)
        self._last[space] = got.id
        self._texts = {h.record.id: h.record.text for h in got.hits}
        return [h.record.id for h in got.hits]

    def text_of(self, record_id: str) -> str | None:
        return self._texts.get(record_id)

    def usage(self) -> CallStats:
        """This system's LLM calls: the shared LLM's totals since this system was built."""
        now = self.llm.usage.snapshot().total
        start = self._usage_at_start
        return CallStats(**{f: getattr(now, f) - getattr(start, f) for f in CallStats.model_fields})

    def metrics(self) -> dict[str, float]:
        u = self.usage()
        out = {
            "llm_calls": float(u.calls),
            "llm_failures": float(u.failures),
            "llm_retries": float(u.retries),
            "llm_prompt_tokens": float(u.prompt_tokens),
            "llm_completion_tokens": float(u.completion_tokens),
            "llm_tokens": float(u.prompt_tokens + u.completion_tokens),
            "llm_ms_total": float(u.latency_ms),
            "llm_errors": float(self.llm_errors),
            "facts_extracted_none": float(self.no_facts),
        }
        for op in ("ADD", "UPDATE", "INVALIDATE", "NOOP"):
            out[f"decisions_{op.lower()}"] = float(self.decisions.get(op, 0))
        return out

    def close(self) -> None:
        self.memory.llm = None  # the LLM is shared by the run; the caller closes it
        super().close()
