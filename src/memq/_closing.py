"""The ``with`` protocol of objects that hold a resource until ``close()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self


class Closing:
    """Mixin: ``with obj:`` gives the object and calls its ``close()`` when the block ends."""

    if TYPE_CHECKING:

        def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
