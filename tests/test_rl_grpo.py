"""memq.rl.policy and memq.rl.grpo: gradients, group advantages, and a short training run that learns."""

from __future__ import annotations

import numpy as np
import pytest

from memq.errors import InvalidInputError
from memq.rl.actions import action_features, action_mask, feature_dim
from memq.rl.env import MemoryOpsEnv, play
from memq.rl.features import Candidate, observe, pair_values, words
from memq.rl.grpo import GRPOConfig, Sample, evaluate, group_advantages, surrogate_gradient, train
from memq.rl.policy import Policy, load_policy
from rl_toy import ToyMoves


def _obs():
    cands = [
        Candidate("a", "Alice lives in the city of Paris.", 0.9, 1),
        Candidate("b", "Bob lives in the city of Oslo.", 0.6, 2),
    ]
    return observe("Alice lives in the city of Rome.", cands, 3)


@pytest.mark.parametrize(
    ("new", "old", "frame"),
    [
        ("The capital of Tang Empire is Xi'an.", "The capital of Tang Empire is Chang'an.", 6 / 7),
        ("The Governor of Texas is Greg Abbott.", "The Governor of Texas is Rick Perry.", 5 / 7),
        ("Ann is a citizen of United States of America.", "Ann is a citizen of United Kingdom.", 6 / 7),
        # another subject of the same relation: the remainders share "is"
        (
            "The chief executive officer of Microsoft is Satya Nadella.",
            "The chief executive officer of WWE is Vince McMahon.",
            0.0,
        ),
        ("Bob worked in the city of Rome.", "Bob was born in the city of Oslo.", 0.0),  # another relation
        ("Bob worked in the city of Rome.", "Bob worked in the city of Rome.", 0.0),  # the same sentence
    ],
)
def test_the_frame_feature_needs_no_templates(new: str, old: str, frame: float) -> None:
    assert pair_values(words(new), words(old), 0.9)["frame"] == pytest.approx(frame)


def test_group_advantages_and_the_zero_std_group() -> None:
    np.testing.assert_allclose(group_advantages([1.0, 0.0, 0.0, 1.0]), [1, -1, -1, 1])
    assert not group_advantages([0.3, 0.3, 0.3]).any()  # std = 0: no signal, A = 0
    assert not group_advantages([]).any()
    # a floor keeps tiny differences tiny: 0.002 apart → ±0.01, not ±1
    np.testing.assert_allclose(group_advantages([0.5, 0.502], std_floor=0.1), [-0.01, 0.01], atol=1e-9)
    np.testing.assert_allclose(group_advantages([0.0, 1.0], std_floor=0.1), [-1, 1])


@pytest.mark.parametrize("model", ["linear", "mlp"])
def test_grad_log_prob_matches_finite_differences(model: str) -> None:
    obs = _obs()
    policy = Policy(model, k=3, hidden=4, seed=1)
    policy.params = np.random.default_rng(0).normal(0, 0.5, policy.n_params)
    z = action_features(obs)
    for action in np.flatnonzero(obs.mask):
        g = policy.grad_log_prob(z, obs.mask, int(action), temperature=0.7)
        num = np.zeros_like(g)
        for i in range(policy.n_params):
            for sign in (1, -1):
                p = policy.copy()
                p.params[i] += sign * 1e-6
                num[i] += sign * p.log_prob(z, obs.mask, int(action), 0.7) / 2e-6
        np.testing.assert_allclose(g, num, atol=1e-5)


def test_masked_actions_get_no_probability() -> None:
    obs = _obs()
    p = Policy("linear", k=3).probs(obs)
    assert obs.mask.tolist() == action_mask(2, 3).tolist()
    assert p[~obs.mask.astype(bool)].sum() == 0
    assert p.sum() == pytest.approx(1.0)
    assert np.allclose(p[obs.mask.astype(bool)], 1 / obs.mask.sum())  # θ = 0: uniform over legal ones


def test_clipped_ratio_gives_no_gradient() -> None:
    obs = _obs()
    z = action_features(obs)
    policy = Policy("linear", k=3)
    smp = Sample([z], [obs.mask], [0], 1.0, 1.0)
    old = policy.log_prob(z, obs.mask, 0)
    g = surrogate_gradient(policy, [smp], [1.0], [[old]], temperature=1.0, clip=0.2)
    np.testing.assert_allclose(g, policy.grad_log_prob(z, obs.mask, 0))
    policy.params = policy.grad_log_prob(z, obs.mask, 0) * 5  # ratio ≫ 1 + ε with A > 0: clipped
    assert not surrogate_gradient(policy, [smp], [1.0], [[old]], temperature=1.0, clip=0.2).any()


def test_policy_file_round_trip_and_bad_files(tmp_path) -> None:
    policy = Policy("mlp", k=3, hidden=4, seed=2, meta={"note": "x"})
    path = policy.save(tmp_path / "p.json")
    back = load_policy(path)
    np.testing.assert_array_equal(back.params, policy.params)
    assert (back.model, back.k, back.hidden, back.meta) == ("mlp", 3, 4, {"note": "x"})
    with pytest.raises(InvalidInputError, match="no policy file"):
        load_policy(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_policy(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something-else"}')
    with pytest.raises(InvalidInputError, match="not a memq write policy"):
        load_policy(tmp_path / "other.json")
    data = policy.to_json()
    (tmp_path / "v1.json").write_text(__import__("json").dumps({**data, "feature_version": 1}))
    with pytest.raises(InvalidInputError, match="feature version 1"):
        load_policy(tmp_path / "v1.json")
    data["pair_features"] = [*data["pair_features"], "new_feature"]
    (tmp_path / "old.json").write_text(__import__("json").dumps(data))
    with pytest.raises(InvalidInputError, match="other pair features"):
        load_policy(tmp_path / "old.json")
    assert feature_dim() == len(policy.to_json()["item_features"]) * 2 + len(data["pair_features"][:-1]) * 2


@pytest.mark.slow
def test_a_short_grpo_run_improves_the_return_on_a_toy_stream(embedder, tmp_path) -> None:
    env = MemoryOpsEnv(ToyMoves(), embedder, k=3, record_cost=0.05, workdir=tmp_path / "env")
    try:
        config = GRPOConfig(
            updates=10,
            episodes_per_update=6,
            group_size=6,
            lr=0.1,
            epochs=2,
            beta=0.04,
            eval_every=10,
            eval_episodes=8,
        )
        start = Policy("linear", k=3)
        start.prefer_add(config.init_add_bias)  # what train() starts from: near append
        result = train(env, config)
        assert result.curve[0].eval_return is not None and result.curve[-1].eval_return is not None
        assert result.curve[-1].eval_return > result.curve[0].eval_return + 0.05  # validation seeds
        # and on seeds neither training nor validation used: it supersedes where append keeps stale cities
        unseen = [10_000 + i for i in range(8)]
        em0, ret0 = evaluate(env, start, unseen)
        em1, ret1 = evaluate(env, result.policy, unseen)
        assert ret1 > ret0 + 0.05 and em1 > em0
        ops = play(env, result.policy, seed=10_000).info["ops"]
        assert ops.get("INVALIDATE", 0) + ops.get("UPDATE", 0) > 0
    finally:
        env.close()
