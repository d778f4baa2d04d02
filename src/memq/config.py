"""Limits and defaults of a :class:`memq.Memory`. One small model, no factories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memq.errors import InvalidInputError
from memq.retrieve.pipeline import SearchOptions


class LearningConfig(BaseModel):
    """How searches learn from feedback (docs/algorithms.md §learning, :mod:`memq.learn.promotion`)."""

    model_config = ConfigDict(extra="forbid")

    learner: str | None = Field(
        default="memq",
        description=(
            "The learner a search without ``policy=`` trains: similarity, memrl, memento_q or memq. "
            "None: searches are the recipe alone and feedback updates only the records' utility."
        ),
    )
    promotion: Literal["guarded", "always", "never"] = Field(
        default="guarded",
        description=(
            "guarded: a learner serves a tenant only once its off-policy estimate on that tenant's log "
            "beats the recipe (and stops when it no longer does); always: it serves as soon as it is "
            "asked for (for experiments); never: it learns in the shadow only."
        ),
    )
    explore: float = Field(
        default=0.05,
        ge=0,
        le=0.5,
        description=(
            "Probability that the last shown slot goes to a pick of the policy that is not serving "
            "(only when the two disagree); propensities are logged, so the log can compare them."
        ),
    )
    min_searches: int = Field(
        default=100, ge=1, description="Logged searches with feedback a promotion needs."
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="One-sided level of the promotion bound.")
    history: int = Field(
        default=2000,
        ge=10,
        description="The newest logged searches with feedback a fit and a promotion test read.",
    )
    update_every: int = Field(
        default=50,
        ge=1,
        description="Feedbacks between promotion tests of a learner with no model of its own to fit (memrl).",
    )


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
        default_factory=dict,
        description="Constructor parameters per learner name, e.g. {'memrl': {'alpha': 0.2}}.",
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
    learning: LearningConfig = Field(default_factory=LearningConfig, description="Learning from feedback.")
    embedder: str | None = Field(
        default=None,
        description=(
            "Embedder spec (memq.embed.embedder_from_spec: minilm, hashing:DIM, openai:MODEL:DIM, ...) "
            "used when no embedder is passed; None = the default embedder."
        ),
    )
    # The default write manager (written by `memq evolve`; issue 14). add() without manager= uses it.
    manager: str | None = Field(
        default=None,
        description="Write manager add() uses when none is passed (memq.manage.make_manager name, e.g. "
        "'dedupe' or 'learned:PATH'); None = store items as given.",
    )
    manager_params: dict[str, Any] = Field(
        default_factory=dict, description="Parameters of the default write manager, e.g. {'threshold': 0.9}."
    )

    @classmethod
    def load(cls, path: str | Path) -> MemoryConfig:
        """A config from a JSON file (as :meth:`save` writes it; unknown keys are refused)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise InvalidInputError(f"cannot read the config file {p}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"the config file {p} is not valid JSON: {exc}") from exc
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(map(str, err["loc"])) or "(top level)"
            raise InvalidInputError(
                f"the config file {p} is not a memq config: {where}: {err['msg']}"
            ) from exc

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON (every field, so the file documents itself); returns the path."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
        return p
