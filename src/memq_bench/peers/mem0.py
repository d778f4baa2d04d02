"""mem0 (``mem0ai`` 2.2) as a benchmark peer: ``infer=False``, local qdrant, memq's embedder.

* **No LLM.** ``Memory.add(..., infer=False)`` stores each message as is; mem0 still builds an LLM
  client when it starts, so it gets an OpenAI config with a placeholder key that is never used
  (no request is ever sent: the infer=False path never calls the LLM).
* **Same embedder.** mem0's embedder is replaced, after construction, by :class:`MemqEmbedding`,
  an ``EmbeddingBase`` subclass around the very memq embedder object the other systems use.
* **Local vector store.** mem0's default qdrant, in local (serverless) mode in a temporary
  directory, plus mem0's SQLite history file next to it.
* **Offline, telemetry off.** ``MEM0_TELEMETRY`` is forced off before mem0 is imported (and on the
  imported modules); mem0's home folder defaults to a temporary one rather than ``~/.mem0``.

What mem0 does at search time without its optional extras: its 2.x search mixes the semantic score
with BM25 (qdrant sparse vectors from ``fastembed``'s ``Qdrant/bm25``) and entity boosts (spaCy's
``en_core_web_sm``). Both download models from the hub on first use, so offline neither is
installed and mem0 logs that it falls back to semantic similarity only - which is what this peer
measures. ``threshold`` defaults to 0.0 here (mem0's own default is 0.1) so that mem0 returns k
results like every other system; pass ``threshold=0.1`` for mem0's out-of-the-box cut-off.

Spaces map to mem0's ``user_id``; each document's key rides in its metadata and comes back from
search. One :meth:`add` call of n documents is n ``Memory.add`` calls (mem0 stores one message
with one metadata dict per call).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.peers.common import import_peer, payload
from memq_bench.systems import BenchDoc, _dir_bytes

_PLACEHOLDER_KEY = "memq-bench-no-llm"  # mem0 builds an OpenAI client it never calls with infer=False


def _import_mem0() -> Any:
    """Import mem0 with telemetry off and its home folder out of ``~``."""
    os.environ["MEM0_TELEMETRY"] = "False"
    os.environ.setdefault("MEM0_DIR", str(Path(tempfile.gettempdir()) / "memq-bench-mem0-home"))
    mem0, mem0_main, mem0_telemetry = import_peer("mem0", "mem0", "mem0.memory.main", "mem0.memory.telemetry")
    # If mem0 was imported before the variable was set, turn telemetry off where it is read.
    mem0_telemetry.MEM0_TELEMETRY = False
    mem0_main.MEM0_TELEMETRY = False
    # "BM25 disabled" / "spaCy not installed" warnings: expected offline, documented above.
    for name in ("mem0", "mem0.memory.main", "mem0.vector_stores.qdrant", "mem0.utils.spacy_models"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return mem0


def _embedding_class() -> type:
    from mem0.embeddings.base import EmbeddingBase

    class MemqEmbedding(EmbeddingBase):
        """mem0's embedder interface around a memq :class:`Embedder` (the same object, not a copy)."""

        def __init__(self, embedder: Embedder) -> None:
            from mem0.configs.embeddings.base import BaseEmbedderConfig

            super().__init__(BaseEmbedderConfig(embedding_dims=embedder.dim))
            self.embedder = embedder

        def embed(self, text: str, memory_action: Literal["add", "search", "update"] | None = None) -> list:
            if memory_action == "search":
                return self.embedder.embed_query(text).tolist()
            return self.embedder.embed_documents([text])[0].tolist()

        def embed_batch(self, texts: list[str], memory_action: str = "add") -> list:
            if not texts:
                return []
            if memory_action == "search":
                return [self.embedder.embed_query(t).tolist() for t in texts]
            return self.embedder.embed_documents(list(texts)).tolist()

    return MemqEmbedding


class Mem0System:
    """mem0's ``Memory`` with ``infer=False`` on local qdrant, searching with memq's embedder."""

    name = "mem0"

    def __init__(
        self,
        embedder: Embedder,
        *,
        workdir: str | Path | None = None,
        threshold: float = 0.0,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInputError(f"threshold must be in [0, 1], got {threshold}")
        _import_mem0()
        from mem0 import Memory
        from mem0.configs.base import MemoryConfig

        self.embedder = embedder
        self.threshold = threshold
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="memq-bench-mem0-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        config = MemoryConfig(
            vector_store={
                "provider": "qdrant",
                "config": {
                    "collection_name": "bench",
                    "embedding_model_dims": embedder.dim,
                    "path": str(self._dir / "qdrant"),
                    "on_disk": True,
                },
            },
            # Construction-only placeholders: the embedder is swapped below, the LLM is never called.
            embedder={
                "provider": "openai",
                "config": {"api_key": _PLACEHOLDER_KEY, "embedding_dims": embedder.dim},
            },
            llm={"provider": "openai", "config": {"api_key": _PLACEHOLDER_KEY}},
            history_db_path=str(self._dir / "history.db"),
        )
        self.memory = Memory(config)
        self.memory.embedding_model = _embedding_class()(embedder)
        self._records = 0

    @staticmethod
    def _user(space: str) -> str:
        """mem0 refuses ids with whitespace: such a space gets a stable hashed id instead."""
        if not space.strip():
            raise InvalidInputError("space must be a non-empty string")
        if re.search(r"\s", space):
            return "space-" + hashlib.sha256(space.encode()).hexdigest()[:20]
        return space

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        user = self._user(space)
        for doc in docs:  # qdrant payloads are JSON: payload() stores anything else as its str()
            self.memory.add(doc.text, user_id=user, metadata=payload(doc), infer=False)
            self._records += 1

    def search(self, space: str, query: str, k: int) -> list[str]:
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        got = self.memory.search(
            query, top_k=k, filters={"user_id": self._user(space)}, threshold=self.threshold
        )
        return [str((hit.get("metadata") or {}).get("key")) for hit in got.get("results", [])][:k]

    def footprint(self) -> dict[str, float]:
        return {"records": float(self._records), "bytes": float(_dir_bytes(self._dir))}

    def close(self) -> None:
        close = getattr(self.memory, "close", None)
        if close is not None:
            close()
        client = getattr(self.memory.vector_store, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
