"""Small write policies in numpy: a softmax over the legal actions' scores, linear or one-hidden-layer MLP.

π(a | s) = softmax_a(f(z_a) / T) over the legal actions of s, with z_a the action's feature vector
(:func:`memq.rl.actions.action_features`). ``linear``: f(z) = θ·z. ``mlp``: f(z) = w₂·tanh(W₁z + b₁).
Both start uniform (θ = 0, w₂ = 0). :meth:`Policy.grad_log_prob` is ∇_params log π(a|s) =
∇f(z_a) − Σ_b π(b|s) ∇f(z_b), computed in closed form, so training needs no autodiff library.

A policy file is JSON (``format: memq-write-policy``): the model type, K, the feature names it was
trained on, the weights and what trained it. :func:`load_policy` refuses a file whose features do not
match this version of memq (a typed :class:`~memq.errors.InvalidInputError`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np

from memq.errors import InvalidInputError
from memq.rl.actions import action_features, feature_dim
from memq.rl.features import FEATURE_VERSION, ITEM_FEATURES, PAIR_FEATURES, Observation

FORMAT = "memq-write-policy"
VERSION = 1
ModelType = Literal["linear", "mlp"]


class Policy:
    """Parameters live in one flat vector (``params``) so optimisers stay model-agnostic."""

    def __init__(
        self,
        model: ModelType = "linear",
        *,
        k: int = 5,
        hidden: int = 16,
        seed: int = 0,
        params: np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if model not in ("linear", "mlp"):
            raise InvalidInputError(f"policy model must be 'linear' or 'mlp', got {model!r}")
        if k < 1:
            raise InvalidInputError(f"a policy needs k >= 1 candidate slots, got {k}")
        self.model, self.k, self.hidden = model, k, hidden
        self.dim = feature_dim()
        self.meta: dict[str, Any] = dict(meta or {})
        if params is not None:
            params = np.asarray(params, dtype=np.float64)
            if params.shape != (self.n_params,):
                raise InvalidInputError(
                    f"a {model} policy has {self.n_params} parameters, the file holds {params.shape}"
                )
            self.params = params.copy()
        elif model == "linear":
            self.params = np.zeros(self.n_params)
        else:  # small random first layer, zero output layer: uniform at the start
            rng = np.random.default_rng(seed)
            w1 = rng.normal(0.0, 1.0 / np.sqrt(self.dim), (self.dim, hidden))
            self.params = np.concatenate([w1.ravel(), np.zeros(hidden), np.zeros(hidden)])

    def prefer_add(self, bias: float) -> None:
        """Raise ADD's score by ``bias`` in every state (the starting point of training: near append)."""
        from memq.rl.actions import feature_names

        index = feature_names().index("ADD.bias")
        if self.model == "linear":
            self.params[index] += bias
        else:  # a hidden unit that reads ADD.bias only, weighted so it adds ≈ bias to ADD's score
            w1, b1, w2 = self._mlp()
            w1[:, 0] = 0.0
            w1[index, 0] = 1.0
            b1[0] = 0.0
            w2[0] = bias / np.tanh(1.0)

    @property
    def n_params(self) -> int:
        return self.dim if self.model == "linear" else self.dim * self.hidden + 2 * self.hidden

    def _mlp(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, h = self.dim, self.hidden
        w1 = self.params[: d * h].reshape(d, h)
        return w1, self.params[d * h : d * h + h], self.params[d * h + h :]

    # -- scores and probabilities ------------------------------------------------------------------
    def scores(self, z: np.ndarray) -> np.ndarray:
        if self.model == "linear":
            return z @ self.params
        w1, b1, w2 = self._mlp()
        return np.tanh(z @ w1 + b1) @ w2

    def probs(self, obs: Observation, temperature: float = 1.0, z: np.ndarray | None = None) -> np.ndarray:
        """π(·|obs) over all action ids (0 for illegal ones)."""
        z = action_features(obs) if z is None else z
        s = self.scores(z) / max(temperature, 1e-8)
        s = np.where(obs.mask > 0, s, -np.inf)
        s = s - s.max()
        e = np.exp(s)
        return e / e.sum()

    def act(self, obs: Observation, rng: np.random.Generator | None = None, temperature: float = 1.0) -> int:
        """Sample an action (``rng`` given) or take the greedy one (ties → the lowest id)."""
        p = self.probs(obs, temperature)
        if rng is None:
            return int(np.argmax(p))
        return int(rng.choice(len(p), p=p))

    def grad_log_prob(
        self, z: np.ndarray, mask: np.ndarray, action: int, temperature: float = 1.0
    ) -> np.ndarray:
        """∇_params log π(action | s) for the action-feature matrix ``z`` of s."""
        s = self.scores(z) / temperature
        s = np.where(mask > 0, s, -np.inf)
        p = np.exp(s - s.max())
        p /= p.sum()
        coef = -p
        coef[action] += 1.0
        coef /= temperature
        if self.model == "linear":
            return z.T @ coef
        w1, b1, w2 = self._mlp()
        h = np.tanh(z @ w1 + b1)
        g_w2 = h.T @ coef
        dpre = (1.0 - h * h) * w2[None, :] * coef[:, None]
        return np.concatenate([(z.T @ dpre).ravel(), dpre.sum(axis=0), g_w2])

    def log_prob(self, z: np.ndarray, mask: np.ndarray, action: int, temperature: float = 1.0) -> float:
        s = self.scores(z) / temperature
        s = np.where(mask > 0, s, -np.inf)
        m = s.max()
        return float(s[action] - m - np.log(np.exp(s - m).sum()))

    # -- files -------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        if self.model == "linear":
            weights: dict[str, Any] = {"theta": self.params.tolist()}
        else:
            w1, b1, w2 = self._mlp()
            weights = {"W1": w1.tolist(), "b1": b1.tolist(), "w2": w2.tolist()}
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "k": self.k,
            "hidden": self.hidden if self.model == "mlp" else None,
            "feature_version": FEATURE_VERSION,
            "item_features": list(ITEM_FEATURES),
            "pair_features": list(PAIR_FEATURES),
            "weights": weights,
            "meta": self.meta,
        }

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        tmp.replace(p)
        return p

    def copy(self) -> Policy:
        return Policy(self.model, k=self.k, hidden=self.hidden, params=self.params, meta=self.meta)


