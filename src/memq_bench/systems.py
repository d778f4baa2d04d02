"""Systems under benchmark behind one small protocol: memq presets here, peers in ``memq_bench.peers``.

A benchmark talks to every system the same way: put documents into an isolated *space* (one LoCoMo
conversation, one LongMemEval haystack), then ask for the keys of the k best documents. The harness
times each call, so latency figures are comparable across systems in the same run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memq.embed.base import Embedder


@dataclass(frozen=True)
class BenchDoc:
    """One unit a benchmark stores: ``key`` is what the gold evidence names (a dia_id, a session id)."""

    key: str
    text: str
    when: datetime | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class BenchSystem(Protocol):
    name: str

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        """Store ``docs`` in ``space`` (one call = one write the system sees, e.g. one turn)."""
        ...

    def search(self, space: str, query: str, k: int) -> list[str]:
        """Keys of the k best documents in ``space``, best first."""
        ...

    def footprint(self) -> dict[str, float]:
        """``records`` and ``bytes`` stored (whatever the system can report)."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class LearningSystem(BenchSystem, Protocol):
    """A system that learns from reward on its last search in a space."""

    def feedback(self, space: str, reward: float, used: Sequence[str] | None = None) -> None: ...


# preset name → (SearchOptions overrides, learner policy or None)
MEMQ_PRESETS: dict[str, tuple[dict[str, Any], str | None]] = {
    "memq": ({}, None),  # the default recipe
    "memq-hybrid": ({"mode": "hybrid"}, None),
    "memq-dense": ({"mode": "dense"}, None),
    "memq-lexical": ({"mode": "lexical"}, None),
    "memq-similarity": ({}, "similarity"),
    "memq-memrl": ({}, "memrl"),
    "memq-memento_q": ({}, "memento_q"),
    "memq-memq": ({}, "memq"),
}


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class MemqSystem:
    """memq on a fresh SQLite file in a temporary directory; one tenant, one session per space."""

    def __init__(
        self,
        preset: str,
        embedder: Embedder,
        *,
        workdir: str | Path | None = None,
        search_options: Mapping[str, Any] | None = None,
        learning: Mapping[str, Any] | None = None,
        learner_params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        from memq.config import MemoryConfig
        from memq.memory import Memory

        if preset not in MEMQ_PRESETS:
            raise ValueError(f"unknown memq preset {preset!r}; choose from {', '.join(MEMQ_PRESETS)}")
        self.name = preset
        self._options, self._policy = MEMQ_PRESETS[preset]
        self._options = {**self._options, **(search_options or {})}
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix=f"memq-bench-{preset}-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        # Only learner presets need the retrieval log (feedback reads it); fixed recipes train nothing.
        config = MemoryConfig(
            log_retrievals=self._policy is not None,
            learning={**dict(learning or {}), "learner": self._policy},
            learner_params={self._policy: dict(learner_params)} if learner_params and self._policy else {},
            seed=seed,
        )
        self.memory = Memory(self._dir / "memq.db", embedder=embedder, config=config, scope="bench")
        self._last: dict[str, str] = {}  # space → last retrieval id
        self._shown: dict[str, dict[str, str]] = {}  # space → key → record id of the last search's hits
        self.served: list[str] = []  # what ranked each search (the recipe's name, or the learner's)
        self._ids: dict[str, dict[str, str]] = {}  # space → doc key → record id
        self._records = 0

    def _scope(self, space: str) -> dict[str, str]:
        return {"tenant": "bench", "session": space}

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        """``meta["follows"]`` (the key of an earlier doc in the space, or of one earlier in the same
        batch) becomes a ``follows`` link; ids are assigned here so links inside a batch resolve."""
        from memq.ids import new_id
        from memq.types import Link, NewRecord

        known = self._ids.setdefault(space, {})
        batch_ids = {d.key: new_id() for d in docs}
        new = []
        for d in docs:
            meta = {k: v for k, v in d.meta.items() if k != "follows"}
            follows = str(d.meta.get("follows"))
            prev = batch_ids.get(follows) if follows in batch_ids else known.get(follows)
            links = [Link(target=prev, type="follows")] if prev else []
            new.append(
                NewRecord(
                    id=batch_ids[d.key],
                    text=d.text,
                    metadata={"key": d.key, **meta},
                    valid_from=d.when,
                    links=links,
                )
            )
        self.memory.add(new, scope=self._scope(space))  # one transaction: all or nothing
        known.update(batch_ids)
        self._records += len(docs)

    def search(self, space: str, query: str, k: int) -> list[str]:
        got = self.memory.search(query, k=k, scope=self._scope(space), policy=self._policy, **self._options)
        self._last[space] = got.id
        self._shown[space] = {str(h.record.metadata.get("key")): h.record.id for h in got.hits}
        self.served.append(got.policy)
        return [str(h.record.metadata.get("key")) for h in got.hits]

    def feedback(self, space: str, reward: float, used: Sequence[str] | None = None) -> None:
        """Reward the last search of ``space``; ``used``: the keys of the shown docs the agent cited
        (``used`` credit), or None (every shown doc gets the reward)."""
        if self._policy is None:
            return  # fixed recipes do not learn
        ids = None if used is None else [self._shown[space][key] for key in used]
        self.memory.feedback(self._last[space], reward, used=ids, scope=self._scope(space))

    def footprint(self) -> dict[str, float]:
        return {"records": float(self._records), "bytes": float(_dir_bytes(self._dir))}

    def close(self) -> None:
        self.memory.close()
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)


SystemFactory = Callable[[Embedder], BenchSystem]


def system_names() -> list[str]:
    """Every system ``--systems`` accepts."""
    return [*MEMQ_PRESETS, "mem0", "chroma"]


def make_system(name: str, embedder: Embedder, **kwargs: Any) -> BenchSystem:
    """Build a system by name; peers import lazily (they are the ``bench-peers`` extra)."""
    if name in MEMQ_PRESETS:
        return MemqSystem(name, embedder, **kwargs)
    if name == "mem0":
        from memq_bench.peers.mem0 import Mem0System

        return Mem0System(embedder, **kwargs)
    if name == "chroma":
        from memq_bench.peers.chroma import ChromaSystem

        return ChromaSystem(embedder, **kwargs)
    raise ValueError(f"unknown system {name!r}; choose from {', '.join(system_names())}")


class Timed:
    """Wraps a system and records the wall time of every add and search call, in milliseconds."""

    def __init__(self, system: BenchSystem) -> None:
        self.system = system
        self.name = system.name
        self.add_ms: list[float] = []
        self.search_ms: list[float] = []

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        started = time.perf_counter()
        self.system.add(space, docs)
        self.add_ms.append((time.perf_counter() - started) * 1000)

    def search(self, space: str, query: str, k: int) -> list[str]:
        started = time.perf_counter()
        keys = self.system.search(space, query, k)
        self.search_ms.append((time.perf_counter() - started) * 1000)
        return keys

    def feedback(self, space: str, reward: float, used: Sequence[str] | None = None) -> None:
        if isinstance(self.system, LearningSystem):
            self.system.feedback(space, reward, used)

    def latency_metrics(self) -> dict[str, float]:
        """``add_ms_p50/p95/p99/mean`` and ``search_ms_...`` plus ``records`` and ``bytes``."""
        from memq_bench.results import percentiles

        return {
            **percentiles(self.add_ms, "add_ms"),
            **percentiles(self.search_ms, "search_ms"),
            **self.system.footprint(),
        }

    def close(self) -> None:
        self.system.close()
