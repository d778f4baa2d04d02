"""memq — memory for LLM agents that learns which memories help.

Start with :class:`Memory` (sync) or :class:`AsyncMemory`; records, scopes and retrievals are in
:mod:`memq.types`, errors in :mod:`memq.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memq._lazy import lazy_attributes
from memq.errors import (
    ConflictError,
    DimensionMismatchError,
    EmbeddingError,
    EmptyTextError,
    ExpiredError,
    FilterError,
    InvalidInputError,
    MemqError,
    NotFoundError,
    ScopeError,
    StoreError,
    TextTooLongError,
)

if TYPE_CHECKING:
    from memq.config import MemoryConfig
    from memq.learn.forgetting import ForgettingPolicy
    from memq.memory import AsyncMemory, Memory
    from memq.retrieve.pipeline import SearchOptions
    from memq.types import (
        HistoryEvent,
        HistoryOp,
        Hit,
        Kind,
        Link,
        MemoryRecord,
        NewRecord,
        Page,
        Provenance,
        Retrieval,
        Scope,
        SignalScores,
        StoreStats,
        Utility,
    )

# The rest of the API is imported on first use (PEP 562), so that `import memq.cli` for `memq --help`
# does not load numpy, pydantic models and the whole stack.
_LAZY = {
    "AsyncMemory": "memq.memory",
    "Memory": "memq.memory",
    "MemoryConfig": "memq.config",
    "ForgettingPolicy": "memq.learn.forgetting",
    "SearchOptions": "memq.retrieve.pipeline",
    **dict.fromkeys(
        [
            "HistoryEvent",
            "HistoryOp",
            "Hit",
            "Kind",
            "Link",
            "MemoryRecord",
            "NewRecord",
            "Page",
            "Provenance",
            "Retrieval",
            "Scope",
            "SignalScores",
            "StoreStats",
            "Utility",
        ],
        "memq.types",
    ),
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)

__version__ = "0.1.0"

__all__ = [
    "AsyncMemory",
    "ConflictError",
    "DimensionMismatchError",
    "EmbeddingError",
    "EmptyTextError",
    "ExpiredError",
    "FilterError",
    "ForgettingPolicy",
    "HistoryEvent",
    "HistoryOp",
    "Hit",
    "InvalidInputError",
    "Kind",
    "Link",
    "Memory",
    "MemoryConfig",
    "MemoryRecord",
    "MemqError",
    "NewRecord",
    "NotFoundError",
    "Page",
    "Provenance",
    "Retrieval",
    "Scope",
    "ScopeError",
    "SearchOptions",
    "SignalScores",
    "StoreError",
    "StoreStats",
    "TextTooLongError",
    "Utility",
    "__version__",
]
