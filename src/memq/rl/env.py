"""A gymnasium environment over a real memq store: a policy manages memory, a fixed reader answers.

An episode streams items (facts, dialogue turns) into a fresh scope of a SQLite :class:`memq.Memory`.
At each step the policy sees the incoming item and the K most similar current records of the scope
(:mod:`memq.rl.features`) and picks ADD, NOOP, UPDATE j or INVALIDATE j (:mod:`memq.rl.actions`); the
step applies it through ``Memory.add(item, manager=...)`` — the same plan-then-one-write-batch path
and the same code as the ``learned:PATH`` manager, so the history shows every op. After the last item
a fixed answerer asks the episode's questions: ``Memory.search`` with the default recipe, and a
question counts as answered when a gold answer occurs in the top ``answer_k`` records' texts
(MemoryAgentBench's ``substring_exact_match``). The return is

    R = mean over questions of EM  −  λ · (current records at question time) / (items in the episode)

paid as it accrues: step t's reward is −λ·Δrecords_t / N, and the last step adds the mean EM, so the
rewards sum to R. Episodes come from an :class:`EpisodeSource` by seed, so ``reset(seed=s)`` replays
the same stream; given the same actions the observations and rewards repeat exactly.

Observation (a gymnasium ``Dict``): ``pair`` (K × pair features), ``item`` (item features) and
``action_mask``; the texts (the item and each candidate) are in ``info["texts"]``, and the
:class:`~memq.rl.features.Observation` object in ``env.observation``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from memq.embed.base import Embedder
from memq.manage.base import BaseManager, ManageContext, Plan
from memq.manage.learned import BatchState, apply_action, candidates
from memq.rl._extras import require
from memq.rl.actions import action_features, n_actions
from memq.rl.features import ITEM_FEATURES, PAIR_FEATURES, Observation, observe
from memq.rl.metrics import substring_match
from memq.rl.policy import Policy
from memq.types import MemoryRecord, NewRecord, Scope

gym = require("gymnasium", "memq.rl.env")
spaces = gym.spaces

TENANT = "rl"


@dataclass(frozen=True)
class Item:
    """One unit of the stream (a fact, a turn); ``key`` names it for the caller (e.g. its serial)."""

    text: str
    key: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    valid_from: datetime | None = None


@dataclass(frozen=True)
class Question:
    """A question asked at the end, its acceptable answers, and a tag to report it by (``sh``, ``mh``)."""

    text: str
    answers: tuple[str, ...]
    tag: str = ""


@dataclass(frozen=True)
class Episode:
    id: str
    items: tuple[Item, ...]
    questions: tuple[Question, ...]
    meta: Mapping[str, Any] = field(default_factory=dict)


class EpisodeSource(Protocol):
    """Builds the episode of a seed; the same seed must give the same episode."""

    def episode(self, seed: int) -> Episode: ...


def answer(
    memory: Any, scope: Scope, questions: Sequence[Question], k: int, options: Mapping[str, Any] | None = None
) -> list[bool]:
    """The fixed answerer: does a gold answer occur in the texts of the top ``k`` search results?"""
    out = []
    for q in questions:
        hits = memory.search(q.text, k=k, scope=scope, **dict(options or {})).hits
        out.append(substring_match(q.answers, [h.record.text for h in hits[:k]]))
    return out


class _Peek(Exception):
    def __init__(self, obs: Observation, vector: np.ndarray) -> None:
        super().__init__("observation")
        self.obs, self.vector = obs, vector


class _Observe(BaseManager):
    """Computes the observation inside a managed add (the reads a manager makes) and aborts it by
    raising before the plan exists, so nothing is written: the agent then picks the action."""

    name = "rl"

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        (record,) = inputs
        vector = np.asarray(ctx.embed([record.text])[0], dtype=np.float64)
        raise _Peek(observe(record.text, candidates(ctx, record, vector, self.k), self.k), vector)


class _Chosen(BaseManager):
    """Applies the action the agent chose on the observation it was shown (one item per add)."""

    name = "rl"

    def __init__(self, obs: Observation, action: int, vector: np.ndarray) -> None:
        super().__init__()
        self.obs, self.action, self.vector = obs, action, vector
        self.op = ""

    def plan(self, inputs: Sequence[MemoryRecord], ctx: ManageContext) -> Plan:
        plan = Plan()
        (record,) = inputs
        record.embedding = self.vector.tolist()
        self.op = apply_action(plan, ctx, record, self.vector, self.obs, self.action, BatchState(), who="rl")
        return plan


class MemoryOpsEnv(gym.Env):  # type: ignore[misc]
    """Memory operations on a real store; see the module docstring. Close it to remove its files."""

    metadata = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        source: EpisodeSource,
        embedder: Embedder,
        *,
        k: int = 5,
        record_cost: float = 0.05,
        answer_k: int = 1,
        search_options: Mapping[str, Any] | None = None,
        workdir: str | Path | None = None,
        recycle_records: int = 5_000,
    ) -> None:
        if k < 1 or answer_k < 1 or record_cost < 0:
            raise ValueError("k and answer_k must be >= 1 and record_cost >= 0")
        self.source, self.embedder, self.k = source, embedder, k
        self.record_cost, self.answer_k = record_cost, answer_k
        self.search_options = dict(search_options or {})
        self.recycle_records = recycle_records
        self._own_dir = workdir is None
        self._dir = Path(workdir or tempfile.mkdtemp(prefix="memq-rl-"))
        self._dir.mkdir(parents=True, exist_ok=True)
        self._memory: Any = None
        self._db_index = 0
        self._written = 0  # records written to the current database (it is replaced past recycle_records)
        self._episodes = 0
        self.action_space = spaces.Discrete(n_actions(k))
        self.observation_space = spaces.Dict(
            {
                "pair": spaces.Box(-np.inf, np.inf, (k, len(PAIR_FEATURES)), dtype=np.float32),
                "item": spaces.Box(-np.inf, np.inf, (len(ITEM_FEATURES),), dtype=np.float32),
                "action_mask": spaces.MultiBinary(n_actions(k)),
            }
        )
        self.episode: Episode | None = None
        self.observation: Observation | None = None
        self.t = 0

    # -- the store -----------------------------------------------------------------------------------
    @property
    def memory(self) -> Any:
        if self._memory is None:
            self._open_new_store()
        return self._memory

    def _open_new_store(self) -> None:
        from memq.config import MemoryConfig
        from memq.memory import Memory

        if self._memory is not None:
            self._memory.close()
            for p in self._dir.glob(f"env-{self._db_index}.db*"):
                p.unlink(missing_ok=True)
        self._db_index += 1
        self._written = 0
        config = MemoryConfig(log_retrievals=False)
        self._memory = Memory(self._dir / f"env-{self._db_index}.db", embedder=self.embedder, config=config)

    # -- gymnasium API ---------------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        options = options or {}
        episode = options.get("episode")
        if episode is None:
            episode_seed = seed if seed is not None else int(self.np_random.integers(2**31 - 1))
            episode = self.source.episode(episode_seed)
        if not episode.items:
            raise ValueError(f"episode {episode.id} has no items")
        if self._memory is None or self._written >= self.recycle_records:
            self._open_new_store()  # between episodes only: a database per ~recycle_records writes
        self._episodes += 1
        self.scope = Scope(tenant=TENANT, session=f"ep{self._episodes}")
        self.episode, self.t = episode, 0
        self.records = 0
        self.ops: list[str] = []
        self._observe()
        return self._obs(), self._info()

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.episode is None or self.observation is None or self.t >= len(self.episode.items):
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        action = int(action)
        if not 0 <= action < n_actions(self.k) or not self.observation.mask[action]:
            raise ValueError(f"action {action} is not legal here (mask {self.observation.mask.tolist()})")
        item = self.episode.items[self.t]
        manager = _Chosen(self.observation, action, self._vector)
        result = self.memory.add(self._new_record(item), scope=self.scope, manager=manager)
        delta = sum(d.op == "ADD" for d in result.decisions) - sum(
            d.op == "INVALIDATE" for d in result.decisions
        )
        self._written += sum(d.op == "ADD" for d in result.decisions)
        self.records += delta
        self.ops.append(manager.op)
        n = len(self.episode.items)
        reward = -self.record_cost * delta / n
        self.t += 1
        info: dict[str, Any] = {"op": manager.op}
        terminated = self.t == n
        if terminated:
            got = answer(self.memory, self.scope, self.episode.questions, self.answer_k, self.search_options)
            em = float(np.mean(got)) if got else 0.0
            reward += em
            current = sum(1 for _ in self.memory.iter(scope=self.scope))
            if current != self.records:  # the ops were applied for real: the store must agree
                raise RuntimeError(
                    f"the store holds {current} current records, the env counted {self.records}"
                )
            info.update(self._outcome(got, em))
            self.observation = None
            return self._empty_obs(), float(reward), True, False, info
        self._observe()
        info.update(self._info())
        return self._obs(), float(reward), False, False, info

    def close(self) -> None:
        if self._memory is not None:
            self._memory.close()
            self._memory = None
        if self._own_dir:
            shutil.rmtree(self._dir, ignore_errors=True)

    # -- helpers ---------------------------------------------------------------------------------------
    def _observe(self) -> None:
        assert self.episode is not None
        try:
            self.memory.add(
                self._new_record(self.episode.items[self.t]), scope=self.scope, manager=_Observe(self.k)
            )
        except _Peek as peek:
            self.observation, self._vector = peek.obs, peek.vector
        else:  # pragma: no cover - _Observe always raises
            raise RuntimeError("the observation step wrote to the store")

    @staticmethod
    def _new_record(item: Item) -> NewRecord:
        return NewRecord(
            text=item.text, metadata={"key": item.key, **item.metadata}, valid_from=item.valid_from
        )

    def _obs(self) -> dict[str, np.ndarray]:
        assert self.observation is not None
        o = self.observation
        return {
            "pair": o.pair.astype(np.float32),
            "item": o.item.astype(np.float32),
            "action_mask": o.mask.copy(),
        }

    def _empty_obs(self) -> dict[str, np.ndarray]:
        empty = observe("", [], self.k)
        return {
            "pair": empty.pair.astype(np.float32),
            "item": empty.item.astype(np.float32),
            "action_mask": empty.mask,
        }

    def _info(self) -> dict[str, Any]:
        assert self.observation is not None
        return {
            "t": self.t,
            "texts": {
                "item": self.observation.text,
                "candidates": [c.text for c in self.observation.candidates],
            },
        }

    def _outcome(self, got: Sequence[bool], em: float) -> dict[str, Any]:
        assert self.episode is not None
        by_tag: dict[str, list[bool]] = {}
        for q, ok in zip(self.episode.questions, got, strict=True):
            by_tag.setdefault(q.tag, []).append(ok)
        n = len(self.episode.items)
        return {
            "em": em,
            "em_by_tag": {t: float(np.mean(v)) for t, v in by_tag.items()},
            "correct": list(got),
            "records": self.records,
            "cost": self.record_cost * self.records / n,
            "return": em - self.record_cost * self.records / n,
            "ops": dict(zip(*np.unique(self.ops, return_counts=True), strict=True)) if self.ops else {},
        }


@dataclass
class Rollout:
    """One episode played by a policy: per step the action-feature matrix, mask and action taken."""

    episode_id: str
    z: list[np.ndarray]
    masks: list[np.ndarray]
    actions: list[int]
    rewards: list[float]
    info: dict[str, Any]

    @property
    def ret(self) -> float:
        return float(sum(self.rewards))


def play(
    env: MemoryOpsEnv,
    policy: Policy,
    *,
    seed: int | None = None,
    episode: Episode | None = None,
    rng: np.random.Generator | None = None,
    temperature: float = 1.0,
    forced: Mapping[int, int] | None = None,
    stop_at: int | None = None,
) -> Rollout:
    """Play one episode: sample actions with ``rng`` (temperature T), or greedy when ``rng`` is None.

    ``forced`` maps step → action taken there instead of the policy's; ``stop_at`` stops before that
    step (``env.observation`` is then the observation of step ``stop_at``)."""
    env.reset(seed=seed, options={"episode": episode} if episode is not None else None)
    assert env.episode is not None
    out = Rollout(env.episode.id, [], [], [], [], {})
    forced = forced or {}
    done = False
    while not done and env.t != stop_at:
        obs = env.observation
        assert obs is not None
        z = action_features(obs)
        if env.t in forced:
            action = int(forced[env.t])
        elif rng is None:
            action = int(np.argmax(policy.probs(obs, z=z)))
        else:
            p = policy.probs(obs, temperature, z=z)
            action = int(rng.choice(len(p), p=p))
        _, reward, done, _, info = env.step(action)
        out.z.append(z)
        out.masks.append(obs.mask.copy())
        out.actions.append(action)
        out.rewards.append(reward)
        out.info = info
    return out
