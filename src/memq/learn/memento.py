"""``memento_q``: Memento's parametric case retrieval (arXiv 2508.16153; docs/algorithms.md §1.3).

Q(s, c) = p(r = 1 | s, c) from a small MLP on the concatenated frozen embeddings of the case and the
query; the read is top-k by Q over the recipe's top ``prefilter`` candidates; the training signal is
the binary reward each shown case was credited, fit by class-weighted binary cross-entropy.

Model: x = [e(case); e(query)] (the embedder's L2-normalised d-dim vectors) → Linear(2d → ``hidden``)
→ ReLU → Dropout(``dropout``) → Linear(``hidden`` → 1) → sigmoid = Q. The first layer is kept as its
two halves, h = c·Wc + (q·Wq + b1), so the query half is computed once per query. numpy only.

Deviations from the released code (``memory/train_memory_retriever.py``), on purpose:

* the encoder is memq's frozen embedder, not a fine-tuned SimCSE-RoBERTa; only the head learns;
* one logit and sigmoid instead of a 2-class softmax head (the same model family), trained with BCE
  weighted by ``pos_weight = max(1, n_neg / n_pos)`` over the training rows — the released class
  weighting — times each row's importance weight 1/propensity (clipped at ``max_weight``);
* training is online: every ``fit_every`` feedbacks, ``steps`` AdamW mini-batch steps (``batch`` rows
  drawn uniformly without replacement from the newest logged rows; lr, weight decay, grad-norm clip
  ``clip``); no warmup/schedule, no validation split or best-AUC checkpoint; the Adam moments live in
  memory only (a reloaded learner starts fresh moments);
* the read scores only the recipe's top ``prefilter`` candidates (§1.3 "memq"), never every case.

Read: until the first training step, the recipe's order. After it, the prefiltered candidates with a
vector by Q (rounded to 1e-7, so candidates with the same vectors tie whatever the CPU's float kernels
do), ties and the rest in the recipe's order, below them. Deterministic: propensity 1.

Randomness (init, mini-batches, dropout) comes from a numpy Generator seeded from ``seed`` and the
steps done so far: a run is reproducible under a seed.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from memq.learn.base import NoRecordState, Selection, TrainingData, Window, greedy, recipe_scores

STATE_FORMAT = 2
_BETAS = (0.9, 0.999)
_EPS = 1e-8
_TIE = 1e7  # Q is compared at this resolution


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _unb64(s: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").reshape(shape).astype(np.float32)


class MementoQLearner(NoRecordState):
    name = "memento_q"
    needs_vectors = True

    def __init__(
        self,
        *,
        prefilter: int = 20,
        hidden: int = 256,
        dropout: float = 0.2,
        min_rows: int = 64,
        buffer: int = 5_000,
        threshold: float = 0.5,
        fit_every: int = 10,
        steps: int = 5,
        batch: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        clip: float = 1.0,
        max_weight: float = 10.0,
        seed: int = 0,
    ) -> None:
        if prefilter < 1 or hidden < 1 or not 0 <= dropout < 1 or min_rows < 1 or buffer < min_rows:
            raise ValueError(
                "memento_q needs prefilter, hidden, min_rows >= 1, 0 <= dropout < 1, buffer >= min_rows"
            )
        if (
            fit_every < 1
            or steps < 1
            or batch < 1
            or lr <= 0
            or weight_decay < 0
            or clip <= 0
            or max_weight < 1
        ):
            raise ValueError(
                "memento_q needs fit_every, steps, batch >= 1, lr > 0, weight_decay >= 0, clip > 0, max_weight >= 1"
            )
        self.prefilter, self.hidden, self.dropout = prefilter, hidden, dropout
        self.min_rows, self.buffer, self.threshold = min_rows, buffer, threshold
        self.fit_every, self.steps, self.batch = fit_every, steps, batch
        self.lr, self.weight_decay, self.clip, self.max_weight = lr, weight_decay, clip, max_weight
        self.seed = seed
        self.dim: int | None = None
        self.params: list[np.ndarray] = []  # Wc (d×h), Wq (d×h), b1 (h), w2 (h), b2 (1)
        self._m: list[np.ndarray] = []
        self._v: list[np.ndarray] = []
        self.steps_done = 0

    @property
    def version(self) -> str:
        return str(self.steps_done)

    @property
    def trained(self) -> bool:
        return self.steps_done > 0

    # -- model -----------------------------------------------------------------------------------------
    def _build(self, dim: int) -> None:
        """Initialise as ``nn.Linear`` does: U(±1/√fan_in), from the seeded Generator."""
        rng = np.random.default_rng(self.seed)
        b1, b2 = 1.0 / np.sqrt(2 * dim), 1.0 / np.sqrt(self.hidden)
        self.dim = dim
        self.params = [
            rng.uniform(-b1, b1, (dim, self.hidden)).astype(np.float32),
            rng.uniform(-b1, b1, (dim, self.hidden)).astype(np.float32),
            rng.uniform(-b1, b1, self.hidden).astype(np.float32),
            rng.uniform(-b2, b2, self.hidden).astype(np.float32),
            rng.uniform(-b2, b2, 1).astype(np.float32),
        ]
        self._m = [np.zeros_like(p) for p in self.params]
        self._v = [np.zeros_like(p) for p in self.params]

    def q_values(self, query_vector: np.ndarray, case_vectors: np.ndarray) -> np.ndarray:
        """Q of each row of ``case_vectors`` (n × d) for one query (no dropout)."""
        if self.dim is None:
            raise ValueError("memento_q has no model yet (nothing trained)")
        wc, wq, b1, w2, b2 = self.params
        h = np.maximum(
            case_vectors.astype(np.float32) @ wc + (query_vector.astype(np.float32) @ wq + b1), 0.0
        )
        return 1.0 / (1.0 + np.exp(-(h @ w2 + b2[0])))

    # -- policy ----------------------------------------------------------------------------------------
    def score(self, window: Window) -> np.ndarray:
        scores = recipe_scores(window)  # the recipe's order, below every Q (Q ∈ (0, 1))
        if not self.trained or window.vectors is None or window.query_vector is None:
            return scores
        top = np.arange(min(self.prefilter, len(window)))
        top = top[
            np.isfinite(window.vectors[top]).all(axis=1) & (np.abs(window.vectors[top]).sum(axis=1) > 0)
        ]
        if len(top):
            q = self.q_values(window.query_vector, window.vectors[top])
            scores = scores - len(window) - 1.0  # every Q beats every unscored candidate
            scores[top] = np.round(q * _TIE) / _TIE
        return scores

    def select(self, window: Window, k: int, rng: np.random.Generator) -> Selection:
        return greedy(window, self.score(window), k)

    # -- learning --------------------------------------------------------------------------------------
    def fit(self, data: TrainingData) -> None:
        """``steps`` AdamW steps on the newest ``buffer`` rows that have both vectors (skipped below
        ``min_rows`` rows or with one class only: a one-class classifier ranks by noise)."""
        vectors = getattr(data, "vectors", None) or {}
        rows = [
            i
            for i in range(len(data))
            if data.ids[i] in vectors and data.query_vectors[int(data.group[i])] is not None
        ][-self.buffer :]
        if len(rows) < self.min_rows:
            return
        c = np.stack([vectors[data.ids[i]] for i in rows]).astype(np.float32)
        q = np.stack([data.query_vectors[int(data.group[i])] for i in rows]).astype(np.float32)
        y = (data.y[rows] >= self.threshold).astype(np.float32)
        sw = np.minimum(data.w[rows], self.max_weight).astype(np.float32)
        n_pos = float(y.sum())
        if n_pos == 0 or n_pos == len(y):
            return
        if self.dim is None:
            self._build(c.shape[1])
        pos_weight = max(1.0, (len(y) - n_pos) / n_pos)
        rng = np.random.default_rng((self.seed, self.steps_done))
        size = min(self.batch, len(y))
        for _ in range(self.steps):
            idx = rng.choice(len(y), size=size, replace=False)
            self._step(c[idx], q[idx], y[idx], sw[idx] / sw[idx].mean(), pos_weight, rng)
        self.steps_done += self.steps

    def _step(
        self,
        c: np.ndarray,
        q: np.ndarray,
        y: np.ndarray,
        sw: np.ndarray,
        pos_weight: float,
        rng: np.random.Generator,
    ) -> None:
        wc, wq, b1, w2, b2 = self.params
        a = c @ wc + q @ wq + b1
        keep = 1.0 - self.dropout
        mask = (rng.random(a.shape) < keep).astype(np.float32) / keep if self.dropout > 0 else 1.0
        h = np.maximum(a, 0.0) * mask
        z = h @ w2 + b2[0]
        p = 1.0 / (1.0 + np.exp(-z))
        # d/dz of −[pw·y·log σ(z) + (1 − y)·log(1 − σ(z))], averaged over the batch
        dz = (sw * (pos_weight * y * (p - 1.0) + (1.0 - y) * p) / len(y)).astype(np.float32)
        da = np.outer(dz, w2) * mask * (a > 0)
        grads = [c.T @ da, q.T @ da, da.sum(axis=0), h.T @ dz, np.array([dz.sum()], np.float32)]
        norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads)))
        if norm > self.clip:
            grads = [g * (self.clip / norm) for g in grads]
        t = self.steps_done + 1
        for i, g in enumerate(grads):
            self.params[i] *= 1.0 - self.lr * self.weight_decay  # AdamW: decoupled weight decay
            self._m[i] = _BETAS[0] * self._m[i] + (1 - _BETAS[0]) * g
            self._v[i] = _BETAS[1] * self._v[i] + (1 - _BETAS[1]) * g * g
            m_hat = self._m[i] / (1 - _BETAS[0] ** t)
            v_hat = self._v[i] / (1 - _BETAS[1] ** t)
            self.params[i] -= (self.lr * m_hat / (np.sqrt(v_hat) + _EPS)).astype(np.float32)

    # -- persistence -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The weights as base64 float32 (about 1 MB at d = 384, hidden = 256), saved at each fit."""
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "dim": self.dim,
            "hidden": self.hidden,
            "steps_done": self.steps_done,
        }
        if self.dim is not None:
            state["params"] = [_b64(p) for p in self.params]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A state of this format; any other (an older memq's) leaves the learner cold."""
        if state.get("format") != STATE_FORMAT:
            return
        if int(state["hidden"]) != self.hidden:
            raise ValueError(f"memento_q: the state has hidden={state['hidden']}, this learner {self.hidden}")
        self.steps_done = int(state["steps_done"])
        if state.get("dim") is None:
            self.dim, self.params = None, []
            return
        dim = int(state["dim"])
        self._build(dim)
        shapes = [(dim, self.hidden), (dim, self.hidden), (self.hidden,), (self.hidden,), (1,)]
        self.params = [_unb64(s, shape) for s, shape in zip(state["params"], shapes, strict=True)]
