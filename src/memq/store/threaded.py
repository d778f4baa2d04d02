"""An async store over a sync one, for backends with no async driver (SQLite).

Every method of the wrapped store becomes a coroutine that runs it on a worker thread, so the event
loop never blocks. The wrapper is generic (no method is forwarded by hand), so it offers exactly the
sync store's methods; the sync stores are thread-safe.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any


class ThreadedAsyncStore:
    is_async = True

    def __init__(self, sync: Any) -> None:
        self.sync = sync
        self.backend: str = sync.backend
        self.location: str = sync.location

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        if name.startswith("_") or not callable(attr):
            return attr
        return _on_thread(attr)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in dir(self.sync) if not n.startswith("_")})


def _on_thread(method: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(method, *args, **kwargs)

    return call
