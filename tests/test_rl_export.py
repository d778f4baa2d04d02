"""Rollouts for TRL's GRPOTrainer: the export round-trips and its reward function is the environment's."""

from __future__ import annotations

import json

import pytest

from memq.errors import InvalidInputError
from memq.rl.actions import NOOP, encode
from memq.rl.env import MemoryOpsEnv, play
from memq.rl.export import EpisodeReward, export_rows, parse_completion, prompt_messages, write_jsonl
from rl_toy import ToyMoves, supersede_policy


@pytest.fixture
def env(embedder, tmp_path):
    e = MemoryOpsEnv(ToyMoves(), embedder, k=3, workdir=tmp_path / "env")
    yield e
    e.close()


def test_export_round_trips_through_datasets(env: MemoryOpsEnv, tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    trl_data = pytest.importorskip("trl.data_utils")
    rows = list(export_rows(env, supersede_policy(k=3), [0, 1]))
    assert len(rows) == len(ToyMoves().episode(0).items) + len(ToyMoves().episode(1).items)
    path = tmp_path / "rollouts.jsonl"
    assert write_jsonl(rows, path) == len(rows)
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    assert len(ds) == len(rows)
    assert [dict(r) for r in ds] == rows
    assert trl_data.is_conversational(ds[0])  # TRL's own check of the conversational format
    first = rows[0]
    assert first["prompt"][0]["role"] == "system" and "New item:" in first["prompt"][1]["content"]
    assert json.loads(first["completion"][0]["content"]) == {"op": "ADD", "memory": None}
    assert any(json.loads(r["completion"][0]["content"])["op"] == "INVALIDATE" for r in rows)


def test_reward_function_is_the_environment_return(env: MemoryOpsEnv) -> None:
    policy = supersede_policy(k=3)
    rows = list(export_rows(env, policy, [4]))
    reward = EpisodeReward(env, policy)
    reference = play(env, policy, seed=4)
    # called the way TRL's GRPOTrainer calls it: prompts, completions and every other column as kwargs
    columns = {k: [r[k] for r in rows] for k in rows[0] if k not in ("prompt", "completion")}
    got = reward(
        prompts=[r["prompt"] for r in rows],
        completions=[r["completion"] for r in rows],
        trainer_state=None,
        log_extra=None,
        log_metric=None,
        **columns,
    )
    assert got == pytest.approx([reference.ret] * len(rows))
    assert all(r["reward"] == pytest.approx(reference.ret) for r in rows)

    # another completion at one step: the environment with that action forced there, greedy after it
    t = next(i for i, r in enumerate(rows) if "INVALIDATE" in r["completion"][0]["content"])
    noop = json.dumps({"op": "NOOP", "memory": None})
    forced = play(env, policy, seed=4, forced={t: NOOP})
    assert reward(
        [rows[t]["prompt"]], [noop], episode_seed=[4], prefix_actions=[rows[t]["prefix_actions"]]
    ) == [pytest.approx(forced.ret)]
    assert forced.ret < reference.ret
    assert reward(None, ["I think ADD"], episode_seed=[4], prefix_actions=[[]]) == [-1.0]


def test_completion_parsing_and_a_stale_prompt(env: MemoryOpsEnv) -> None:
    env.reset(seed=4)
    for _ in range(3):
        env.step(0)
    obs = env.observation
    assert parse_completion('{"op": "update", "memory": 1}', obs) == encode("UPDATE", 1, 3)
    assert parse_completion([{"role": "assistant", "content": 'ok: {"op": "NOOP"}'}], obs) == NOOP
    assert parse_completion('{"op": "UPDATE", "memory": 7}', obs) is None  # no such memory
    assert parse_completion("ADD", obs) is None
    prompt = prompt_messages(obs)
    assert "0. " in prompt[1]["content"] and "(similarity " in prompt[1]["content"]
    reward = EpisodeReward(env, supersede_policy(k=3))
    with pytest.raises(InvalidInputError, match="differs"):
        reward([prompt], ['{"op": "ADD"}'], episode_seed=[5], prefix_actions=[[0, 0, 0]])
