"""The environment's decisions as records for training an LLM manager with TRL's ``GRPOTrainer``.

Each exported row is one decision point of a reference rollout (a policy file playing a seeded
episode, greedy): the *prompt* an LLM manager would get (chat messages: the op set, the incoming item
and the K candidate memories, numbered — ids never reach the model), the reference *completion*
(``{"op": ..., "memory": ...}`` as JSON), and the columns that let the reward be recomputed:
``episode_seed``, ``step``, ``prefix_actions`` (the actions taken before this step) and ``reward``
(the reference rollout's return). This is TRL's conversational prompt-completion format; GRPO reads
``prompt`` and hands the other columns to reward functions as keyword arguments.

:class:`EpisodeReward` is such a reward function, ``f(prompts, completions, **columns) -> list[float]``:
for each completion it replays the episode in the environment — the prefix actions, then the
completion's operation at this step, then the reference policy (greedy) to the end — and returns the
episode's return, the environment's own reward. A completion that does not parse, or names an illegal
memory, gets ``invalid_reward``. Replaying is what makes the reward exact (each row costs one episode).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from memq.errors import InvalidInputError
from memq.rl.actions import decode, encode
from memq.rl.env import MemoryOpsEnv, play
from memq.rl.features import Observation
from memq.rl.policy import Policy

SYSTEM = (
    "You manage the long-term memory of an assistant. For the new item, decide one operation on the "
    "stored memories shown:\n"
    "- ADD: store the item as a new memory;\n"
    "- UPDATE: replace memory N's text with the item (same thing, newer or better statement);\n"
    "- INVALIDATE: memory N is no longer true because of the item: end it (kept in history) and store the item;\n"
    "- NOOP: store nothing (the item is already known or not worth keeping).\n"
    'Answer with JSON only: {"op": "ADD" | "UPDATE" | "INVALIDATE" | "NOOP", "memory": N or null}.'
)
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def prompt_messages(obs: Observation) -> list[dict[str, str]]:
    """The chat prompt for one decision: the op set, the item, the candidates numbered 0..K−1."""
    if obs.candidates:
        lines = [f"{i}. {c.text}  (similarity {c.cos:.2f})" for i, c in enumerate(obs.candidates)]
        memories = "Stored memories, most similar first:\n" + "\n".join(lines)
    else:
        memories = "Stored memories: none similar."
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"New item: {obs.text}\n\n{memories}"},
    ]


def completion_text(action: int, k: int) -> str:
    op, slot = decode(action, k)
    return json.dumps({"op": op, "memory": slot})


def parse_completion(completion: Any, obs: Observation) -> int | None:
    """The action a completion names (text, or TRL's ``[{"role": "assistant", "content": ...}]``);
    None when it is not JSON of the expected shape or names an illegal memory."""
    if isinstance(completion, list):
        completion = completion[-1].get("content", "") if completion else ""
    m = _JSON.search(str(completion))
    if not m:
        return None
    try:
        data = json.loads(m.group(0))
        action = encode(str(data["op"]), data.get("memory"), obs.k)
    except (ValueError, KeyError, TypeError):
        return None
    return action if obs.mask[action] else None


def _replay(env: MemoryOpsEnv, seed: int, prefix: Sequence[int]) -> float:
    """Reset to episode ``seed`` and take the ``prefix`` actions; returns the rewards they earned."""
    env.reset(seed=seed)
    total = 0.0
    for a in prefix:
        _, r, done, _, _ = env.step(int(a))
        total += r
        if done:
            raise InvalidInputError(f"prefix of {len(prefix)} actions ends episode seed {seed} early")
    return total


def export_rows(env: MemoryOpsEnv, policy: Policy, seeds: Iterable[int]) -> Iterable[dict[str, Any]]:
    """One row per decision of the greedy reference rollout of each seed (see the module docstring)."""
    for seed in seeds:
        ro = play(env, policy, seed=seed)
        _replay(env, seed, [])
        for t, action in enumerate(ro.actions):
            obs = env.observation
            assert obs is not None
            yield {
                "prompt": prompt_messages(obs),
                "completion": [{"role": "assistant", "content": completion_text(action, obs.k)}],
                "episode_id": ro.episode_id,
                "episode_seed": int(seed),
                "step": t,
                "prefix_actions": list(ro.actions[:t]),
                "reward": ro.ret,
            }
            env.step(action)


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write rows as JSON lines (``datasets.load_dataset("json", data_files=path)`` reads them)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    tmp = p.with_suffix(p.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    tmp.replace(p)
    return n


class EpisodeReward:
    """A TRL reward function over the environment: the episode return of each completion's choice."""

    __name__ = "memq_episode_reward"  # TRL logs rewards under the function's name

    def __init__(self, env: MemoryOpsEnv, reference: Policy, *, invalid_reward: float = -1.0) -> None:
        self.env, self.reference, self.invalid_reward = env, reference, invalid_reward

    def reward(self, prompt: Any, completion: Any, seed: int, prefix: Sequence[int]) -> float:
        total = _replay(self.env, seed, prefix)
        obs = self.env.observation
        assert obs is not None
        if prompt is not None and prompt != prompt_messages(obs):
            raise InvalidInputError(
                f"the prompt of episode seed {seed}, step {len(prefix)} differs from the environment's: "
                "the rows were exported from another dataset, embedder or memq version"
            )
        action = parse_completion(completion, obs)
        if action is None:
            return self.invalid_reward
        done = False
        while not done:
            _, r, done, _, _ = self.env.step(action)
            total += r
            if not done:
                assert self.env.observation is not None
                action = int(self.reference.probs(self.env.observation).argmax())
        return float(total)

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        *,
        episode_seed: Sequence[int],
        prefix_actions: Sequence[Sequence[int]],
        **_: Any,
    ) -> list[float]:
        completions = list(completions or [])
        prompts_list = list(prompts) if prompts is not None else [None] * len(completions)
        return [
            self.reward(p, c, int(s), list(pre))
            for p, c, s, pre in zip(prompts_list, completions, episode_seed, prefix_actions, strict=True)
        ]
