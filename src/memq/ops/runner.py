"""How one operation serves both facades: an I/O-free generator, run by a sync or an async runner.

Every public operation of :class:`memq.Memory` / :class:`memq.AsyncMemory` (add, search, feedback, ...)
is written once, in :mod:`memq.ops`, as a generator that does no I/O itself. It *yields* what it needs
done and is sent back the result:

* ``records = yield db.get(tenant, ids)`` — a :class:`Call` of a store method;
* ``vectors = yield work(embed, texts)`` — :class:`Work`: blocking work that is not the store's
  (embedding, a manager's LLM plan, a model fit, file I/O).

:func:`run_sync` performs each step in the calling thread. :func:`run_async` awaits a native async
store's methods (PostgreSQL), runs a sync store's methods on worker threads (SQLite), and runs
:class:`Work` on a worker thread, so the event loop never blocks. An exception raised by a step is
thrown into the operation where it yielded, so an operation's ``try``/``except``/``finally`` work as
they would around a direct call. This is the pattern of :mod:`memq.store.postgres.steps`, one level up;
docs/architecture.md says why it was chosen over generating the sync code from the async code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar

if TYPE_CHECKING:  # imported where an async operation runs: a sync process never loads asyncio
    import asyncio

T = TypeVar("T")
P = ParamSpec("P")
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class Call:
    """Call the store method ``method`` with these arguments; the operation is sent its result."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Work:
    """Blocking work that is not a store call; the operation is sent ``fn(*args)``.

    With ``store_access``, ``fn`` is called as ``fn(perform, *args)``, where ``perform(call)`` runs a
    store :class:`Call` from the thread ``fn`` runs on (a manager's plan reads the store this way)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    store_access: bool = False


Step = Call | Work
Op = Generator[Step, Any, T]


class _StoreCalls:
    """``db.get(tenant, ids)`` builds ``Call("get", (tenant, ids))``: store calls read like calls."""

    def __getattr__(self, method: str) -> Callable[..., Call]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(_call, method)


def _call(method: str, *args: Any, **kwargs: Any) -> Call:
    return Call(method, args, kwargs)


db = _StoreCalls()


def work(fn: Callable[..., Any], *args: Any) -> Work:
    return Work(fn, args)


def work_with_store(fn: Callable[..., Any], *args: Any) -> Work:
    return Work(fn, args, store_access=True)


class _Run(Generic[T]):
    """One operation being run, for both runners: iterating it gives the steps the operation yields;
    the runner sets ``value`` (or ``error``) to each step's outcome before asking for the next. An error
    is thrown into the operation where it yielded; ``result`` is what the operation returned."""

    __slots__ = ("error", "op", "result", "value")

    def __init__(self, op: Op[T]) -> None:
        self.op = op
        self.value: Any = None
        self.error: BaseException | None = None
        self.result: T | None = None

    def __iter__(self) -> Iterator[Step]:
        while True:
            value, error, self.value, self.error = self.value, self.error, None, None
            try:
                step = self.op.send(value) if error is None else self.op.throw(error)
            except StopIteration as stop:
                self.result = stop.value
                return
            yield step


def run_sync(op: Op[T], store: Any) -> T:
    """Run an operation to its end in this thread."""
    run = _Run(op)
    for step in run:
        try:
            if type(step) is Call:
                run.value = getattr(store, step.method)(*step.args, **step.kwargs)
            elif step.store_access:  # type: ignore[union-attr]
                run.value = step.fn(call_from_thread(store, None), *step.args)  # type: ignore[union-attr]
            else:
                run.value = step.fn(*step.args)  # type: ignore[union-attr]
        except BaseException as exc:  # handed to the operation where it yielded
            run.error = exc
    return run.result  # type: ignore[return-value]


async def run_async(op: Op[T], store: Any) -> T:
    """Run an operation to its end without blocking the event loop."""
    import asyncio

    native = is_async_store(store)
    run = _Run(op)
    for step in run:
        try:
            if type(step) is Call:
                method = getattr(store, step.method)
                if native:
                    run.value = await method(*step.args, **step.kwargs)
                else:
                    run.value = await asyncio.to_thread(method, *step.args, **step.kwargs)
            elif step.store_access:  # type: ignore[union-attr]
                perform = call_from_thread(store, asyncio.get_running_loop())
                run.value = await asyncio.to_thread(step.fn, perform, *step.args)  # type: ignore[union-attr]
            else:
                run.value = await asyncio.to_thread(step.fn, *step.args)  # type: ignore[union-attr]
        except BaseException as exc:
            run.error = exc
    return run.result  # type: ignore[return-value]


def is_async_store(store: Any) -> bool:
    """True for a store whose methods are coroutines (its ``is_async`` class attribute)."""
    return bool(getattr(store, "is_async", False))


def call_from_thread(store: Any, loop: asyncio.AbstractEventLoop | None) -> Callable[[Call], Any]:
    """A function that performs one store :class:`Call` from a worker thread.

    For code that runs as :class:`Work` (a manager's plan) but must read the store: a sync store is
    called directly (it is thread-safe); a native async store's coroutine is scheduled on ``loop``,
    which is free meanwhile, since it is awaiting that very worker thread.
    """

    def perform(step: Call) -> Any:
        method = getattr(store, step.method)
        if loop is None or not is_async_store(store):
            return method(*step.args, **step.kwargs)
        import asyncio

        return asyncio.run_coroutine_threadsafe(method(*step.args, **step.kwargs), loop).result()

    return perform


# -- binding an operation to a facade ------------------------------------------------------------
# An operation is a function ``op(core, *args, **kwargs) -> Op[T]``; a facade method is the same
# function of ``self`` that runs it. ParamSpec keeps the operation's signature for type checkers, and
# ``__signature__``/``__doc__`` keep it for help() and IDEs: the parameters are written once, on the op.


def _signature(op: Callable[..., Any]) -> inspect.Signature:
    sig = inspect.signature(op)
    params = list(sig.parameters.values())
    return sig.replace(
        parameters=[inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params[1:]]
    )


def sync_op(op: Callable[Concatenate[Any, P], Op[T]]) -> Callable[Concatenate[Any, P], T]:
    """``op`` as a method of a sync facade (it runs on ``self.store`` with ``self.core``)."""

    def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return run_sync(op(self.core, *args, **kwargs), self.store)

    method.__name__ = method.__qualname__ = op.__name__
    method.__doc__ = op.__doc__
    method.__signature__ = _signature(op)  # type: ignore[attr-defined]
    return method


def async_op(
    op: Callable[Concatenate[Any, P], Op[T]],
) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """``op`` as a coroutine method of an async facade."""

    async def method(self: Any, *args: P.args, **kwargs: P.kwargs) -> T:
        return await run_async(op(self.core, *args, **kwargs), self.store)

    method.__name__ = method.__qualname__ = op.__name__
    method.__doc__ = op.__doc__
    method.__signature__ = _signature(op)  # type: ignore[attr-defined]
    return method
