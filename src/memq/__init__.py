"""memq — memory for LLM agents that learns which memories help.

Start with :class:`Memory` (sync) or :class:`AsyncMemory`; records, scopes and retrievals are in
:mod:`memq.types`, errors in :mod:`memq.errors`.
"""

from memq.config import MemoryConfig
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
