"""Optional packages of memq.rl, imported only by the modules that need them."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {"gymnasium": "rl", "optuna": "rl", "trl": "rl-export", "datasets": "rl-export"}


def require(module: str, what: str) -> ModuleType:
    """``import module``, or an ImportError that names the pip extra providing it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], "rl")
        raise ImportError(
            f"{what} needs the {module!r} package: pip install 'memq[{extra}]' ({exc})"
        ) from exc
