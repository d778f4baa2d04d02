"""FactConsolidation as episodes for :class:`memq.rl.env.MemoryOpsEnv`.

* :class:`SampledEpisodes` (training, validation): an episode of seed s takes one context (6k or 32k
  by default), draws ``questions`` of its questions (SH and MH rows pooled), and streams, in serial
  order, the ``related`` facts nearest each question (cosine over the whole context: the question's
  own facts, their stale versions and look-alikes) plus ``distractors`` facts drawn at random. The
  questions are asked at the end. The question only picks which slice of the stream forms the
  episode; the policy never sees it.
* :class:`FullContext` (evaluation): every fact of a context in serial order, then all its questions
  — the benchmark's own protocol (``memq bench conflict``).

Embeddings come from the caller's (cached) embedder, so building an episode embeds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq.rl.env import Episode, Item, Question
from memq_bench.conflict import ConflictContext

TRAIN_LENGTHS = ("6k", "32k")
HELD_OUT_LENGTHS = ("64k", "262k")


def _items(ctx: ConflictContext, indices: Sequence[int]) -> tuple[Item, ...]:
    return tuple(Item(text=ctx.facts[i], key=f"{ctx.length}:{i}", metadata={"serial": i}) for i in indices)


def _questions(ctx: ConflictContext) -> list[Question]:
    return [
        Question(q, tuple(a), row.hop)
        for row in ctx.rows
        for q, a in zip(row.questions, row.answers, strict=True)
    ]


class SampledEpisodes:
    """Short question-focused episodes drawn from ``contexts`` (see the module docstring)."""

    def __init__(
        self,
        contexts: Sequence[ConflictContext],
        embedder: Embedder,
        *,
        questions: int = 4,
        related: int = 6,
        distractors: int = 8,
        hops: Sequence[str] = ("sh", "mh"),
    ) -> None:
        if not contexts:
            raise InvalidInputError("no FactConsolidation contexts to draw episodes from")
        if questions < 1 or related < 1 or distractors < 0:
            raise InvalidInputError("questions and related must be >= 1, distractors >= 0")
        self.contexts = list(contexts)
        self.n_questions, self.related, self.distractors = questions, related, distractors
        self._facts: list[np.ndarray] = []
        self._questions: list[list[Question]] = []
        self._qvecs: list[np.ndarray] = []
        for ctx in self.contexts:
            self._facts.append(np.asarray(embedder.embed_documents(ctx.facts), dtype=np.float32))
            qs = [q for q in _questions(ctx) if q.tag in hops]
            if not qs:
                raise InvalidInputError(f"context {ctx.length} has no questions of hops {list(hops)}")
            self._questions.append(qs)
            self._qvecs.append(np.asarray([embedder.embed_query(q.text) for q in qs], dtype=np.float32))

    def episode(self, seed: int) -> Episode:
        rng = np.random.default_rng(seed)
        c = int(rng.integers(len(self.contexts)))
        ctx, facts, qs, qvecs = self.contexts[c], self._facts[c], self._questions[c], self._qvecs[c]
        picked = rng.choice(len(qs), size=min(self.n_questions, len(qs)), replace=False)
        chosen: set[int] = set()
        for qi in picked:
            sims = facts @ qvecs[qi]
            top = np.argpartition(-sims, self.related)[: self.related]
            chosen.update(int(i) for i in top)
        if self.distractors:
            chosen.update(int(i) for i in rng.choice(len(ctx.facts), size=self.distractors, replace=False))
        indices = sorted(chosen)
        return Episode(
            id=f"fc-{ctx.length}-s{seed}",
            items=_items(ctx, indices),
            questions=tuple(qs[int(i)] for i in picked),
            meta={"context": ctx.length, "seed": seed},
        )


class FullContext:
    """One whole context and all its questions (the seed is ignored: there is one episode)."""

    def __init__(self, ctx: ConflictContext, max_facts: int | None = None) -> None:
        self.ctx, self.max_facts = ctx, max_facts

    def episode(self, seed: int = 0) -> Episode:
        n = len(self.ctx.facts) if self.max_facts is None else min(self.max_facts, len(self.ctx.facts))
        return Episode(
            id=f"fc-{self.ctx.length}-full",
            items=_items(self.ctx, range(n)),
            questions=tuple(_questions(self.ctx)),
            meta={"context": self.ctx.length, "facts": n},
        )
