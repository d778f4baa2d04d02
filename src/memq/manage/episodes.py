"""``episodes`` (HiMem / Nemori): a message stream is cut into episodes; each is stored as an
``episode`` record (title, summary, its messages in ``payload.messages``) and the facts derived from it
as ``note`` records linked to it (``episode`` link note → episode, ``note`` links episode → notes).

Boundaries (``boundary``):

* ``llm`` (default; Nemori's segmenter): one call (operation ``episodes_segment``) returns contiguous
  episodes covering every message, each with title, summary and notes — a gap, overlap or missing tail
  fails validation and is re-asked;
* ``gap``: a new episode starts where consecutive messages' ``valid_from`` are more than
  ``gap_minutes`` apart;
* ``topic``: a new episode starts where a message's cosine to the running mean of the current episode
  falls below ``topic_threshold`` (also cut at ``gap_minutes`` when times are given).

The deterministic boundaries need no LLM. With an LLM they are followed by one call per episode
(operation ``episode_digest``) for the title, summary and notes; without one the episode's text is its
messages and no notes are derived. Episodes are cut at ``max_messages`` messages either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

import numpy as np
from pydantic import Field

from memq.manage.base import BaseManager, ManageContext, ManagerParams, Plan, short
from memq.manage.prompts import EpisodeDigest, digest_prompt, segment_prompt, segments_schema
from memq.manage.reconcile import inherited_metadata, turns
from memq.types import Kind, Link, MemoryRecord, Provenance


class EpisodesManager(BaseManager):
    name = "episodes"
    uses_llm = True

    class Params(ManagerParams):
        boundary: Literal["llm", "gap", "topic"] = Field(default="llm", description="How episodes are cut.")
        gap_minutes: float = Field(
            default=30.0, gt=0, description="A longer pause between messages starts an episode."
        )
        topic_threshold: float = Field(
            default=0.3, ge=-1.0, le=1.0, description="Least cosine to stay in the episode."
        )
        max_messages: int = Field(default=25, ge=1, le=200, description="Longest episode (Nemori: 25).")
        notes: bool = Field(default=True, description="Derive note memories (needs an LLM).")
        max_tokens: int = Field(default=500, ge=16)

    @property
    def requires_llm(self) -> bool:
        return self.params.boundary == "llm"

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        p = self.params
        messages = turns(inputs)
        digests: list[tuple[int, int, EpisodeDigest | None]]
        if p.boundary == "llm":
            llm = ctx.require_llm(self.name)
            answer: Any = llm.structured(
                segment_prompt(messages),
                segments_schema(len(messages)),
                operation="episodes_segment",
                max_tokens=p.max_tokens,
            )
            digests = []
            for ep in answer.episodes:
                for start in range(ep.start, ep.end + 1, p.max_messages):  # over-long episodes are cut
                    end = min(ep.end, start + p.max_messages - 1)
                    digests.append(
                        (start, end, EpisodeDigest(title=ep.title, summary=ep.summary, notes=ep.notes))
                    )
            how = "LLM segmentation"
        else:
            bounds = self._boundaries(inputs, ctx)
            digests = []
            for start, end in bounds:
                digest = None
                if ctx.llm is not None and p.notes:
                    digest = ctx.llm.structured(
                        digest_prompt(messages[start : end + 1]),
                        EpisodeDigest,
                        operation="episode_digest",
                        max_tokens=p.max_tokens,
                    )
                digests.append((start, end, digest))
            how = f"{p.boundary} boundary"
        return self._write(inputs, messages, digests, how, ctx)

    def _boundaries(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> list[tuple[int, int]]:
        p = self.params
        vectors = ctx.embed([r.text for r in inputs]) if p.boundary == "topic" else None
        gap = timedelta(minutes=p.gap_minutes)
        bounds: list[tuple[int, int]] = []
        start = 0
        centroid: np.ndarray | None = None if vectors is None else vectors[0].copy()
        for i in range(1, len(inputs)):
            a, b = inputs[i - 1].valid_from, inputs[i].valid_from
            cut = a is not None and b is not None and b - a > gap
            if vectors is not None and centroid is not None and not cut:
                norm = float(np.linalg.norm(centroid)) or 1.0
                cut = float(np.dot(vectors[i], centroid / norm)) < p.topic_threshold
            cut = cut or i - start >= p.max_messages
            if cut:
                bounds.append((start, i - 1))
                start = i
                centroid = None if vectors is None else vectors[i].copy()
            elif vectors is not None and centroid is not None:
                centroid = centroid + vectors[i]
        bounds.append((start, len(inputs) - 1))
        return bounds

    def _write(
        self,
        inputs: Sequence[MemoryRecord],
        messages: list[tuple[str, str]],
        digests: list[tuple[int, int, EpisodeDigest | None]],
        how: str,
        ctx: ManageContext,
    ) -> Plan:
        plan = Plan()
        base = inherited_metadata(inputs)
        for start, end, digest in digests:
            part = inputs[start : end + 1]
            lines = [f"{role}: {text}" for role, text in messages[start : end + 1]]
            title = digest.title if digest else short(part[0].text, 60)
            text = f"{digest.title}: {digest.summary}" if digest else "\n".join(lines)
            valid_from = next((r.valid_from for r in part if r.valid_from), None)
            sources = list(dict.fromkeys(m for r in part for m in r.provenance.source_message_ids))
            payload = {
                "title": title,
                "summary": digest.summary if digest else None,
                "messages": [{"role": role, "text": t} for role, t in messages[start : end + 1]],
                "start": start,
                "end": end,
            }
            episode = ctx.new_record(
                text if len(text) <= ctx.config.max_text_chars else text[: ctx.config.max_text_chars],
                kind=Kind.EPISODE.value,
                payload=payload,
                metadata=base,
                provenance=Provenance(source=self.actor, source_message_ids=sources),
                valid_from=valid_from,
            )
            notes = []
            if digest and self.params.notes:
                for note in dict.fromkeys(digest.notes):
                    notes.append(
                        ctx.new_record(
                            note,
                            kind=Kind.NOTE.value,
                            metadata=base,
                            links=[Link(target=episode.id, type="episode")],
                            provenance=Provenance(
                                source=self.actor, parent_ids=[episode.id], source_message_ids=sources
                            ),
                            valid_from=valid_from,
                        )
                    )
            episode.links = [Link(target=n.id, type="note") for n in notes]
            plan.insert(
                episode,
                "EPISODE",
                f"episodes: messages {start}-{end} ({how}), {len(notes)} note(s): {short(title, 60)!r}",
            )
            for n in notes:
                plan.insert(n, "ADD", f"episodes: note derived from episode {episode.id}")
        return plan
