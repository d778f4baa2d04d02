"""What every operation works with besides the store: config, embedder, LLM, default scope, learners.

One :class:`Core` per facade (a :class:`memq.Memory` or :class:`memq.AsyncMemory` holds ``core`` and
``store``). Its methods are pure or CPU-only (validation, embedding, option parsing); store I/O is
always a step an operation yields (:mod:`memq.ops.runner`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from memq.config import MemoryConfig
from memq.embed.base import Embedder
from memq.errors import DimensionMismatchError, EmbeddingError, InvalidInputError
from memq.llm.base import LLM, CallStats, Usage
from memq.llm.safety import FLAGS_KEY, injection_flags
from memq.ops.runner import Op, db
from memq.retrieve.filters import parse_filter
from memq.retrieve.pipeline import SearchOptions
from memq.store.base import CandidateQuery
from memq.types import MemoryRecord, Scope, as_utc
from memq.validate import ScopeLike, build_records, coerce_scope, to_new_records


class Core:
    """Configuration and the CPU-side steps shared by every operation."""

    def __init__(
        self,
        embedder: Embedder | None,
        config: MemoryConfig | str | Path | None,
        scope: ScopeLike | None,
        llm: LLM | str | None = None,
    ) -> None:
        if isinstance(config, str | Path):
            config = MemoryConfig.load(config)
        self.config = config or MemoryConfig()
        self._embedder = embedder
        self.llm: LLM | None = resolve_llm(llm)
        self.default_scope = None if scope is None else coerce_scope(scope)
        self.space_checked = False
        self.lock = threading.RLock()  # learners are not thread-safe: one select/observe at a time
        self.rng = np.random.default_rng(self.config.seed)
        self.learners: dict[tuple[str, str], Any] = {}  # (tenant, name) -> memq.ops.learning.LearnerEntry
        self.rules: dict[str, Any] = {}  # name -> a learner built from the config (per-record updates)
        self.fitting: set[tuple[str, str]] = set()  # (tenant, name) of the learners being refit now

    # -- embedder ------------------------------------------------------------------------------------
    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from memq.embed import default_embedder, embedder_from_spec

            spec = self.config.embedder
            self._embedder = embedder_from_spec(spec) if spec else default_embedder()
        return self._embedder

    @embedder.setter
    def embedder(self, value: Embedder) -> None:
        self._embedder = value
        self.space_checked = False

    def check_space(self, space: tuple[str, int] | None) -> None:
        emb = self.embedder
        if space is not None and (space[0] != emb.model_id or space[1] != emb.dim):
            raise DimensionMismatchError(
                f"this store holds vectors of {space[0]!r} ({space[1]}-d) but the embedder is "
                f"{emb.model_id!r} ({emb.dim}-d). Open it with the same embedder, or re-embed it with "
                "`memq reembed` / Memory.reembed(new_embedder)"
            )

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise EmbeddingError(
                f"the embedder returned shape {vectors.shape}, expected {(len(texts), self.embedder.dim)}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError("the embedder returned NaN or infinite values")
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return np.asarray(self.embedder.embed_query(text), dtype=np.float32)

    def attach(self, records: Sequence[MemoryRecord], vectors: np.ndarray) -> None:
        model_id = self.embedder.model_id
        for record, vector in zip(records, vectors, strict=True):
            record.embedding = vector.tolist()
            record.embedding_model = model_id

    # -- inputs ----------------------------------------------------------------------------------------
    def scope(self, scope: ScopeLike | None) -> Scope:
        return coerce_scope(scope, self.default_scope)

    def prepare_add(
        self, items: Any, scope: ScopeLike | None, defaults: Mapping[str, Any]
    ) -> tuple[list[MemoryRecord], bool]:
        """Validated version-1 records of ``items`` (and whether a single item was given)."""
        new, single = to_new_records(items)
        records = build_records(
            new,
            scope=self.scope(scope),
            config=self.config,
            defaults={k: v for k, v in defaults.items() if v is not None},
        )
        for record in records:  # prompt-injection heuristics; memq owns the key (filterable)
            flags = injection_flags(record.text)
            meta = {k: v for k, v in record.metadata.items() if k != FLAGS_KEY}
            record.metadata = {**meta, FLAGS_KEY: flags} if flags else meta
        return records, single

    def options(self, k: int | None, overrides: Mapping[str, Any]) -> SearchOptions:
        data = self.config.search.model_dump()
        data.update({key: v for key, v in overrides.items() if v is not None})
        if k is not None:
            data["k"] = k
        try:
            return SearchOptions.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidInputError(
                f"invalid search option {'.'.join(map(str, err['loc']))}: {err['msg']}"
            ) from exc

    def query(
        self,
        scope: ScopeLike | None,
        filters: Mapping[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        as_of: datetime | None = None,
        valid_at: datetime | None = None,
        include_invalidated: bool = False,
    ) -> CandidateQuery:
        spec: dict[str, Any] = dict(filters or {})
        if kinds:
            spec = {"and": [spec, {"kind": {"in": list(kinds)}}]} if spec else {"kind": {"in": list(kinds)}}
        return CandidateQuery(
            scope=self.scope(scope),
            filter=parse_filter(spec),
            as_of=None if as_of is None else as_utc(as_of),
            valid_at=None if valid_at is None else as_utc(valid_at),
            include_invalidated=include_invalidated,
        )

    def limit(self, limit: int) -> int:
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise InvalidInputError(f"limit must be a positive integer, got {limit!r}")
        if limit > self.config.max_page:
            raise InvalidInputError(
                f"limit {limit} is over the page limit of {self.config.max_page}; "
                "page through with the returned cursor instead"
            )
        return limit

    # -- LLM usage -------------------------------------------------------------------------------------
    def usage(self) -> Usage:
        if self.llm is None:
            return Usage(total=CallStats(), by_operation={})
        return self.llm.usage.snapshot()


def ensure_space(core: Core) -> Op[None]:
    """Check once per facade that the store's vectors come from this embedder."""
    if not core.space_checked:
        core.check_space((yield db.embedding_space()))
        core.space_checked = True


def resolve_llm(llm: LLM | str | None) -> LLM | None:
    """An LLM instance as given, or one built from a spec string (see :func:`memq.llm.llm_from_spec`)."""
    if llm is None or not isinstance(llm, str):
        if llm is not None and not isinstance(llm, LLM):
            raise InvalidInputError(f"llm must be an LLM or a spec string, not {type(llm).__name__}")
        return llm
    try:
        from memq.llm import llm_from_spec  # type: ignore[attr-defined]
    except ImportError as exc:
        raise InvalidInputError("LLM spec strings need memq's LLM layer: pip install 'memq[llm]'") from exc
    return llm_from_spec(llm)  # type: ignore[no-any-return]


def usage_delta(after: CallStats, before: CallStats) -> CallStats:
    return CallStats(**{n: getattr(after, n) - getattr(before, n) for n in CallStats.model_fields})