def policy_from_json(data: Any, source: str = "the policy") -> Policy:
    """A :class:`Policy` from its JSON form (InvalidInputError naming what is wrong)."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidInputError(f'{source} is not a memq write policy (expected "format": "{FORMAT}")')
    if data.get("version") != VERSION:
        raise InvalidInputError(
            f"{source} has policy format version {data.get('version')}, memq reads {VERSION}"
        )
    if data.get("feature_version", 1) != FEATURE_VERSION:
        raise InvalidInputError(
            f"{source} was trained on feature version {data.get('feature_version', 1)}; this memq computes "
            f"version {FEATURE_VERSION} (a feature's definition changed): retrain it with `memq rl train`"
        )
    for key, names in (("item_features", ITEM_FEATURES), ("pair_features", PAIR_FEATURES)):
        if list(data.get(key) or []) != list(names):
            raise InvalidInputError(
                f"{source} was trained on other {key.replace('_', ' ')} than this memq computes "
                f"({data.get(key)} vs {list(names)}); retrain it with `memq rl train`"
            )
    try:
        model, k, w = data["model"], int(data["k"]), data["weights"]
        if model == "linear":
            params = np.asarray(w["theta"], dtype=np.float64)
            hidden = 16
        else:
            hidden = int(data["hidden"])
            params = np.concatenate(
                [np.asarray(w["W1"], dtype=np.float64).ravel(), np.asarray(w["b1"]), np.asarray(w["w2"])]
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{source} lacks or mangles a field: {exc}") from exc
    if not np.isfinite(params).all():
        raise InvalidInputError(f"{source} holds NaN or infinite weights")
    return Policy(model, k=k, hidden=hidden, params=params, meta=data.get("meta") or {})


def load_policy(path: str | Path) -> Policy:
    """Read a policy file written by :meth:`Policy.save` (InvalidInputError if absent or malformed)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InvalidInputError(f"no policy file at {p} (train one with `memq rl train`)") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read the policy file {p}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"the policy file {p} is not valid JSON: {exc}") from exc
    return policy_from_json(data, f"the policy file {p}")
