"""The facade: :class:`Memory` (sync) and :class:`AsyncMemory` (async).

Write path: validate → build version-1 records → embed (one batch) → one store transaction.
Read path: embed query → dense + lexical candidates → fuse/recency/MMR (:mod:`memq.retrieve.pipeline`)
→ a :class:`Retrieval` with an id, kept in the retrieval log for feedback.

Both classes share the pure steps in :class:`_Base`; only the I/O differs. With PostgreSQL the
async class uses psycopg's native async connections; with SQLite, whose driver is sync, it runs
store calls on a dedicated worker thread.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import ValidationError

from memq.config import MemoryConfig
from memq.embed.base import Embedder
from memq.errors import DimensionMismatchError, EmbeddingError, InvalidInputError, NotFoundError
from memq.learn import LEARNERS, Learner, PoolItem, make_learner
from memq.learn.experience import NEIGHBOURS, agreement_deltas
from memq.learn.feedback import check_feedback_args, plan_feedback
from memq.learn.forgetting import ForgettingPolicy, select_evictions
from memq.learn.replay import OffPolicyEstimate, ips_estimate, learner_policy, retrain
from memq.llm.base import LLM, CallStats, Usage
from memq.llm.safety import FLAGS_KEY, injection_flags
from memq.manage import ManageContext, Manager, ManageResult, make_manager
from memq.manage.apply import (
    LoopReader,
    SyncReader,
    Writes,
    build_writes,
    changed_ids,
    without_vectors,
    write_batch,
)
from memq.retrieve.filters import parse_filter
from memq.retrieve.pipeline import SearchOptions, rank
from memq.store import AsyncStore, CandidateQuery, Store, VersionChange, is_postgres_url, open_store
from memq.store.base import Candidate, FeedbackPlan, InsertGroup, PlanFn, StoredLearnerState, WriteBatch
from memq.types import (
    FeedbackRecord,
    HistoryEvent,
    HistoryOp,
    Hit,
    Kind,
    LoggedRetrieval,
    MemoryRecord,
    NewRecord,
    Page,
    PoolEntry,
    Retrieval,
    Scope,
    StoreStats,
    Utility,
    as_utc,
    utcnow,
)
from memq.validate import ScopeLike, build_records, check_text, coerce_scope, next_version, to_new_records

DEFAULT_DB = "memq.db"
EXPORT_FORMAT = "memq-export"
EXPORT_VERSION = 1


def _default_embedder() -> Embedder:
    from memq.embed import default_embedder

    return default_embedder()


class _Base:
    """Configuration and the pure steps shared by the sync and async facades."""

    def __init__(
        self,
        embedder: Embedder | None,
        config: MemoryConfig | str | Path | None,
        scope: ScopeLike | None,
        llm: LLM | str | None = None,
    ) -> None:
        if isinstance(config, str | Path):
            config = MemoryConfig.load(config)
        self.config = config or MemoryConfig()
        self._embedder = embedder
        self.llm: LLM | None = _resolve_llm(llm)
        self.default_scope = None if scope is None else coerce_scope(scope)
        self._space_checked = False
        self._learners: dict[tuple[str, str], Learner] = {}
        # the stored state's updated_at each cached learner matches (None: no stored state yet); a
        # feedback re-reads the state when the store's differs (another instance learned since)
        self._learner_stamps: dict[tuple[str, str], datetime | None] = {}
        self._learner_lock = threading.RLock()  # learners are not thread-safe: one select/observe at a time
        self._rng = np.random.default_rng(self.config.seed)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            if self.config.embedder:
                from memq.embed import embedder_from_spec

                self._embedder = embedder_from_spec(self.config.embedder)
            else:
                self._embedder = _default_embedder()
        return self._embedder

    def _scope(self, scope: ScopeLike | None) -> Scope:
        return coerce_scope(scope, self.default_scope)

    def _check_space(self, space: tuple[str, int] | None) -> None:
        emb = self.embedder
        if space is not None and (space[0] != emb.model_id or space[1] != emb.dim):
            raise DimensionMismatchError(
                f"this store holds vectors of {space[0]!r} ({space[1]}-d) but the embedder is "
                f"{emb.model_id!r} ({emb.dim}-d). Open it with the same embedder, or re-embed it with "
                "`memq reembed` / Memory.reembed(new_embedder)"
            )

    def _embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed_documents(list(texts)), dtype=np.float32)
        if vectors.shape != (len(texts), self.embedder.dim):
            raise EmbeddingError(
                f"the embedder returned shape {vectors.shape}, expected {(len(texts), self.embedder.dim)}"
            )
        if not np.isfinite(vectors).all():
            raise EmbeddingError("the embedder returned NaN or infinite values")
        return vectors

    def _prepare_add(
        self, items: Any, scope: ScopeLike | None, defaults: Mapping[str, Any]
    ) -> tuple[list[MemoryRecord], bool]:
        new, single = to_new_records(items)
        records = build_records(
            new,
            scope=self._scope(scope),
            config=self.config,
            defaults={k: v for k, v in defaults.items() if v is not None},
        )
        for record in records:  # prompt-injection heuristics; memq owns the key (filterable)
            flags = injection_flags(record.text)
            meta = {k: v for k, v in record.metadata.items() if k != FLAGS_KEY}
            record.metadata = {**meta, FLAGS_KEY: flags} if flags else meta
        return records, single

    def _attach(self, records: list[MemoryRecord], vectors: np.ndarray) -> None:
        model_id = self.embedder.model_id
        for record, vector in zip(records, vectors, strict=True):
            record.embedding = vector.tolist()
            record.embedding_model = model_id

    def _options(self, k: int | None, overrides: Mapping[str, Any]) -> SearchOptions:
        data = self.config.search.model_dump()
        data.update({key: v for key, v in overrides.items() if v is not None})
        if k is not None:
            data["k"] = k
        try:
            return SearchOptions.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidInputError(
                f"invalid search option {'.'.join(map(str, err['loc']))}: {err['msg']}"
            ) from exc

    def _query(
        self,
        scope: ScopeLike | None,
        filters: Mapping[str, Any] | None,
        kinds: Sequence[str] | None,
        as_of: datetime | None,
        valid_at: datetime | None,
        include_invalidated: bool,
    ) -> CandidateQuery:
        spec: dict[str, Any] = dict(filters or {})
        if kinds:
            spec = {"and": [spec, {"kind": {"in": list(kinds)}}]} if spec else {"kind": {"in": list(kinds)}}
        return CandidateQuery(
            scope=self._scope(scope),
            filter=parse_filter(spec),
            as_of=None if as_of is None else as_utc(as_of),
            valid_at=None if valid_at is None else as_utc(valid_at),
            include_invalidated=include_invalidated,
        )

    def _forget_plan(
        self, records: Sequence[MemoryRecord], capacity: int, policy: ForgettingPolicy | None
    ) -> list[str]:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 0:
            raise InvalidInputError(f"capacity must be a non-negative integer, got {capacity!r}")
        return select_evictions(records, capacity, policy=policy)

    def _added_scopes(self, records: Sequence[MemoryRecord]) -> list[Scope]:
        """The distinct scopes an add wrote to (capacity is enforced on each)."""
        return list(dict.fromkeys(r.scope for r in records))

    def _limit(self, limit: int) -> int:
        if not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"limit must be a positive integer, got {limit!r}")
        if limit > self.config.max_page:
            raise InvalidInputError(
                f"limit {limit} is over the page limit of {self.config.max_page}; "
                "page through with the returned cursor instead"
            )
        return limit

    def _new_learner(self, name: str) -> Learner:
        return make_learner(name, **self.config.learner_params.get(name, {}))

    def _learned_hits(
        self,
        learner: Learner,
        vector: np.ndarray,
        candidates: Sequence[Candidate],
        records: Mapping[str, MemoryRecord],
        k: int,
    ) -> tuple[list[Hit], list[PoolEntry]]:
        """Let a learner choose k of the dense candidates; the pool and propensities go to the log."""
        pool = [
            PoolItem(
                c.id,
                c.score,
                records[c.id].utility,
                vector=None
                if records[c.id].embedding is None
                else np.asarray(records[c.id].embedding, np.float32),
                answer=None
                if records[c.id].payload.get("answer") is None
                else str(records[c.id].payload["answer"]),
            )
            for c in candidates
            if c.id in records
        ]
        with self._learner_lock:
            sel = learner.select(vector, pool, k, self._rng)
        sims = {p.id: p.sim for p in pool}
        hits = [
            Hit(
                record=records[rid].model_copy(update={"embedding": None}),
                score=float(sel.scores.get(rid, sims[rid])),
                rank=i,
                propensity=float(prop),
            )
            for i, (rid, prop) in enumerate(zip(sel.ids, sel.propensities, strict=True), start=1)
        ]
        entries = [PoolEntry(id=p.id, dense=p.sim, score=sel.scores.get(p.id)) for p in pool]
        return hits, entries

    def _plan(
        self,
        reward: float,
        used: Sequence[str] | None,
        strategy: str,
        accumulate: bool,
        learner: Learner | None,
        vectors: Mapping[str, np.ndarray] | None,
    ) -> PlanFn:
        def plan(
            logged: LoggedRetrieval, current: Mapping[str, Utility], stored: StoredLearnerState | None
        ) -> FeedbackPlan:
            with self._learner_lock:
                if learner is not None and stored is not None and stored.state:
                    learner.load_state_dict(stored.state)  # learn on top of what is stored now
                return plan_feedback(
                    logged,
                    current,
                    reward=reward,
                    used=None if used is None else list(used),
                    strategy=strategy,
                    accumulate=accumulate,
                    now=utcnow(),
                    window_days=self.config.feedback_window_days,
                    learner=learner,
                    vectors=vectors,
                )

        return plan

    def _keep_stamp(self, key: tuple[str, str], learner: Learner, stamp: datetime | None) -> None:
        """After a committed feedback: the cached ``learner`` now matches the stored state of ``stamp``."""
        with self._learner_lock:
            old = self._learner_stamps.get(key)
            if self._learners.get(key) is learner and (old is None or (stamp is not None and stamp > old)):
                self._learner_stamps[key] = stamp

    def _experience_item(
        self,
        task: str,
        answer: str,
        outcome: str,
        reward: float,
        trajectory: Any,
        metadata: Mapping[str, Any] | None,
        nearest: Sequence[Candidate],
        neighbours: Mapping[str, MemoryRecord],
    ) -> NewRecord:
        """The experience to write (see :func:`memq.manage.experience.experience_item`)."""
        from memq.manage.experience import experience_item

        return experience_item(task, answer, outcome, reward, trajectory, metadata, nearest, neighbours)

    # -- managers ----------------------------------------------------------------------------------
    def usage(self) -> Usage:
        """LLM calls, failures, retries, prompt/completion tokens and latency of this memory's LLM,
        in total and by operation (``extract``, ``reconcile``, ...); all zero without an LLM."""
        if self.llm is None:
            return Usage(total=CallStats(), by_operation={})
        return self.llm.usage.snapshot()

    def _check_managed_actor(self, actor: str | None) -> None:
        if actor is not None:
            raise InvalidInputError("a managed add records actor='manager:<name>' itself; do not pass actor")

    def _resolve_manager(self, manager: str | Manager, params: Mapping[str, Any] | None) -> Manager:
        if isinstance(manager, str):
            return make_manager(manager, **dict(params or {}))
        if params:
            raise InvalidInputError("manager_params apply to a manager given by name, not to an instance")
        if not isinstance(manager, Manager):
            raise InvalidInputError(f"manager must be a name or a Manager, not {type(manager).__name__}")
        return manager

    def _manage_context(self, mgr: Manager, scope: Scope, reader: Any) -> ManageContext:
        ctx = ManageContext(scope=scope, config=self.config, reader=reader, llm=self.llm, now=utcnow())
        if mgr.uses_llm and getattr(mgr, "requires_llm", True):
            ctx.require_llm(mgr.name)
        return ctx

    def _writes(
        self, mgr: Manager, plan: Any, current: list[MemoryRecord], tenant: str, seen: Mapping[str, int]
    ) -> Writes:
        return build_writes(
            plan,
            {r.id: r for r in current},
            tenant=tenant,
            actor=f"manager:{mgr.name}",
            config=self.config,
            embed=self._embed_documents,
            model_id=self.embedder.model_id,
            seen=seen,
        )

    def _total_usage(self) -> CallStats:
        return self.usage().total

    def _check_policy_options(self, options: Mapping[str, Any]) -> None:
        """A learned policy ranks dense candidates by its own score: fusion options do not apply."""
        fusion_only = {
            "mode",
            "fusion",
            "weights",
            "link_weight",
            "rrf_k",
            "recency_half_life_days",
            "recency_weight",
            "mmr_lambda",
        }
        ignored = sorted(set(options) & fusion_only)
        if ignored:
            raise InvalidInputError(
                f"{', '.join(ignored)} do not apply to a learned policy, which ranks dense candidates itself"
            )

    def _check_policy(self, name: str) -> None:
        if name not in LEARNERS:
            raise InvalidInputError(
                f"unknown policy {name!r}; use one of {', '.join(LEARNERS)} (or none: hybrid)"
            )


def _resolve_llm(llm: LLM | str | None) -> LLM | None:
    """An LLM instance as given, or one built from a spec string (see :func:`memq.llm.llm_from_spec`)."""
    if llm is None or not isinstance(llm, str):
        if llm is not None and not isinstance(llm, LLM):
            raise InvalidInputError(f"llm must be an LLM or a spec string, not {type(llm).__name__}")
        return llm
    try:
        from memq.llm import llm_from_spec  # type: ignore[attr-defined]
    except ImportError as exc:
        raise InvalidInputError("LLM spec strings need memq's LLM layer: pip install 'memq[llm]'") from exc
    return llm_from_spec(llm)  # type: ignore[no-any-return]


def _usage_delta(after: CallStats, before: CallStats) -> CallStats:
    return CallStats(**{n: getattr(after, n) - getattr(before, n) for n in CallStats.model_fields})


def _export_header(space: tuple[str, int] | None) -> str:
    return json.dumps(
        {
            "type": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "embedding_model": space[0] if space else None,
            "embedding_dim": space[1] if space else None,
        }
    )


def _export_line(row: MemoryRecord | HistoryEvent) -> str:
    if isinstance(row, MemoryRecord):
        return json.dumps({"type": "record", "record": row.model_dump(mode="json")}, ensure_ascii=False)
    return json.dumps(
        {"type": "event", "event": row.model_dump(mode="json", exclude={"record"})}, ensure_ascii=False
    )


def _parse_export(lines: Iterator[str]) -> list[MemoryRecord | HistoryEvent]:
    rows: list[MemoryRecord | HistoryEvent] = []
    header_seen = False
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not header_seen:
                if obj.get("type") != EXPORT_FORMAT:
                    raise InvalidInputError("not a memq export: the first line must be its header")
                if obj.get("version") != EXPORT_VERSION:
                    raise InvalidInputError(f"unsupported export version {obj.get('version')}")
                header_seen = True
            elif obj.get("type") == "record":
                rows.append(MemoryRecord.model_validate(obj["record"]))
            elif obj.get("type") == "event":
                rows.append(HistoryEvent.model_validate(obj["event"]))
            else:
                raise InvalidInputError(f"unknown line type {obj.get('type')!r}")
        except (json.JSONDecodeError, ValidationError, KeyError, AttributeError) as exc:
            raise InvalidInputError(f"line {number} of the import is not valid: {exc}") from exc
        except InvalidInputError as exc:
            raise InvalidInputError(f"line {number}: {exc}") from exc
    if not header_seen:
        raise InvalidInputError("the import is empty: no memq export header")
    # a record version with no event of its own gets an IMPORT event, so history() always has one
    have = {(r.record_id, r.version) for r in rows if isinstance(r, HistoryEvent)}
    extra = [
        HistoryEvent(record_id=r.id, op=HistoryOp.IMPORT, version=r.version, at=r.recorded_at)
        for r in rows
        if isinstance(r, MemoryRecord) and (r.id, r.version) not in have
    ]
    return rows + extra


class Memory(_Base):
    """Agent memory on a store (SQLite file by default, or PostgreSQL).

    >>> mem = Memory("memq.db", scope="acme")              # doctest: +SKIP
    >>> mem.add("Alice moved to Berlin in 2021", metadata={"topic": "travel"})  # doctest: +SKIP
    >>> mem.search("where does Alice live?").records        # doctest: +SKIP
    """

    def __init__(
        self,
        store: Store | str | Path = DEFAULT_DB,
        *,
        embedder: Embedder | None = None,
        config: MemoryConfig | str | Path | None = None,
        scope: ScopeLike | None = None,
        llm: LLM | str | None = None,
    ) -> None:
        super().__init__(embedder, config, scope, llm)
        self.store: Store = open_store(store) if isinstance(store, str | Path) else store

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ensure_space(self) -> None:
        if not self._space_checked:
            self._check_space(self.store.embedding_space())
            self._space_checked = True

    # -- write path --------------------------------------------------------------------------------
    def add(
        self,
        items: Any,
        *,
        scope: ScopeLike | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        actor: str | None = None,
        manager: str | Manager | None = None,
        manager_params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Store one memory (text, dict or NewRecord) or a batch (a list). A batch is one transaction.

        Returns the stored record, or a list of them for a batch. Keyword fields apply to every item
        that does not set them itself.

        ``manager`` (a name from :data:`memq.manage.MANAGERS` or a :class:`memq.manage.Manager`)
        hands the items to a write policy instead: ``dedupe``, ``reconcile``, ``experience``,
        ``insights``, ``notes``, ``episodes`` (or ``append``). It returns a
        :class:`memq.manage.ManageResult` with every decision and the versions written; every write
        is in the history with ``actor="manager:<name>"`` and the decision's reason. All LLM calls and
        embeddings happen before the first write, so an LLMError writes nothing.
        ``manager_params`` configures a manager given by name (e.g. ``{"threshold": 0.9}``).
        """
        defaults = dict(
            kind=kind, metadata=metadata, payload=payload, valid_from=valid_from, valid_to=valid_to
        )
        if manager is not None:
            self._check_managed_actor(actor)
            return self._add_managed(items, scope, defaults, self._resolve_manager(manager, manager_params))
        records, single = self._prepare_add(items, scope, defaults)
        self._ensure_space()
        self._attach(records, self._embed_documents([r.text for r in records]))
        self.store.insert(records, op=HistoryOp.ADD, actor=actor)
        if self.config.capacity is not None:  # a separate transaction, after the insert committed
            for sc in self._added_scopes(records):
                self.forget(self.config.capacity, scope=sc)
        return records[0] if single else records

    def _add_managed(
        self, items: Any, scope: ScopeLike | None, defaults: Mapping[str, Any], mgr: Manager
    ) -> ManageResult:
        inputs, _ = self._prepare_add(items, scope, defaults)
        sc = self._scope(scope)
        self._ensure_space()
        reader = SyncReader(self.store, sc, self._embed_documents)
        ctx = self._manage_context(mgr, sc, reader)
        before = self._total_usage()
        plan = mgr.plan(inputs, ctx)  # every LLM call happens here: an LLMError leaves the store as it was
        used = _usage_delta(self._total_usage(), before)
        # deleted ones too: the store refuses a version of a record deleted since the plan read it
        current = self.store.get(sc.tenant, changed_ids(plan), include_deleted=True, with_embedding=True)
        writes = self._writes(mgr, plan, current, sc.tenant, reader.seen)
        learner = self._learner(sc.tenant, "memq") if writes.experiences else None
        # the whole plan in ONE transaction: any failure (a conflict, a lost connection) writes nothing
        self.store.apply_writes(write_batch(writes, sc.tenant, f"manager:{mgr.name}", learner))
        if self.config.capacity is not None and writes.inserts:
            for written_scope in self._added_scopes([r for _, g in writes.inserts for r in g]):
                self.forget(self.config.capacity, scope=written_scope)
        return ManageResult(
            manager=mgr.name, decisions=plan.decisions, written=without_vectors(writes.records), usage=used
        )

    def update(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        reason: str | None = None,
        actor: str | None = None,
        **changes: Any,
    ) -> MemoryRecord:
        """Write a new version with ``changes`` (text, kind, payload, metadata, valid_from, valid_to,
        links, provenance); the old version is expired, not lost (see :meth:`history`)."""
        if not changes:
            raise InvalidInputError("update() needs at least one field to change")
        sc = self._scope(scope)
        current = self._current(sc, record_id, with_embedding=True)
        new = next_version(current, changes, self.config)
        if "text" in changes and new.text != current.text:
            self._ensure_space()
            self._attach([new], self._embed_documents([new.text]))
        return self.store.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.UPDATE, actor=actor, reason=reason)
        )

    def invalidate(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        at: datetime | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> MemoryRecord:
        """End the record's world-time validity at ``at`` (default now). It stays stored and searchable
        with ``include_invalidated=True`` or ``valid_at`` before ``at``."""
        sc = self._scope(scope)
        current = self._current(sc, record_id, with_embedding=True)
        end = as_utc(at) if at else utcnow()
        if current.valid_from and end <= current.valid_from:
            raise InvalidInputError("cannot invalidate a record before it became valid")
        new = next_version(current, {"valid_to": end}, self.config)
        return self.store.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.INVALIDATE, actor=actor, reason=reason)
        )

    def delete(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        """Soft delete: hidden from search and list, kept in history and as-of queries."""
        self.store.delete(self._scope(scope).tenant, record_id, actor=actor, reason=reason)

    def purge(self, record_ids: str | Sequence[str], *, scope: ScopeLike | None = None) -> int:
        """Hard delete for erasure requests: every version, vector, lexical entry, link, utility
        row and history event of these records. Returns how many records were removed."""
        ids = [record_ids] if isinstance(record_ids, str) else list(record_ids)
        return self.store.purge(self._scope(scope).tenant, ids)

    # -- budgeted forgetting -------------------------------------------------------------------------
    def forget(
        self, capacity: int, *, scope: ScopeLike | None = None, policy: ForgettingPolicy | None = None
    ) -> list[str]:
        """Archive the records of ``scope`` with the lowest keep score (see
        :mod:`memq.learn.forgetting`) until at most ``capacity`` remain; returns the archived ids.

        The scope's records are its current versions, valid or invalidated (an invalidated record
        still takes space and can still be searched with ``include_invalidated``). Archived records
        are hidden like deleted ones, listed by :meth:`archived` and brought back by :meth:`restore`.
        """
        sc = self._scope(scope)
        records = list(self.iter(scope=sc, include_invalidated=True, limit=self.config.max_page))
        evict = self._forget_plan(records, capacity, policy)
        if not evict:
            return []
        self.store.archive(sc.tenant, evict, reason=f"forget: capacity {capacity}", actor="memq.forget")
        return evict

    def archived(
        self, *, scope: ScopeLike | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """One page of archived records of ``scope`` (latest version each), in id order."""
        query = CandidateQuery(scope=self._scope(scope), include_invalidated=True)
        return self.store.list_archived(query, cursor=cursor, limit=self._limit(limit))

    def restore(self, record_id: str, *, scope: ScopeLike | None = None) -> MemoryRecord:
        """Bring an archived record back as a new current version (same text, metadata, vector).

        NotFoundError for an unknown record, ConflictError for one that is not archived."""
        return self.store.restore(self._scope(scope).tenant, record_id)

    # -- read path ---------------------------------------------------------------------------------
    def search(
        self,
        query: str,
        *,
        scope: ScopeLike | None = None,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        as_of: datetime | None = None,
        valid_at: datetime | None = None,
        include_invalidated: bool = False,
        explain: bool | None = None,
        policy: str | None = None,
        **options: Any,
    ) -> Retrieval:
        """Find the records most relevant to ``query``.

        ``filters`` uses the filter language of :mod:`memq.retrieve.filters`; ``as_of`` asks what memq
        knew at a system time, ``valid_at`` what held in the world at a time. Other keyword options
        are :class:`SearchOptions` fields (mode, fusion, weights, recency_half_life_days, mmr_lambda, ...).
        ``policy`` names a learner (similarity, memrl, memento_q, memq) that picks k of the dense
        candidates by learned utility instead of the hybrid recipe.
        """
        text = check_text(query, self.config)
        opts = self._options(k, {**options, "explain": explain})
        q = self._query(scope, filters, kinds, as_of, valid_at, include_invalidated)
        vector = None
        if policy is not None:
            self._check_policy_options(options)
            learner = self._learner(q.scope.tenant, policy)
            self._ensure_space()
            vector = np.asarray(self.embedder.embed_query(text), dtype=np.float32)
            cands = self.store.dense_candidates(q, vector, opts.pool)
            records = self.store.visible(q, [c.id for c in cands], with_embedding=True)
            hits, pool = self._learned_hits(learner, vector, cands, records, opts.k)
            retrieval = Retrieval(
                query=text, scope=q.scope, k=opts.k, policy=policy, policy_version=learner.version, hits=hits
            )
        else:
            signals = {}
            if opts.mode in ("hybrid", "dense"):
                self._ensure_space()
                vector = np.asarray(self.embedder.embed_query(text), dtype=np.float32)
                signals["dense"] = self.store.dense_candidates(q, vector, opts.pool)
            if opts.mode in ("hybrid", "lexical"):
                signals["lexical"] = self.store.lexical_candidates(q, text, opts.pool)
            ids = list(dict.fromkeys(c.id for cands in signals.values() for c in cands))
            records = self.store.visible(q, ids, with_embedding=opts.mmr_lambda is not None)
            hits = rank(signals, records, opts, utcnow())
            retrieval = Retrieval(query=text, scope=q.scope, k=opts.k, policy=opts.policy, hits=hits)
            pool = _pool_entries(signals) if self.config.log_retrievals else []
        if self.config.log_retrievals:
            self.store.log_retrieval(
                retrieval,
                pool=pool,
                query_vector=vector,
                embedding_model=None if vector is None else self.embedder.model_id,
            )
        return retrieval

    def _learner(self, tenant: str, name: str) -> Learner:
        """The tenant's learner of this name, with its state loaded from the store once per Memory."""
        self._check_policy(name)
        key = (tenant, name)
        if key not in self._learners:
            learner = self._new_learner(name)
            stamped = self.store.learner_state_stamped(tenant, name)
            if stamped and stamped[0]:
                learner.load_state_dict(stamped[0])
            self._learners[key] = learner
            self._learner_stamps[key] = None if stamped is None else stamped[1]
        return self._learners[key]

    def feedback(
        self,
        retrieval_id: str,
        reward: float,
        *,
        used: Sequence[str] | None = None,
        credit: str | None = None,
        accumulate: bool = False,
        scope: ScopeLike | None = None,
    ) -> FeedbackRecord:
        """Report the reward a retrieval earned; the shown records' utility learns from it.

        ``credit``: ``shown`` (every shown record gets the reward; the default without ``used``),
        ``used`` (only the ids in ``used``; the default when ``used`` is given) or ``rank``
        (position-discounted). A second feedback on one retrieval is refused unless
        ``accumulate=True``. Utilities, the log entry and the learner's state change in one transaction.
        """
        strategy = check_feedback_args(reward, used, credit)
        tenant = self._scope(scope).tenant
        logged = self.store.get_retrieval(tenant, retrieval_id)
        learner = self._learner(tenant, logged.policy) if logged.policy in LEARNERS else None
        vectors = None
        if learner is not None and learner.name == "memento_q":
            got = self.store.get(tenant, [s.id for s in logged.shown], with_embedding=True)
            vectors = {r.id: np.asarray(r.embedding, np.float32) for r in got if r.embedding is not None}
        key = (tenant, logged.policy)
        try:
            plan = self.store.apply_feedback(
                tenant,
                retrieval_id,
                self._plan(reward, used, strategy, accumulate, learner, vectors),
                learner=None if learner is None else learner.name,
                known_stamp=self._learner_stamps.get(key),
            )
        except BaseException:
            self._learners.pop(key, None)  # reload the learner's committed state
            self._learner_stamps.pop(key, None)
            raise
        if learner is not None:
            self._keep_stamp(key, learner, plan.learner_stamp)
        return plan.feedback

    def retrieval(self, retrieval_id: str, *, scope: ScopeLike | None = None) -> LoggedRetrieval:
        """A search as the retrieval log keeps it (pool, shown, propensities, feedback)."""
        return self.store.get_retrieval(self._scope(scope).tenant, retrieval_id)

    def remember_experience(
        self,
        task: str,
        answer_or_plan: str,
        outcome: str,
        reward: float,
        trajectory: Any = None,
        *,
        scope: ScopeLike | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryRecord:
        """Write an ``experience`` record for an agent loop (MemRL / Memento).

        The task text is what gets embedded and searched; answer, outcome, reward and trajectory go to
        the payload. A new task whose nearest stored experience task has cosine ≥ 0.9 joins that
        experience's task key (``payload.task_key``, and a ``same_task`` link), as MemRL merges keys.
        """
        sc = self._scope(scope)
        check_text(task, self.config)
        self._ensure_space()
        vector = np.asarray(self.embedder.embed_query(task), dtype=np.float32)
        q = self._query(sc, None, [Kind.EXPERIENCE.value], None, None, True)
        nearest = self.store.dense_candidates(q, vector, NEIGHBOURS)
        neighbours = {r.id: r for r in self.store.get(sc.tenant, [c.id for c in nearest])}
        item = self._experience_item(
            task, answer_or_plan, outcome, reward, trajectory, metadata, nearest, neighbours
        )
        records, _ = self._prepare_add(item, sc, {})
        self._attach(records, self._embed_documents([r.text for r in records]))
        learner = self._learner(sc.tenant, "memq")
        record, batch = _experience_batch(sc.tenant, records, learner, nearest, neighbours)
        self.store.apply_writes(batch)
        if self.config.capacity is not None:
            self.forget(self.config.capacity, scope=sc)
        return record

    def _logs(self, tenant: str, since: datetime | None) -> list[LoggedRetrieval]:
        """Every logged retrieval with feedback, oldest first (paged by creation time)."""
        logs: list[LoggedRetrieval] = []
        seen: set[str] = set()
        while True:
            batch = self.store.list_retrievals(tenant, since=since, limit=1000, with_feedback=True)
            fresh = [b for b in batch if b.id not in seen]
            logs.extend(fresh)
            seen.update(b.id for b in fresh)
            if len(batch) < 1000 or not fresh:
                return logs
            since = batch[-1].created_at

    def prune_log(
        self, older_than_days: float, *, scope: ScopeLike | None = None, all_tenants: bool = False
    ) -> int:
        """Delete logged retrievals older than ``older_than_days``; feedback on them is then refused."""
        if older_than_days < 0:
            raise InvalidInputError("older_than_days must be >= 0")
        before = utcnow() - timedelta(days=older_than_days)
        return self.store.prune_retrievals(before, None if all_tenants else self._scope(scope).tenant)

    def replay(self, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None) -> int:
        """Re-train a learner from scratch on the logged feedback of this tenant, and save its state."""
        self._check_policy(policy)
        tenant = self._scope(scope).tenant
        learner = self._new_learner(policy)
        count = retrain(learner, self._logs(tenant, since))
        stamp = self.store.save_learner_state(tenant, policy, learner.state_dict())
        with self._learner_lock:
            self._learners[(tenant, policy)] = learner
            self._learner_stamps[(tenant, policy)] = stamp
        return count

    def evaluate(
        self, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
    ) -> OffPolicyEstimate:
        """Off-policy value (IPS and self-normalised IPS) of a learner, as it is now, on the logged feedback."""
        tenant = self._scope(scope).tenant
        logs = self._logs(tenant, since)
        ids = list({s.id for log in logs for s in log.shown} | {p.id for log in logs for p in log.pool})
        records = {r.id: r for r in self.store.get(tenant, ids, include_deleted=True)}
        utilities = {rid: r.utility for rid, r in records.items()}
        return ips_estimate(
            logs, learner_policy(self._learner(tenant, policy), utilities, seed=self.config.seed)
        )

    def get(
        self, record_id: str, *, scope: ScopeLike | None = None, include_deleted: bool = False
    ) -> MemoryRecord:
        found = self.store.get(self._scope(scope).tenant, [record_id], include_deleted=include_deleted)
        if not found:
            raise NotFoundError(f"no record {record_id} in this tenant")
        return found[0]

    def list(
        self,
        *,
        scope: ScopeLike | None = None,
        filters: Mapping[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int = 100,
        as_of: datetime | None = None,
        valid_at: datetime | None = None,
        include_invalidated: bool = False,
    ) -> Page:
        """One page of records in creation order; pass ``page.next_cursor`` for the next one."""
        q = self._query(scope, filters, kinds, as_of, valid_at, include_invalidated)
        return self.store.list(q, cursor=cursor, limit=self._limit(limit))

    def iter(self, **kwargs: Any) -> Iterator[MemoryRecord]:
        """Every record :meth:`list` would return, following cursors."""
        cursor = None
        while True:
            page = self.list(cursor=cursor, **kwargs)
            yield from page.records
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def history(self, record_id: str, *, scope: ScopeLike | None = None) -> list[HistoryEvent]:
        return self.store.history(self._scope(scope).tenant, record_id)

    def stats(self, *, scope: ScopeLike | None = None, all_tenants: bool = False) -> StoreStats:
        return self.store.stats(None if all_tenants else self._scope(scope).tenant)

    def _current(self, scope: Scope, record_id: str, *, with_embedding: bool = False) -> MemoryRecord:
        found = self.store.get(scope.tenant, [record_id], with_embedding=with_embedding)
        if not found:
            raise NotFoundError(f"no current record {record_id} in tenant {scope.tenant!r}")
        return found[0]

    # -- export / import / re-embed ----------------------------------------------------------------
    def export(
        self, dest: str | Path | IO[str], *, scope: ScopeLike | None = None, all_tenants: bool = False
    ) -> int:
        """Write every version and history event as JSONL (with vectors). Returns lines written."""
        tenant = None if all_tenants else self._scope(scope).tenant
        lines = 0
        with _open_text(dest, "w") as out:
            out.write(_export_header(self.store.embedding_space()) + "\n")
            for row in self.store.export_rows(tenant):
                out.write(_export_line(row) + "\n")
                lines += 1
        return lines

    def import_(self, src: str | Path | IO[str]) -> int:
        """Load a JSONL export as it is (ids, versions, times kept), in one transaction.

        Returns the number of record versions imported. Fails whole on a bad line or an id clash.
        """
        with _open_text(src, "r") as handle:
            rows = _parse_export(iter(handle))
        return self.store.import_rows(rows)

    def reembed(self, embedder: Embedder, *, batch: int = 256, progress: Any = None) -> int:
        """Re-embed every stored version with ``embedder`` and switch the store to its space."""
        count = 0
        first = True
        batches = list(self.store.iter_embeddable(batch))
        for i, rows in enumerate(batches):
            vectors = np.asarray(embedder.embed_documents([t for _, t in rows]), dtype=np.float32)
            self.store.replace_embeddings(
                embedder.model_id,
                embedder.dim,
                list(zip([k for k, _ in rows], vectors, strict=True)),
                first=first,
                last=i == len(batches) - 1,
            )
            first = False
            count += len(rows)
            if progress is not None:
                progress(len(rows))
        if not batches:
            self.store.replace_embeddings(embedder.model_id, embedder.dim, [], first=True, last=True)
        self._embedder = embedder
        self._space_checked = False
        return count


def _experience_batch(
    tenant: str,
    records: list[MemoryRecord],
    learner: Learner,
    nearest: Sequence[Candidate],
    neighbours: Mapping[str, MemoryRecord],
) -> tuple[MemoryRecord, WriteBatch]:
    """The experience record and its neighbours' agreement statistics, as ONE write batch."""
    record = records[0]
    deltas = agreement_deltas(learner, record, nearest, neighbours)
    return record, WriteBatch(tenant, inserts=[InsertGroup(records)], stats=deltas or {})


def _pool_entries(signals: Mapping[str, Sequence[Candidate]]) -> list[PoolEntry]:
    entries: dict[str, PoolEntry] = {}
    for name, cands in signals.items():
        for c in cands:
            entry = entries.setdefault(c.id, PoolEntry(id=c.id))
            setattr(entry, name, c.score)
    return list(entries.values())


class _TextHandle:
    def __init__(self, target: str | Path | IO[str], mode: str) -> None:
        self.target, self.mode, self._own = target, mode, False

    def __enter__(self) -> IO[str]:
        if isinstance(self.target, str | Path):
            self._own = True
            self._fh = open(self.target, self.mode, encoding="utf-8")
            return self._fh
        return self.target

    def __exit__(self, *exc: object) -> None:
        if self._own:
            self._fh.close()


def _open_text(target: str | Path | IO[str], mode: str) -> _TextHandle:
    return _TextHandle(target, mode)


class AsyncMemory(_Base):
    """The async facade. Same methods as :class:`Memory`, as coroutines.

    Use ``await AsyncMemory.open(url)`` or ``async with AsyncMemory(store) as mem``.
    """

    def __init__(
        self,
        store: AsyncStore,
        *,
        embedder: Embedder | None = None,
        config: MemoryConfig | str | Path | None = None,
        scope: ScopeLike | None = None,
        llm: LLM | str | None = None,
    ) -> None:
        super().__init__(embedder, config, scope, llm)
        self.store = store

    @classmethod
    async def open(cls, url: str | Path = DEFAULT_DB, **kwargs: Any) -> AsyncMemory:
        """Open a store by URL: ``postgresql://...`` natively async, else a SQLite file."""
        text = str(url)
        if is_postgres_url(text):
            from memq.store.postgres import AsyncPostgresStore

            store: AsyncStore = await AsyncPostgresStore.connect(text)
        else:
            from memq.store.threaded import ThreadedAsyncStore

            store = ThreadedAsyncStore(await asyncio.to_thread(open_store, text))
        return cls(store, **kwargs)

    async def close(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _ensure_space(self) -> None:
        if not self._space_checked:
            self._check_space(await self.store.embedding_space())
            self._space_checked = True

    async def add(
        self,
        items: Any,
        *,
        scope: ScopeLike | None = None,
        kind: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        payload: Mapping[str, Any] | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        actor: str | None = None,
        manager: str | Manager | None = None,
        manager_params: Mapping[str, Any] | None = None,
    ) -> Any:
        """See :meth:`Memory.add` (with ``manager``, the manager runs on a worker thread)."""
        defaults = dict(
            kind=kind, metadata=metadata, payload=payload, valid_from=valid_from, valid_to=valid_to
        )
        if manager is not None:
            self._check_managed_actor(actor)
            return await self._add_managed(
                items, scope, defaults, self._resolve_manager(manager, manager_params)
            )
        records, single = self._prepare_add(items, scope, defaults)
        await self._ensure_space()
        vectors = await asyncio.to_thread(self._embed_documents, [r.text for r in records])
        self._attach(records, vectors)
        await self.store.insert(records, op=HistoryOp.ADD, actor=actor)
        if self.config.capacity is not None:  # a separate transaction, after the insert committed
            for sc in self._added_scopes(records):
                await self.forget(self.config.capacity, scope=sc)
        return records[0] if single else records

    async def _add_managed(
        self, items: Any, scope: ScopeLike | None, defaults: Mapping[str, Any], mgr: Manager
    ) -> ManageResult:
        inputs, _ = self._prepare_add(items, scope, defaults)
        sc = self._scope(scope)
        await self._ensure_space()
        reader = LoopReader(self.store, sc, self._embed_documents, asyncio.get_running_loop())
        ctx = self._manage_context(mgr, sc, reader)
        before = self._total_usage()
        plan = await asyncio.to_thread(mgr.plan, inputs, ctx)  # LLM calls: nothing written yet
        used = _usage_delta(self._total_usage(), before)
        # deleted ones too: the store refuses a version of a record deleted since the plan read it
        current = await self.store.get(
            sc.tenant, changed_ids(plan), include_deleted=True, with_embedding=True
        )
        writes = await asyncio.to_thread(self._writes, mgr, plan, current, sc.tenant, reader.seen)
        learner = await self._learner(sc.tenant, "memq") if writes.experiences else None
        # the whole plan in ONE transaction: any failure (a conflict, a lost connection) writes nothing
        await self.store.apply_writes(write_batch(writes, sc.tenant, f"manager:{mgr.name}", learner))
        if self.config.capacity is not None and writes.inserts:
            for written_scope in self._added_scopes([r for _, g in writes.inserts for r in g]):
                await self.forget(self.config.capacity, scope=written_scope)
        return ManageResult(
            manager=mgr.name, decisions=plan.decisions, written=without_vectors(writes.records), usage=used
        )

    async def update(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        reason: str | None = None,
        actor: str | None = None,
        **changes: Any,
    ) -> MemoryRecord:
        if not changes:
            raise InvalidInputError("update() needs at least one field to change")
        sc = self._scope(scope)
        current = await self._current(sc, record_id)
        new = next_version(current, changes, self.config)
        if "text" in changes and new.text != current.text:
            await self._ensure_space()
            self._attach([new], await asyncio.to_thread(self._embed_documents, [new.text]))
        return await self.store.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.UPDATE, actor=actor, reason=reason)
        )

    async def invalidate(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        at: datetime | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> MemoryRecord:
        sc = self._scope(scope)
        current = await self._current(sc, record_id)
        end = as_utc(at) if at else utcnow()
        if current.valid_from and end <= current.valid_from:
            raise InvalidInputError("cannot invalidate a record before it became valid")
        new = next_version(current, {"valid_to": end}, self.config)
        return await self.store.write_version(
            VersionChange(sc.tenant, record_id, new, HistoryOp.INVALIDATE, actor=actor, reason=reason)
        )

    async def delete(
        self,
        record_id: str,
        *,
        scope: ScopeLike | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> None:
        await self.store.delete(self._scope(scope).tenant, record_id, actor=actor, reason=reason)

    async def purge(self, record_ids: str | Sequence[str], *, scope: ScopeLike | None = None) -> int:
        ids = [record_ids] if isinstance(record_ids, str) else list(record_ids)
        return await self.store.purge(self._scope(scope).tenant, ids)

    # -- budgeted forgetting -------------------------------------------------------------------------
    async def forget(
        self, capacity: int, *, scope: ScopeLike | None = None, policy: ForgettingPolicy | None = None
    ) -> list[str]:
        """Archive the records of ``scope`` with the lowest keep score (see
        :mod:`memq.learn.forgetting`) until at most ``capacity`` remain; returns the archived ids.

        The scope's records are its current versions, valid or invalidated (an invalidated record
        still takes space and can still be searched with ``include_invalidated``). Archived records
        are hidden like deleted ones, listed by :meth:`archived` and brought back by :meth:`restore`.
        """
        sc = self._scope(scope)
        query = CandidateQuery(scope=sc, include_invalidated=True)
        records: list[MemoryRecord] = []
        cursor = None
        while True:
            page = await self.store.list(query, cursor=cursor, limit=self.config.max_page)
            records += page.records
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        evict = self._forget_plan(records, capacity, policy)
        if not evict:
            return []
        await self.store.archive(sc.tenant, evict, reason=f"forget: capacity {capacity}", actor="memq.forget")
        return evict

    async def archived(
        self, *, scope: ScopeLike | None = None, cursor: str | None = None, limit: int = 100
    ) -> Page:
        """One page of archived records of ``scope`` (latest version each), in id order."""
        query = CandidateQuery(scope=self._scope(scope), include_invalidated=True)
        return await self.store.list_archived(query, cursor=cursor, limit=self._limit(limit))

    async def restore(self, record_id: str, *, scope: ScopeLike | None = None) -> MemoryRecord:
        """Bring an archived record back as a new current version (same text, metadata, vector).

        NotFoundError for an unknown record, ConflictError for one that is not archived."""
        return await self.store.restore(self._scope(scope).tenant, record_id)

    async def search(
        self,
        query: str,
        *,
        scope: ScopeLike | None = None,
        k: int | None = None,
        filters: Mapping[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        as_of: datetime | None = None,
        valid_at: datetime | None = None,
        include_invalidated: bool = False,
        explain: bool | None = None,
        policy: str | None = None,
        **options: Any,
    ) -> Retrieval:
        text = check_text(query, self.config)
        opts = self._options(k, {**options, "explain": explain})
        q = self._query(scope, filters, kinds, as_of, valid_at, include_invalidated)
        vector = None
        if policy is not None:
            self._check_policy_options(options)
            learner = await self._learner(q.scope.tenant, policy)
            await self._ensure_space()
            vector = np.asarray(await asyncio.to_thread(self.embedder.embed_query, text), dtype=np.float32)
            cands = await self.store.dense_candidates(q, vector, opts.pool)
            records = await self.store.visible(q, [c.id for c in cands], with_embedding=True)
            hits, pool = self._learned_hits(learner, vector, cands, records, opts.k)
            retrieval = Retrieval(
                query=text, scope=q.scope, k=opts.k, policy=policy, policy_version=learner.version, hits=hits
            )
        else:
            signals = {}
            if opts.mode in ("hybrid", "dense"):
                await self._ensure_space()
                vector = np.asarray(
                    await asyncio.to_thread(self.embedder.embed_query, text), dtype=np.float32
                )
                signals["dense"] = await self.store.dense_candidates(q, vector, opts.pool)
            if opts.mode in ("hybrid", "lexical"):
                signals["lexical"] = await self.store.lexical_candidates(q, text, opts.pool)
            ids = list(dict.fromkeys(c.id for cands in signals.values() for c in cands))
            records = await self.store.visible(q, ids, with_embedding=opts.mmr_lambda is not None)
            hits = rank(signals, records, opts, utcnow())
            retrieval = Retrieval(query=text, scope=q.scope, k=opts.k, policy=opts.policy, hits=hits)
            pool = _pool_entries(signals) if self.config.log_retrievals else []
        if self.config.log_retrievals:
            await self.store.log_retrieval(
                retrieval,
                pool=pool,
                query_vector=vector,
                embedding_model=None if vector is None else self.embedder.model_id,
            )
        return retrieval

    async def _learner(self, tenant: str, name: str) -> Learner:
        """The tenant's learner of this name, with its state loaded from the store once per instance."""
        self._check_policy(name)
        key = (tenant, name)
        if key not in self._learners:
            learner = self._new_learner(name)
            stamped = await self.store.learner_state_stamped(tenant, name)
            if stamped and stamped[0]:
                learner.load_state_dict(stamped[0])
            # two coroutines may have loaded it at once: the first one kept is the one everyone uses
            if key not in self._learners:
                self._learners[key] = learner
                self._learner_stamps[key] = None if stamped is None else stamped[1]
        return self._learners[key]

    async def feedback(
        self,
        retrieval_id: str,
        reward: float,
        *,
        used: Sequence[str] | None = None,
        credit: str | None = None,
        accumulate: bool = False,
        scope: ScopeLike | None = None,
    ) -> FeedbackRecord:
        """Report the reward a retrieval earned (see :meth:`Memory.feedback`)."""
        strategy = check_feedback_args(reward, used, credit)
        tenant = self._scope(scope).tenant
        logged = await self.store.get_retrieval(tenant, retrieval_id)
        learner = await self._learner(tenant, logged.policy) if logged.policy in LEARNERS else None
        vectors = None
        if learner is not None and learner.name == "memento_q":
            got = await self.store.get(tenant, [s.id for s in logged.shown], with_embedding=True)
            vectors = {r.id: np.asarray(r.embedding, np.float32) for r in got if r.embedding is not None}
        key = (tenant, logged.policy)
        try:
            plan = await self.store.apply_feedback(
                tenant,
                retrieval_id,
                self._plan(reward, used, strategy, accumulate, learner, vectors),
                learner=None if learner is None else learner.name,
                known_stamp=self._learner_stamps.get(key),
            )
        except BaseException:
            self._learners.pop(key, None)  # reload the learner's committed state
            self._learner_stamps.pop(key, None)
            raise
        if learner is not None:
            self._keep_stamp(key, learner, plan.learner_stamp)
        return plan.feedback

    async def retrieval(self, retrieval_id: str, *, scope: ScopeLike | None = None) -> LoggedRetrieval:
        """A search as the retrieval log keeps it (pool, shown, propensities, feedback)."""
        return await self.store.get_retrieval(self._scope(scope).tenant, retrieval_id)

    async def remember_experience(
        self,
        task: str,
        answer_or_plan: str,
        outcome: str,
        reward: float,
        trajectory: Any = None,
        *,
        scope: ScopeLike | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> MemoryRecord:
        """See :meth:`Memory.remember_experience`."""
        sc = self._scope(scope)
        check_text(task, self.config)
        await self._ensure_space()
        vector = np.asarray(await asyncio.to_thread(self.embedder.embed_query, task), dtype=np.float32)
        q = self._query(sc, None, [Kind.EXPERIENCE.value], None, None, True)
        nearest = await self.store.dense_candidates(q, vector, NEIGHBOURS)
        neighbours = {r.id: r for r in await self.store.get(sc.tenant, [c.id for c in nearest])}
        item = self._experience_item(
            task, answer_or_plan, outcome, reward, trajectory, metadata, nearest, neighbours
        )
        records, _ = self._prepare_add(item, sc, {})
        vectors = await asyncio.to_thread(self._embed_documents, [r.text for r in records])
        self._attach(records, vectors)
        learner = await self._learner(sc.tenant, "memq")
        record, batch = _experience_batch(sc.tenant, records, learner, nearest, neighbours)
        await self.store.apply_writes(batch)
        if self.config.capacity is not None:
            await self.forget(self.config.capacity, scope=sc)
        return record

    async def _logs(self, tenant: str, since: datetime | None) -> list[LoggedRetrieval]:
        logs: list[LoggedRetrieval] = []
        seen: set[str] = set()
        while True:
            batch = await self.store.list_retrievals(tenant, since=since, limit=1000, with_feedback=True)
            fresh = [b for b in batch if b.id not in seen]
            logs.extend(fresh)
            seen.update(b.id for b in fresh)
            if len(batch) < 1000 or not fresh:
                return logs
            since = batch[-1].created_at

    async def prune_log(
        self, older_than_days: float, *, scope: ScopeLike | None = None, all_tenants: bool = False
    ) -> int:
        """See :meth:`Memory.prune_log`."""
        if older_than_days < 0:
            raise InvalidInputError("older_than_days must be >= 0")
        before = utcnow() - timedelta(days=older_than_days)
        return await self.store.prune_retrievals(before, None if all_tenants else self._scope(scope).tenant)

    async def replay(
        self, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
    ) -> int:
        """See :meth:`Memory.replay`."""
        self._check_policy(policy)
        tenant = self._scope(scope).tenant
        learner = self._new_learner(policy)
        count = retrain(learner, await self._logs(tenant, since))
        stamp = await self.store.save_learner_state(tenant, policy, learner.state_dict())
        self._learners[(tenant, policy)] = learner
        self._learner_stamps[(tenant, policy)] = stamp
        return count

    async def evaluate(
        self, policy: str, *, scope: ScopeLike | None = None, since: datetime | None = None
    ) -> OffPolicyEstimate:
        """See :meth:`Memory.evaluate`."""
        tenant = self._scope(scope).tenant
        logs = await self._logs(tenant, since)
        ids = list({s.id for log in logs for s in log.shown} | {p.id for log in logs for p in log.pool})
        records = {r.id: r for r in await self.store.get(tenant, ids, include_deleted=True)}
        utilities = {rid: r.utility for rid, r in records.items()}
        learner = await self._learner(tenant, policy)
        return ips_estimate(logs, learner_policy(learner, utilities, seed=self.config.seed))

    async def get(
        self, record_id: str, *, scope: ScopeLike | None = None, include_deleted: bool = False
    ) -> MemoryRecord:
        found = await self.store.get(self._scope(scope).tenant, [record_id], include_deleted=include_deleted)
        if not found:
            raise NotFoundError(f"no record {record_id} in this tenant")
        return found[0]

    async def list(
        self,
        *,
        scope: ScopeLike | None = None,
        filters: Mapping[str, Any] | None = None,
        kinds: Sequence[str] | None = None,
        cursor: str | None = None,
        limit: int = 100,
        as_of: datetime | None = None,
        valid_at: datetime | None = None,
        include_invalidated: bool = False,
    ) -> Page:
        q = self._query(scope, filters, kinds, as_of, valid_at, include_invalidated)
        return await self.store.list(q, cursor=cursor, limit=self._limit(limit))

    async def history(self, record_id: str, *, scope: ScopeLike | None = None) -> list[HistoryEvent]:
        return await self.store.history(self._scope(scope).tenant, record_id)

    async def stats(self, *, scope: ScopeLike | None = None, all_tenants: bool = False) -> StoreStats:
        return await self.store.stats(None if all_tenants else self._scope(scope).tenant)

    async def export(
        self, dest: str | Path | IO[str], *, scope: ScopeLike | None = None, all_tenants: bool = False
    ) -> int:
        tenant = None if all_tenants else self._scope(scope).tenant
        rows = await self.store.export_rows(tenant)
        space = await self.store.embedding_space()
        with _open_text(dest, "w") as out:
            out.write(_export_header(space) + "\n")
            for row in rows:
                out.write(_export_line(row) + "\n")
        return len(rows)

    async def import_(self, src: str | Path | IO[str]) -> int:
        with _open_text(src, "r") as handle:
            rows = _parse_export(iter(handle))
        return await self.store.import_rows(rows)

    async def _current(self, scope: Scope, record_id: str) -> MemoryRecord:
        found = await self.store.get(scope.tenant, [record_id], with_embedding=True)
        if not found:
            raise NotFoundError(f"no current record {record_id} in tenant {scope.tenant!r}")
        return found[0]
