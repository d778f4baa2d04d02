"""Group-relative policy optimisation (GRPO, as Memory-R1 trains its manager), in numpy on the CPU.

A *group* is G answers to one prompt, as in GRPO for LLMs. Two ways to form it (``mode``):

* ``decision`` (default; Memory-R1's setting, where each sample is one manager decision): draw an
  episode seed and a step t; the current policy plays steps < t greedily, then G actions a_1..a_G are
  sampled from π(·|s_t) at temperature T, and each is scored by the episode's return when a_i is
  taken at t and the greedy policy plays on to the end (the questions come at the end). The env is
  deterministic, so equal actions get equal returns and each distinct action is played once.
* ``episode``: G whole episodes sampled from π (every step sampled); every step of rollout i shares
  its advantage. Noisier: the return differences of G rollouts mix ~30 random decisions each.

Then, per group, A_i = (r_i − mean_g r) / max(std_g r, σ_min), and A_i = 0 for the whole group when
its returns are all equal (std = 0: nothing to learn; algorithms.md §6). σ_min (``std_floor``, 0.1)
is memq's addition: with plain std scaling, a group whose returns differ only by the record cost
(≈ λ/N = 0.002) gets advantages of ±1 like a group that differs in answers, and the policy learns to
overwrite records to save cost (measured: it collapsed to UPDATE / INVALIDATE everything). The
update ascends the clipped surrogate

    J(θ) = 1/(B·G) Σ_i 1/|o_i| Σ_t min(ρ_t A_i, clip(ρ_t, 1 − ε, 1 + ε) A_i),  ρ_t = π_θ(a_t|s_t) / π_old(a_t|s_t)

− β·D_KL(π_θ ‖ π_ref) (GRPO's per-step estimator, π_ref = the starting policy), with Adam for
``epochs`` passes (ρ = 1 on the first pass: the plain policy gradient), minus an L2 penalty;
|o_i| = 1 in ``decision`` mode. Deviations from Memory-R1 (VERL): no critic, the std floor, and the
policy is a linear / small MLP scorer over features (:mod:`memq.rl.policy`) that starts near the
append policy (``init_add_bias``), not an LLM.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from memq.rl.actions import action_features
from memq.rl.env import Episode, MemoryOpsEnv, Rollout, play
from memq.rl.policy import Policy

VALIDATION_SEED0 = 1_000_000  # validation episodes use seeds from here; training seeds stay below


def group_advantages(returns: Sequence[float], std_floor: float = 0.0, eps: float = 1e-8) -> np.ndarray:
    """(r − mean) / max(std, std_floor) over one group; all zeros when the returns are all equal (std = 0).

    ``std_floor`` > 0 keeps a group whose returns differ only a little (e.g. by the record cost alone)
    from being blown up to the same scale as a group that differs in answers."""
    r = np.asarray(returns, dtype=np.float64)
    if r.size == 0 or r.std() < eps:
        return np.zeros_like(r)
    return (r - r.mean()) / max(r.std(), std_floor)


@dataclass
class GRPOConfig:
    updates: int = 40
    episodes_per_update: int = 16  # B: groups per update
    group_size: int = 8  # G
    mode: str = "decision"  # or "episode"
    lr: float = 0.03
    optimizer: str = "adam"  # or "sgd": plain gradient ascent, steps proportional to the gradient
    temperature: float = 1.0
    clip: float = 0.2
    std_floor: float = 0.1  # advantage denominator max(std, floor): see group_advantages
    beta: float = 0.0  # KL penalty to the starting policy (GRPO's estimator; 0 as in DAPO / Dr. GRPO)
    epochs: int = 1
    l2: float = 1e-4
    eval_every: int = 5
    eval_episodes: int = 16
    seed: int = 0
    model: str = "linear"
    hidden: int = 16
    init_add_bias: float = 2.0  # start near the append policy (ADD preferred), still exploring
    keep_best: bool = True  # return the policy of the best validation return, not the last one


@dataclass
class CurvePoint:
    update: int
    episodes: int  # episodes played so far (training only)
    reward_mean: float  # mean return of this update's samples
    reward_std: float
    em_mean: float
    zero_std_groups: int
    seconds: float
    eval_em: float | None = None  # greedy, validation seeds
    eval_return: float | None = None


@dataclass
class TrainResult:
    policy: Policy  # the best on validation (``keep_best``), else the last
    curve: list[CurvePoint] = field(default_factory=list)
    seconds: float = 0.0
    best_update: int = 0


@dataclass
class Sample:
    """One member of a group: the states it acted in (action features, masks), its actions, its return."""

    z: list[np.ndarray]
    masks: list[np.ndarray]
    actions: list[int]
    ret: float
    em: float


class _Adam:
    def __init__(self, n: int, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> None:
        self.m, self.v, self.t = np.zeros(n), np.zeros(n), 0
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def ascend(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        self.t += 1
        self.m = self.b1 * self.m + (1 - self.b1) * grad
        self.v = self.b2 * self.v + (1 - self.b2) * grad * grad
        m_hat = self.m / (1 - self.b1**self.t)
        v_hat = self.v / (1 - self.b2**self.t)
        return params + self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class _SGD:
    def __init__(self, lr: float) -> None:
        self.lr = lr

    def ascend(self, params: np.ndarray, grad: np.ndarray) -> np.ndarray:
        return params + self.lr * grad


def surrogate_gradient(
    policy: Policy,
    samples: Sequence[Sample],
    advantages: Sequence[float],
    old_logp: Sequence[Sequence[float]],
    *,
    temperature: float,
    clip: float,
    ref_logp: Sequence[Sequence[float]] | None = None,
    beta: float = 0.0,
) -> np.ndarray:
    """∇J of the clipped surrogate minus β·KL to the reference policy (module docstring), averaged
    over the samples. The KL is GRPO's per-step estimator D = ρ_ref − log ρ_ref − 1 with
    ρ_ref = π_ref(a|s) / π_θ(a|s), whose gradient is (1 − ρ_ref) ∇log π_θ(a|s)."""
    grad = np.zeros(policy.n_params)
    refs = ref_logp if ref_logp is not None else [[0.0] * len(s.actions) for s in samples]
    for smp, adv, olds, ref in zip(samples, advantages, old_logp, refs, strict=True):
        if (adv == 0 and beta == 0) or not smp.actions:
            continue
        g = np.zeros(policy.n_params)
        for z, mask, a, old, r in zip(smp.z, smp.masks, smp.actions, olds, ref, strict=True):
            logp = policy.log_prob(z, mask, a, temperature)
            ratio = float(np.exp(logp - old))
            clipped = (adv > 0 and ratio > 1 + clip) or (adv < 0 and ratio < 1 - clip)
            coef = 0.0 if clipped else adv * ratio
            if beta:
                coef -= beta * (1.0 - float(np.exp(r - logp)))
            if coef:
                g += coef * policy.grad_log_prob(z, mask, a, temperature)
        grad += g / len(smp.actions)
    return grad / max(1, len(samples))


def evaluate(env: MemoryOpsEnv, policy: Policy, episodes: Sequence[int | Episode]) -> tuple[float, float]:
    """(mean EM, mean return) of the greedy policy on ``episodes`` (seeds of the env's source, or episodes)."""
    ems, rets = [], []
    for e in episodes:
        ro = play(env, policy, episode=e) if isinstance(e, Episode) else play(env, policy, seed=e)
        ems.append(ro.info["em"])
        rets.append(ro.ret)
    return float(np.mean(ems)), float(np.mean(rets))


def decision_group(
    env: MemoryOpsEnv, policy: Policy, seed: int, rng: np.random.Generator, config: GRPOConfig
) -> tuple[list[Sample], int]:
    """G actions sampled at one random step of episode ``seed``, each scored by its greedy-continued return.

    Returns the samples and the number of episodes played (one per distinct action)."""
    n_items = len(env.source.episode(seed).items)
    t = int(rng.integers(n_items))
    play(env, policy, seed=seed, stop_at=t)
    obs = env.observation
    assert obs is not None
    z, mask = action_features(obs), obs.mask.copy()
    p = policy.probs(obs, config.temperature, z=z)
    actions = [int(a) for a in rng.choice(len(p), size=config.group_size, p=p)]
    outcome: dict[int, Rollout] = {}
    for a in dict.fromkeys(actions):
        outcome[a] = play(env, policy, seed=seed, forced={t: a})
    samples = [Sample([z], [mask], [a], outcome[a].ret, outcome[a].info["em"]) for a in actions]
    return samples, len(outcome)


def episode_group(
    env: MemoryOpsEnv, policy: Policy, seed: int, rngs: Sequence[np.random.Generator], config: GRPOConfig
) -> tuple[list[Sample], int]:
    """G whole episodes of ``seed``, every step sampled from π."""
    samples = []
    for rng in rngs:
        ro = play(env, policy, seed=seed, rng=rng, temperature=config.temperature)
        samples.append(Sample(ro.z, ro.masks, ro.actions, ro.ret, ro.info["em"]))
    return samples, len(samples)


def train(
    env: MemoryOpsEnv,
    config: GRPOConfig,
    *,
    policy: Policy | None = None,
    validation: Sequence[int | Episode] | None = None,
    on_update: Callable[[CurvePoint], None] | None = None,
) -> TrainResult:
    """Train a policy on ``env``'s episodes (training seeds below :data:`VALIDATION_SEED0`).

    Every ``eval_every`` updates the greedy policy plays ``validation`` (default: ``eval_episodes``
    seeds from :data:`VALIDATION_SEED0`); with ``keep_best`` the policy returned is the one with the
    best validation return (the curve still shows every evaluation)."""
    if config.updates < 1 or config.group_size < 2 or config.episodes_per_update < 1:
        raise ValueError("updates >= 1, group_size >= 2 and episodes_per_update >= 1 are required")
    if config.mode not in ("decision", "episode"):
        raise ValueError(f"mode is 'decision' or 'episode', got {config.mode!r}")
    if policy is None:
        policy = Policy(config.model, k=env.k, hidden=config.hidden, seed=config.seed)  # type: ignore[arg-type]
        policy.prefer_add(config.init_add_bias)
    if policy.k != env.k:
        raise ValueError(f"the policy has k={policy.k} slots but the environment shows {env.k} candidates")
    opt = _Adam(policy.n_params, config.lr) if config.optimizer == "adam" else _SGD(config.lr)
    reference = policy.copy()
    seed_rng = np.random.default_rng([config.seed, 7])
    if validation is None:
        validation = [VALIDATION_SEED0 + i for i in range(config.eval_episodes)]
    result = TrainResult(policy)
    best: tuple[float, int, np.ndarray] | None = None
    started = time.perf_counter()
    played = 0

    def record(point: CurvePoint, do_eval: bool) -> None:
        nonlocal best
        if do_eval and validation:
            point.eval_em, point.eval_return = evaluate(env, policy, validation)
            if best is None or point.eval_return > best[0]:
                best = (point.eval_return, point.update, policy.params.copy())
        point.seconds = time.perf_counter() - started
        result.curve.append(point)
        if on_update:
            on_update(point)

    record(CurvePoint(0, 0, float("nan"), float("nan"), float("nan"), 0, 0.0), True)
    for update in range(1, config.updates + 1):
        samples: list[Sample] = []
        advantages: list[float] = []
        zero_std = 0
        for b in range(config.episodes_per_update):
            ep_seed = int(seed_rng.integers(VALIDATION_SEED0))
            if config.mode == "decision":
                group, n = decision_group(
                    env, policy, ep_seed, np.random.default_rng([config.seed, update, b]), config
                )
            else:
                rngs = [np.random.default_rng([config.seed, update, b, i]) for i in range(config.group_size)]
                group, n = episode_group(env, policy, ep_seed, rngs, config)
            played += n
            adv = group_advantages([s.ret for s in group], config.std_floor)
            zero_std += int(not adv.any())
            samples += group
            advantages += adv.tolist()
        old_logp = [
            [
                policy.log_prob(z, m, a, config.temperature)
                for z, m, a in zip(s.z, s.masks, s.actions, strict=True)
            ]
            for s in samples
        ]
        ref_logp = [
            [
                reference.log_prob(z, m, a, config.temperature)
                for z, m, a in zip(s.z, s.masks, s.actions, strict=True)
            ]
            for s in samples
        ]
        for _ in range(config.epochs):
            grad = surrogate_gradient(
                policy,
                samples,
                advantages,
                old_logp,
                temperature=config.temperature,
                clip=config.clip,
                ref_logp=ref_logp,
                beta=config.beta,
            )
            policy.params = opt.ascend(policy.params, grad - config.l2 * policy.params)
        rets = np.array([s.ret for s in samples])
        ems = np.array([s.em for s in samples])
        point = CurvePoint(
            update, played, float(rets.mean()), float(rets.std()), float(ems.mean()), zero_std, 0.0
        )
        record(point, update % config.eval_every == 0 or update == config.updates)
    result.seconds = time.perf_counter() - started
    if config.keep_best and best is not None:
        result.policy = policy.copy()
        result.policy.params, result.best_update = best[2], best[1]
    else:
        result.best_update = config.updates
    result.policy.meta.update(
        {
            "trainer": "grpo",
            "config": asdict(config),
            "seconds": round(result.seconds, 1),
            "update": result.best_update,
        }
    )
    return result
