"""An async method that takes the same parameters as its sync twin, written once, on the sync method.

The facades bind both methods from one operation (:mod:`memq.ops.runner`). A class with a hand-written
sync method and an async twin decorates the twin with :func:`async_twin`: it is called with the sync
method's arguments, bound and checked as the sync method would bind them (defaults filled in), and
help(), IDEs and type checkers see the sync method's signature.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
S = TypeVar("S")
R = TypeVar("R")


def async_twin(
    sync: Callable[Concatenate[S, P], R],
) -> Callable[[Callable[..., Awaitable[Any]]], Callable[Concatenate[S, P], Coroutine[Any, Any, R]]]:
    """Decorate ``async def twin(self, **args)``: it runs with ``sync``'s arguments, by name (``sync``
    takes named parameters, no ``*args``/``**kwargs``). Its docstring, when it has none, is ``sync``'s."""
    signature = inspect.signature(sync)

    def decorate(body: Callable[..., Awaitable[Any]]) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        @functools.wraps(body)
        async def twin(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return await body(**bound.arguments)

        twin.__signature__ = signature  # type: ignore[attr-defined]
        twin.__doc__ = body.__doc__ or sync.__doc__
        return twin

    return decorate
