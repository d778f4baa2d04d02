"""Pieces every integration shares: the missing-extra error, and running memq calls from async code."""

from __future__ import annotations

import asyncio
from typing import Any

from memq.errors import InvalidInputError
from memq.memory import AsyncMemory, Memory


def missing_extra(package: str, extra: str, what: str) -> ImportError:
    """The error an integration module raises when its framework is not installed."""
    return ImportError(f"{what} needs the {package!r} package: pip install 'memq[{extra}]'")


def sync_memory(memory: Any, what: str) -> Memory:
    """``memory`` if it is a sync :class:`memq.Memory`; a clear error otherwise."""
    if isinstance(memory, AsyncMemory):
        raise InvalidInputError(
            f"{what} calls memq synchronously: pass a memq.Memory (its async methods run it on a "
            "worker thread), not an AsyncMemory"
        )
    if not isinstance(memory, Memory):
        raise InvalidInputError(f"{what} needs a memq.Memory, not {type(memory).__name__}")
    return memory


async def acall(memory: Memory | AsyncMemory, method: str, *args: Any, **kwargs: Any) -> Any:
    """``memory.<method>(...)`` from async code: awaited on an AsyncMemory, on a worker thread for a
    Memory (memq's SQLite driver is synchronous and embedding is CPU work: either would block the loop)."""
    if isinstance(memory, AsyncMemory):
        return await getattr(memory, method)(*args, **kwargs)
    return await asyncio.to_thread(getattr(memory, method), *args, **kwargs)
