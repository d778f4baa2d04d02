"""memq.rl.env: a gymnasium environment over a real SQLite store (seeded, ops applied for real)."""

from __future__ import annotations

import numpy as np
import pytest

from memq.rl.actions import ADD, NOOP, encode
from memq.rl.env import MemoryOpsEnv, answer, play
from memq.rl.policy import Policy
from memq.types import HistoryOp
from rl_toy import ToyMoves, supersede_policy


@pytest.fixture
def env(embedder, tmp_path):
    e = MemoryOpsEnv(ToyMoves(), embedder, k=3, record_cost=0.05, workdir=tmp_path / "env")
    yield e
    e.close()


def _run(env: MemoryOpsEnv, seed: int, actions: list[int]):
    obs, _ = env.reset(seed=seed)
    seen, rewards = [obs], []
    for a in actions:
        obs, r, done, _, _ = env.step(a)
        seen.append(obs)
        rewards.append(r)
        if done:
            break
    return seen, rewards


def test_spaces_and_observation_shapes(env: MemoryOpsEnv) -> None:
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.action_space.n == 2 + 2 * 3
    assert obs["action_mask"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]  # empty store: ADD / NOOP only
    assert info["texts"]["item"] == env.episode.items[0].text
    with pytest.raises(ValueError, match="not legal"):
        env.step(encode("UPDATE", 0, 3))


def test_reset_is_deterministic_under_a_seed(env: MemoryOpsEnv) -> None:
    policy = supersede_policy(k=3)
    first = play(env, policy, seed=5)
    second = play(env, policy, seed=5)
    assert first.actions == second.actions
    assert first.rewards == second.rewards
    for z1, z2 in zip(first.z, second.z, strict=True):
        np.testing.assert_array_equal(z1, z2)
    other = ToyMoves().episode(6)
    assert env.source.episode(5) != other  # another seed, another stream


def test_ops_are_applied_for_real_with_history(env: MemoryOpsEnv) -> None:
    env.reset(seed=1)
    ep = env.episode
    people = len(ep.questions)
    # items: each person's first city; a hobby; then two of them move
    for _ in range(people):
        env.step(ADD)
    env.step(NOOP)  # the hobby is not stored
    mover = ep.items[people + 1].text.split(" lives")[0]
    slot = next(i for i, c in enumerate(env.observation.candidates) if c.text.startswith(mover))
    old_id = env.observation.candidates[slot].record_id
    env.step(encode("INVALIDATE", slot, 3))
    mover2 = ep.items[people + 2].text.split(" lives")[0]
    slot2 = next(i for i, c in enumerate(env.observation.candidates) if c.text.startswith(mover2))
    upd_id = env.observation.candidates[slot2].record_id
    _, _, done, _, info = env.step(encode("UPDATE", slot2, 3))
    assert done

    mem, scope = env.memory, env.scope
    current = {r.id: r for r in mem.iter(scope=scope)}
    assert len(current) == info["records"] == people  # ADDs, NOOP none, INVALIDATE -1 +1, UPDATE 0
    assert old_id not in current
    assert not any("enjoys" in r.text for r in current.values())
    hist = mem.history(old_id, scope=scope)
    assert [h.op for h in hist] == [HistoryOp.ADD, HistoryOp.INVALIDATE]
    assert all(h.actor == "manager:rl" for h in hist)
    newest = next(r for r in current.values() if any(ln.target == old_id for ln in r.links))
    assert newest.text == ep.items[people + 1].text and newest.links[0].type == "supersedes"
    upd = mem.history(upd_id, scope=scope)
    assert [h.op for h in upd] == [HistoryOp.ADD, HistoryOp.UPDATE]
    assert current[upd_id].text == ep.items[people + 2].text
    assert info["ops"] == {"ADD": people, "INVALIDATE": 1, "NOOP": 1, "UPDATE": 1}


def test_reward_is_exact_match_minus_record_cost(env: MemoryOpsEnv) -> None:
    append = Policy("linear", k=3)
    append.prefer_add(5.0)  # greedy: ADD every item
    ro = play(env, append, seed=2)
    n = len(env.episode.items)
    assert set(ro.actions) == {ADD}
    assert ro.info["records"] == n
    # the answerer, asked again independently, agrees with the episode's EM
    got = answer(env.memory, env.scope, env.episode.questions, k=1)
    em = float(np.mean(got))
    assert ro.info["em"] == em
    assert ro.ret == pytest.approx(em - 0.05 * n / n)
    assert sum(ro.rewards[:-1]) == pytest.approx(-0.05 * (n - 1) / n)  # the cost accrues per step

    clean = play(env, supersede_policy(k=3), seed=2)
    people = len(env.episode.questions)
    assert clean.info["records"] == people + 1  # the two stale cities invalidated, the hobby kept
    assert clean.info["em"] == 1.0
    assert clean.ret == pytest.approx(1.0 - 0.05 * (people + 1) / n)
    assert clean.ret > ro.ret


def test_step_after_the_end_is_refused(env: MemoryOpsEnv) -> None:
    ro = play(env, supersede_policy(k=3), seed=3)
    assert ro.info["em"] == 1.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(ADD)
