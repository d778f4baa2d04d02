"""What the peer systems share: importing their packages (the ``bench-peers`` extra) and the metadata
each stored document carries."""

from __future__ import annotations

import importlib
from types import ModuleType

from memq.errors import InvalidInputError
from memq_bench.systems import BenchDoc


def import_peer(peer: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` for ``peer``, or a typed error naming the pip extra that provides them."""
    try:
        return [importlib.import_module(m) for m in modules]
    except ImportError as exc:  # pragma: no cover - the bench-peers extra
        raise InvalidInputError(
            f"the {peer} peer needs the bench-peers extra: pip install 'memq[bench-peers]'"
        ) from exc


def payload(doc: BenchDoc) -> dict[str, str | int | float | bool]:
    """A document's metadata as a peer stores it: JSON scalars (anything else as its ``str()``, None
    left out), plus its ``key`` and, when it has one, its time ``when`` (ISO 8601)."""
    meta: dict[str, str | int | float | bool] = {
        k: v if isinstance(v, str | int | float | bool) else str(v)
        for k, v in doc.meta.items()
        if v is not None and k != "key"
    }
    meta["key"] = doc.key
    if doc.when is not None:
        meta["when"] = doc.when.isoformat()
    return meta
