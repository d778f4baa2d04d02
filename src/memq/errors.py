"""Typed errors. Every error memq raises on purpose derives from :class:`MemqError`.

Each carries a stable ``code`` (used by the REST layer and the CLI) and a message that says
what to do about it.
"""

from __future__ import annotations


class MemqError(Exception):
    code = "memq_error"


class InvalidInputError(MemqError, ValueError):
    """The caller passed something memq cannot store or understand."""

    code = "invalid_input"


class EmptyTextError(InvalidInputError):
    code = "empty_text"


class TextTooLongError(InvalidInputError):
    code = "text_too_long"


class ScopeError(InvalidInputError):
    """A scope without a tenant, or an operation across tenants."""

    code = "invalid_scope"


class FilterError(InvalidInputError):
    code = "invalid_filter"


class NotFoundError(MemqError, KeyError):
    code = "not_found"

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "not found"


class ExpiredError(NotFoundError):
    """A retrieval too old for feedback (see MemoryConfig.feedback_window_days)."""

    code = "expired"


class ConflictError(MemqError):
    """The operation is not allowed in the record's current state (e.g. updating a deleted record)."""

    code = "conflict"


class DimensionMismatchError(MemqError):
    """The embedder does not match the vectors already in the store."""

    code = "dimension_mismatch"


class StoreError(MemqError):
    """The backend failed (I/O, lock timeout, connection)."""

    code = "store_error"


class EmbeddingError(MemqError):
    """The embedder failed or returned something unusable."""

    code = "embedding_error"


class LLMError(MemqError):
    """The LLM call failed: transport, timeout, or an answer that never validated.

    memq never turns a failed LLM call into an empty result: the operation that needed it raises
    this (or a subclass) and writes nothing.
    """

    code = "llm_error"


class LLMTimeoutError(LLMError):
    code = "llm_timeout"


class LLMOutputError(LLMError):
    """The model's answer did not validate against the schema after the bounded retries."""

    code = "llm_invalid_output"
