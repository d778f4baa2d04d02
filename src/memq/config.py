"""Limits and defaults of a :class:`memq.Memory`. One small model, no factories."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from memq.retrieve.pipeline import SearchOptions


class MemoryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_text_chars: int = Field(default=32_000, ge=1, description="Longest text a record may hold.")
    max_json_bytes: int = Field(default=256_000, ge=2, description="Largest payload or metadata, as JSON.")
    max_batch: int = Field(default=10_000, ge=1, description="Most records one add() may write.")
    max_page: int = Field(default=10_000, ge=1, description="Largest page list() returns; larger asks fail.")
    log_retrievals: bool = Field(default=True, description="Keep each search in the retrieval log.")
    feedback_window_days: float = Field(
        default=30.0, gt=0, description="Feedback on a retrieval older than this is refused (expired)."
    )
    learner_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Constructor parameters per learner name, e.g. {'memrl': {'alpha': 0.2}}."
    )
    capacity: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Most records a scope keeps: after each add (a separate transaction, after the insert "
            "committed), the scope written to is trimmed with forget(capacity)."
        ),
    )
    seed: int = Field(default=0, description="Seed of the policies' random choices (exploration).")
    search: SearchOptions = Field(default_factory=SearchOptions, description="Default search options.")
