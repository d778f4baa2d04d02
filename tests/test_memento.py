"""memento_q: Memento's learned Q(s, c) read over a similarity-prefiltered pool."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from memq.learn import make_learner
from memq.learn.base import Learner, Outcome, PoolItem, Selection, top_k
from memq.learn.memento import MementoQLearner
from memq.learn.similarity import SimilarityLearner
from memq.types import Utility

D = 384
K = 3


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


class Task:
    """Clusters of cases around random unit centres; a hidden 40% of the cases are "bad".

    A query comes from one cluster; a shown case earns credit 1 when it is good *and* from the
    query's cluster (similar), else 0. Similarity cannot see badness; a learned Q can.
    """

    def __init__(self, seed: int = 0, clusters: int = 12, per: int = 8, pool: int = 20) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = unit(self.rng.normal(size=(clusters, D)))
        self.cluster = np.repeat(np.arange(clusters), per)
        noise = unit(self.rng.normal(size=(clusters * per, D)))
        self.cases = unit(self.centres[self.cluster] + 0.8 * noise)
        self.bad = self.rng.random(clusters * per) < 0.4
        self.utils = [Utility() for _ in self.cluster]
        self.pool_size = pool

    def query(self) -> tuple[int, np.ndarray, list[PoolItem]]:
        c = int(self.rng.integers(len(self.centres)))
        x = unit(self.centres[c] + 0.8 * unit(self.rng.normal(size=D)))
        sims = self.cases @ x
        idx = top_k(sims, self.pool_size)
        return c, x, [PoolItem(str(j), float(sims[j]), self.utils[j], vector=self.cases[j]) for j in idx]

    def credits(self, c: int, ids: list[str]) -> dict[str, float]:
        return {i: float(not self.bad[int(i)] and self.cluster[int(i)] == c) for i in ids}

    def bad_share(self, ids: list[str]) -> float:
        return float(np.mean([self.bad[int(i)] for i in ids]))


def feed(learner: MementoQLearner, task: Task, steps: int) -> list[Selection]:
    out = []
    for _ in range(steps):
        c, x, pool = task.query()
        sel = learner.select(x, pool, K, task.rng)
        learner.observe(Outcome(x, pool, sel.ids, set(), 0.0, task.credits(c, sel.ids)))
        out.append(sel)
    return out


@pytest.fixture(scope="module")
def trained() -> MementoQLearner:
    learner = MementoQLearner(seed=0)
    feed(learner, Task(seed=5), 400)
    assert learner.trained
    return learner


def test_learns_to_rank_bad_cases_below_good_ones() -> None:
    task = Task(seed=0)
    learner, sim = MementoQLearner(seed=0), SimilarityLearner()
    bad_q, bad_sim, auc = [], [], []
    for t in range(1200):
        c, x, pool = task.query()
        sel = learner.select(x, pool, K, task.rng)
        learner.observe(Outcome(x, pool, sel.ids, set(), 0.0, task.credits(c, sel.ids)))
        if t >= 900:  # after some feedback: compare on the same queries
            bad_q.append(task.bad_share(sel.ids))
            bad_sim.append(task.bad_share(sim.select(x, pool, K, task.rng).ids))
            # how often Q ranks a good same-cluster candidate above a bad same-cluster one (AUC)
            mine = [p for p in pool if task.cluster[int(p.id)] == c]
            good = np.array([sel.scores[p.id] for p in mine if not task.bad[int(p.id)]])
            bad = np.array([sel.scores[p.id] for p in mine if task.bad[int(p.id)]])
            if len(good) and len(bad):
                auc.append(float((good[:, None] > bad[None, :]).mean()))
    assert np.mean(auc) > 0.8
    assert np.mean(bad_sim) > 0.25  # similarity shows bad cases often …
    assert np.mean(bad_q) < 0.2 * np.mean(bad_sim)  # … memento_q far less often


def test_cold_start_equals_similarity() -> None:
    task = Task(seed=1)
    learner, sim = MementoQLearner(min_rows=64, train_every=1), SimilarityLearner()
    for _ in range(21):  # 63 rows < min_rows: every round is skipped
        c, x, pool = task.query()
        sel, base = learner.select(x, pool, K, task.rng), sim.select(x, pool, K, task.rng)
        assert sel.ids == base.ids and sel.propensities == [1.0] * K
        assert sel.scores == {p.id: p.sim for p in pool}  # cold scores are the sims
        learner.observe(Outcome(x, pool, sel.ids, set(), 0.0, task.credits(c, sel.ids)))
    assert not learner.trained
    feed(learner, Task(seed=2), 1)  # the 64th row: the first round runs
    assert learner.trained


def test_one_class_buffer_never_trains() -> None:
    task = Task(seed=3)
    learner, sim = MementoQLearner(), SimilarityLearner()
    for _ in range(100):
        _, x, pool = task.query()
        sel = learner.select(x, pool, K, task.rng)
        assert sel.ids == sim.select(x, pool, K, task.rng).ids
        learner.observe(Outcome(x, pool, sel.ids, set(), 1.0, dict.fromkeys(sel.ids, 1.0)))
    assert not learner.trained


def test_same_seed_same_selections_and_scores() -> None:
    runs = [feed(MementoQLearner(seed=7), Task(seed=4), 250) for _ in range(2)]
    assert [s.ids for s in runs[0]] == [s.ids for s in runs[1]]
    assert [s.scores for s in runs[0]] == [s.scores for s in runs[1]]
    other = feed(MementoQLearner(seed=8), Task(seed=4), 250)
    assert [s.scores for s in other] != [s.scores for s in runs[0]]  # the seed matters


def test_state_dict_round_trip_gives_identical_scores(trained: MementoQLearner) -> None:
    state = json.loads(json.dumps(trained.state_dict()))
    assert len(state["buffer_y"]) == min(trained._size, 1000)
    reloaded = MementoQLearner(seed=123)
    reloaded.load_state_dict(state)
    assert reloaded.trained
    task = Task(seed=6)
    for _ in range(30):
        _, x, pool = task.query()
        a, b = trained.select(x, pool, K, task.rng), reloaded.select(x, pool, K, task.rng)
        assert a.ids == b.ids and a.scores == b.scores
    # the state is stable and the reloaded learner keeps learning
    assert json.loads(json.dumps(reloaded.state_dict()))["w1"] == state["w1"]
    feed(reloaded, task, 20)
    assert reloaded._steps_done > trained._steps_done


def test_state_dict_of_a_fresh_learner_round_trips() -> None:
    state = json.loads(json.dumps(MementoQLearner().state_dict()))
    learner = MementoQLearner()
    learner.load_state_dict(state)
    assert learner.dim is None and not learner.trained
    feed(learner, Task(seed=7), 30)
    assert learner.trained


def test_state_rows_truncate_the_buffer() -> None:
    learner = MementoQLearner(state_rows=50)
    feed(learner, Task(seed=8), 40)
    state = learner.state_dict()
    assert len(state["buffer_y"]) == 50
    reloaded = MementoQLearner()
    reloaded.load_state_dict(state)
    # the newest rows are the ones kept
    assert np.array_equal(reloaded._bc[:50], learner._bc[learner._size - 50 : learner._size])


def test_prefilter_is_respected(trained: MementoQLearner) -> None:
    state = trained.state_dict()
    narrow, wide = MementoQLearner(prefilter=5), MementoQLearner(prefilter=1000)
    narrow.load_state_dict(state)
    wide.load_state_dict(state)
    task = Task(seed=9, pool=40)
    for _ in range(40):
        _, x, pool = task.query()
        # give the case the model likes best the lowest similarity: only a wide read may pick it
        q_all = wide.q_values(x, np.stack([p.vector for p in pool]))
        best = int(np.argmax(q_all))
        sims = sorted((p.sim for p in pool), reverse=True)
        others = iter(sims[:-1])
        pool = [
            PoolItem(p.id, sims[-1] if i == best else next(others), p.utility, vector=p.vector)
            for i, p in enumerate(pool)
        ]
        top5 = {pool[int(i)].id for i in top_k(np.array([p.sim for p in pool]), 5)}
        sel = narrow.select(x, pool, K, task.rng)
        assert set(sel.ids) <= top5 and set(sel.scores) == top5
        assert pool[best].id not in sel.ids
        assert wide.select(x, pool, K, task.rng).ids[0] == pool[best].id


def test_empty_pool_and_zero_k(trained: MementoQLearner) -> None:
    x = unit(np.ones(D))
    for learner in (MementoQLearner(), trained):
        assert learner.select(x, [], K, np.random.default_rng(0)) == Selection([], [], {})
    _, x, pool = Task(seed=10).query()
    assert trained.select(x, pool, 0, np.random.default_rng(0)).ids == []


def test_ties_break_by_similarity_and_missing_vectors_fall_back(trained: MementoQLearner) -> None:
    task = Task(seed=11)
    _, x, pool = task.query()
    v = pool[5].vector
    twin_lo = PoolItem("lo", 0.10, Utility(), vector=v)  # identical vectors: identical Q
    twin_hi = PoolItem("hi", 0.20, Utility(), vector=v)
    novec = [PoolItem(f"nv{i}", 0.99 - i / 100, Utility()) for i in range(3)]  # most similar, no vector
    sel = trained.select(x, [twin_lo, *novec, twin_hi], 5, task.rng)
    assert sel.ids == ["hi", "lo", "nv0", "nv1", "nv2"]
    assert sel.scores["hi"] == sel.scores["lo"] == pytest.approx(trained.q_values(x, v[None])[0])
    assert sel.scores["nv1"] == pytest.approx(0.98)
    only_novec = trained.select(x, novec, 2, task.rng)
    assert only_novec.ids == ["nv0", "nv1"]


def test_protocol_hooks_and_threads(trained: MementoQLearner) -> None:
    learner = make_learner("memento_q", seed=1)
    assert isinstance(learner, MementoQLearner) and isinstance(learner, Learner)
    assert (learner.name, learner.version) == ("memento_q", "1")
    u = Utility(q=0.3, stats={"a": 1.0})
    q, stats = learner.update_record(u, 1.0)
    assert q == 0.3 and stats == {"a": 1.0} and stats is not u.stats
    assert learner.on_write(PoolItem("x", 1.0, Utility()), []) == {}
    before = torch.get_num_threads()
    feed(MementoQLearner(train_every=1), Task(seed=12), 30)  # trains every feedback, selects by Q
    assert torch.get_num_threads() == before


def test_bad_arguments() -> None:
    for kwargs in (
        {"prefilter": 0},
        {"dropout": 1.0},
        {"buffer": 10, "min_rows": 64},
        {"lr": 0},
        {"threads": 0},
    ):
        with pytest.raises(ValueError):
            MementoQLearner(**kwargs)
    learner = MementoQLearner()
    feed(learner, Task(seed=13), 3)
    pool = [PoolItem("a", 0.5, Utility(), vector=unit(np.ones(16)))]
    with pytest.raises(ValueError):
        learner.observe(Outcome(unit(np.ones(16)), pool, ["a"], set(), 1.0, {"a": 1.0}))
    with pytest.raises(ValueError):
        MementoQLearner(hidden=8).load_state_dict(learner.state_dict())
