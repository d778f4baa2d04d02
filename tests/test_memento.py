"""memento_q: Memento's learned Q(s, c) over the recipe's prefiltered window (numpy, no torch)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memq.learn import make_learner
from memq.learn.base import Learner, PoolItem, TrainingData, Window, top_k
from memq.learn.memento import MementoQLearner
from memq.retrieve.features import COLUMN, NAMES
from memq.types import Utility

D = 384
K = 3


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Task:
    """Clusters of cases around random unit centres; a hidden 40% of the cases are "bad".

    A query comes from one cluster; its window is the ``pool`` most similar cases in similarity order
    (the recipe, here cosine). A shown case earns credit 1 when it is good *and* from the query's
    cluster, else 0. Similarity cannot see badness; a learned Q can.
    """

    def __init__(self, seed: int = 0, clusters: int = 12, per: int = 8, pool: int = 20) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = unit(self.rng.normal(size=(clusters, D)))
        self.cluster = np.repeat(np.arange(clusters), per)
        noise = unit(self.rng.normal(size=(clusters * per, D)))
        self.cases = unit(self.centres[self.cluster] + 0.8 * noise)
        self.bad = self.rng.random(clusters * per) < 0.4
        self.pool_size = pool

    def query(self) -> tuple[int, Window]:
        c = int(self.rng.integers(len(self.centres)))
        x = unit(self.centres[c] + 0.8 * unit(self.rng.normal(size=D)))
        sims = self.cases @ x
        idx = top_k(sims, self.pool_size)
        feats = np.zeros((len(idx), len(NAMES)))
        feats[:, COLUMN["bias"]] = 1.0
        feats[:, COLUMN["dense"]] = sims[idx]
        return c, Window([str(j) for j in idx], feats, x, self.cases[idx])

    def credits(self, c: int, ids: list[str]) -> list[float]:
        return [float(not self.bad[int(i)] and self.cluster[int(i)] == c) for i in ids]

    def bad_share(self, ids: list[str]) -> float:
        return float(np.mean([self.bad[int(i)] for i in ids]))


class Log:
    """The rows feedback would log: each shown case, its credit, the query (TrainingData)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.y: list[float] = []
        self.group: list[int] = []
        self.queries: list[np.ndarray] = []
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, window: Window, shown: list[str], credits: list[float]) -> None:
        at = {rid: i for i, rid in enumerate(window.ids)}
        for rid, credit in zip(shown, credits, strict=True):
            self.ids.append(rid)
            self.y.append(credit)
            self.group.append(len(self.queries))
            self.vectors[rid] = window.vectors[at[rid]]  # type: ignore[index]
        self.queries.append(window.query_vector)  # type: ignore[arg-type]

    def data(self) -> TrainingData:
        n = len(self.y)
        return TrainingData(
            np.zeros((n, len(NAMES))),
            np.asarray(self.y),
            np.ones(n),
            np.asarray(self.group),
            list(self.ids),
            list(self.queries),
            len(self.queries),
            vectors=dict(self.vectors),
        )


def feed(learner: MementoQLearner, task: Task, steps: int, log: Log | None = None) -> list[list[str]]:
    """``steps`` searches with feedback; the learner fits every ``fit_every`` of them, as memq does."""
    log = log or Log()
    shown = []
    for t in range(steps):
        c, window = task.query()
        sel = learner.select(window, K, task.rng)
        log.add(window, sel.ids, task.credits(c, sel.ids))
        shown.append(sel.ids)
        if (t + 1) % learner.fit_every == 0:
            learner.fit(log.data())
    return shown


@pytest.fixture(scope="module")
def trained() -> MementoQLearner:
    learner = MementoQLearner(seed=0)
    feed(learner, Task(seed=5), 400)
    assert learner.trained
    return learner


def test_learns_to_rank_bad_cases_below_good_ones() -> None:
    task = Task(seed=0)
    learner, log = MementoQLearner(seed=0), Log()
    bad_q, bad_sim, auc = [], [], []
    for t in range(1200):
        c, window = task.query()
        sel = learner.select(window, K, task.rng)
        log.add(window, sel.ids, task.credits(c, sel.ids))
        if (t + 1) % learner.fit_every == 0:
            learner.fit(log.data())
        if t >= 900:  # after some feedback: compare with the recipe's order on the same queries
            bad_q.append(task.bad_share(sel.ids))
            bad_sim.append(task.bad_share(window.ids[:K]))
            q = learner.q_values(window.query_vector, window.vectors)  # type: ignore[arg-type]
            mine = [i for i, rid in enumerate(window.ids) if task.cluster[int(rid)] == c]
            good = np.array([q[i] for i in mine if not task.bad[int(window.ids[i])]])
            bad = np.array([q[i] for i in mine if task.bad[int(window.ids[i])]])
            if len(good) and len(bad):
                auc.append(float((good[:, None] > bad[None, :]).mean()))
    assert np.mean(auc) > 0.8
    assert np.mean(bad_sim) > 0.25  # the recipe shows bad cases often …
    assert np.mean(bad_q) < 0.2 * np.mean(bad_sim)  # … memento_q far less often


def test_cold_start_is_the_recipes_order() -> None:
    task = Task(seed=1)
    learner, log = MementoQLearner(min_rows=64), Log()
    for _ in range(21):  # 63 rows < min_rows: every fit is skipped
        c, window = task.query()
        sel = learner.select(window, K, task.rng)
        assert sel.ids == window.ids[:K] and sel.propensities == [1.0] * K
        log.add(window, sel.ids, task.credits(c, sel.ids))
        learner.fit(log.data())
    assert not learner.trained
    feed(learner, Task(seed=2), 1, log)
    learner.fit(log.data())  # the 64th row: the first steps run
    assert learner.trained


