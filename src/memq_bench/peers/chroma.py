"""chromadb (1.5) as a benchmark peer: a local persistent client, memq's embeddings passed in.

One collection per space (cosine HNSW), created on first use; each document's key is kept in its
metadata. Chroma never embeds anything here: documents and queries are embedded by the memq
embedder and handed over as vectors, so no model is ever fetched. Telemetry is off
(``anonymized_telemetry=False``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.peers.common import import_peer, payload
from memq_bench.systems import BenchDoc, _dir_bytes

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$")


def collection_name(space: str) -> str:
    """A valid chroma collection name for ``space`` (3-63 chars of [A-Za-z0-9._-]); distinct spaces never collide."""
    if not space.strip():
        raise InvalidInputError("space must be a non-empty string")
    if _SAFE.fullmatch(space) and ".." not in space:
        return space
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", space).strip("-_")[:40] or "space"
    return f"{slug}-{hashlib.sha256(space.encode()).hexdigest()[:16]}"


class ChromaSystem:
    """chromadb ``PersistentClient`` in a temporary directory, one cosine collection per space."""

    name = "chroma"

    def __init__(self, embedder: Embedder, *, workdir: str | Path | None = None) -> None:
        os.environ["ANONYMIZED_TELEMETRY"] = "False"
        chromadb, chroma_config = import_peer("chroma", "chromadb", "chromadb.config")
        self.embedder = embedder
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="memq-bench-chroma-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self.client = chromadb.PersistentClient(
            path=str(self._dir / "chroma"),
            settings=chroma_config.Settings(anonymized_telemetry=False, allow_reset=True),
        )
        self._collections: dict[str, Any] = {}
        self._next_id = 0
        self._records = 0

    def _collection(self, space: str, *, create: bool) -> Any:
        got = self._collections.get(space)
        if got is None and create:
            got = self.client.get_or_create_collection(
                name=collection_name(space),
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
            )
            self._collections[space] = got
        return got

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        if not docs:
            return
        collection = self._collection(space, create=True)
        vectors = self.embedder.embed_documents([d.text for d in docs])
        ids = [str(self._next_id + i) for i in range(len(docs))]
        metadatas = [payload(doc) for doc in docs]
        collection.add(ids=ids, embeddings=vectors, documents=[d.text for d in docs], metadatas=metadatas)
        self._next_id += len(docs)
        self._records += len(docs)

    def search(self, space: str, query: str, k: int) -> list[str]:
        if k < 1:
            raise InvalidInputError(f"k must be >= 1, got {k}")
        collection = self._collection(space, create=False)
        if collection is None:
            return []
        n = min(k, collection.count())
        if n == 0:
            return []
        got = collection.query(
            query_embeddings=[self.embedder.embed_query(query)], n_results=n, include=["metadatas"]
        )
        return [str((meta or {}).get("key")) for meta in got["metadatas"][0]]

    def footprint(self) -> dict[str, float]:
        return {"records": float(self._records), "bytes": float(_dir_bytes(self._dir))}

    def close(self) -> None:
        self._collections.clear()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)