def test_one_class_rows_never_train() -> None:
    task = Task(seed=3)
    learner, log = MementoQLearner(), Log()
    for _ in range(100):
        _, window = task.query()
        sel = learner.select(window, K, task.rng)
        assert sel.ids == window.ids[:K]
        log.add(window, sel.ids, [1.0] * K)
        learner.fit(log.data())
    assert not learner.trained


def test_same_seed_same_selections() -> None:
    runs = [feed(MementoQLearner(seed=7), Task(seed=4), 250) for _ in range(2)]
    assert runs[0] == runs[1]
    a, b = MementoQLearner(seed=7), MementoQLearner(seed=8)
    feed(a, Task(seed=4), 250)
    feed(b, Task(seed=4), 250)
    _, window = Task(seed=40).query()
    assert not np.array_equal(a.score(window), b.score(window))  # the seed matters


def test_state_dict_round_trip_gives_identical_scores(trained: MementoQLearner) -> None:
    state = json.loads(json.dumps(trained.state_dict()))
    reloaded = MementoQLearner(seed=123)
    reloaded.load_state_dict(state)
    assert reloaded.trained and reloaded.version == trained.version
    task = Task(seed=6)
    for _ in range(30):
        _, window = task.query()
        assert np.array_equal(trained.score(window), reloaded.score(window))
    assert json.loads(json.dumps(reloaded.state_dict())) == state  # stable
    feed(reloaded, task, 30)  # and the reloaded learner keeps learning (64 rows reached at step 30)
    assert reloaded.steps_done > trained.steps_done


def test_state_dict_of_a_fresh_learner_round_trips() -> None:
    state = json.loads(json.dumps(MementoQLearner().state_dict()))
    learner = MementoQLearner()
    learner.load_state_dict(state)
    assert learner.dim is None and not learner.trained
    feed(learner, Task(seed=7), 30)
    assert learner.trained


def test_prefilter_is_respected(trained: MementoQLearner) -> None:
    state = trained.state_dict()
    narrow, wide = MementoQLearner(prefilter=5), MementoQLearner(prefilter=1000)
    narrow.load_state_dict(state)
    wide.load_state_dict(state)
    task = Task(seed=9, pool=40)
    for _ in range(40):
        _, window = task.query()
        q = wide.q_values(window.query_vector, window.vectors)  # type: ignore[arg-type]
        best = int(np.argmax(q))
        # move the case the model likes best to the end of the recipe's order: only a wide read sees it
        order = [i for i in range(len(window)) if i != best] + [best]
        moved = Window(
            [window.ids[i] for i in order], window.x[order], window.query_vector, window.vectors[order]
        )  # type: ignore[index]
        sel = narrow.select(moved, K, task.rng)
        assert set(sel.ids) <= set(moved.ids[:5]) and window.ids[best] not in sel.ids
        assert wide.select(moved, K, task.rng).ids[0] == window.ids[best]


def test_empty_window_and_zero_k(trained: MementoQLearner) -> None:
    empty = Window([], np.zeros((0, len(NAMES))), unit(np.ones(D)), np.zeros((0, D), np.float32))
    for learner in (MementoQLearner(), trained):
        assert learner.select(empty, K, np.random.default_rng(0)).ids == []
    _, window = Task(seed=10).query()
    assert trained.select(window, 0, np.random.default_rng(0)).ids == []


def test_ties_keep_the_recipes_order_and_missing_vectors_come_last(trained: MementoQLearner) -> None:
    """Identical vectors tie at the comparison resolution whatever the CPU's float kernels do, and
    keep the recipe's order; a candidate without a vector is ranked after every scored one."""
    _, window = Task(seed=11).query()
    v = window.vectors[5]  # type: ignore[index]
    vectors = np.stack([np.zeros(D, np.float32), v, np.zeros(D, np.float32), v, np.zeros(D, np.float32)])
    feats = window.x[:5].copy()
    w = Window(["nv0", "twin_a", "nv1", "twin_b", "nv2"], feats, window.query_vector, vectors)
    sel = trained.select(w, 5, np.random.default_rng(0))
    assert sel.ids == ["twin_a", "twin_b", "nv0", "nv1", "nv2"]
    assert sel.scores["twin_a"] == sel.scores["twin_b"]
    assert sel.scores["twin_a"] == pytest.approx(trained.q_values(window.query_vector, v[None])[0], abs=1e-6)  # type: ignore[arg-type]


def test_protocol_hooks(trained: MementoQLearner) -> None:
    learner = make_learner("memento_q", seed=1)
    assert isinstance(learner, MementoQLearner) and isinstance(learner, Learner)
    assert (learner.name, learner.version, learner.needs_vectors) == ("memento_q", "0", True)
    u = Utility(q=0.3, stats={"a": 1.0})
    q, stats = learner.update_record(u, 1.0)
    assert q == 0.3 and stats == {"a": 1.0} and stats is not u.stats
    assert learner.on_write(PoolItem("x", 1.0, Utility()), []) == {}


def test_bad_arguments() -> None:
    for kwargs in (
        {"prefilter": 0},
        {"dropout": 1.0},
        {"buffer": 10, "min_rows": 64},
        {"lr": 0},
        {"max_weight": 0.5},
    ):
        with pytest.raises(ValueError):
            MementoQLearner(**kwargs)
    learner = MementoQLearner()
    feed(learner, Task(seed=13), 30)
    with pytest.raises(ValueError):
        MementoQLearner(hidden=8).load_state_dict(learner.state_dict())
    learner.load_state_dict({"format": 1, "w1": []})  # an older memq's state: ignored, learner unchanged
    assert learner.trained
