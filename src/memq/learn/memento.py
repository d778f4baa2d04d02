"""``memento_q``: Memento's parametric case retrieval (arXiv 2508.16153; docs/algorithms.md §1.3).

Q(s, c) = p(r = 1 | s, c) from a small MLP on the concatenated frozen embeddings of the case and the
query; the read is top-k by Q over a similarity-prefiltered pool, the training signal is the binary
reward each shown case was credited, fit by class-weighted binary cross-entropy on a replay buffer.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from memq.learn.base import Outcome, PoolItem, Selection, top_k
from memq.types import Utility

STATE_FORMAT = 1


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _unb64(s: str, dim: int) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").reshape(-1, dim).astype(np.float32)


class MementoQLearner:
    """Learned Q over (case, query) pairs; top-k by Q among the ``prefilter`` most similar cases.

    Model: x = [emb(case); emb(query)] (each the frozen embedder's L2-normalised d-dim vector:
    ``PoolItem.vector`` and the ``query_vector`` argument; d is taken from the first vector
    observed) → Linear(2d → ``hidden``) → ReLU → Dropout(``dropout``) → Linear(``hidden`` → 1) →
    sigmoid = Q. Inference: one batched float32 forward under ``torch.no_grad()``, with the first
    layer kept as its two halves, h = c·Wc + (q·Wq + b1), so the query half is computed once per
    query.

    Deviations from the released code (``memory/train_memory_retriever.py``), on purpose:

    * the encoder is memq's frozen embedder, not a fine-tuned SimCSE-RoBERTa; only the head learns;
    * one logit and sigmoid instead of a 2-class softmax head (the same model family: a softmax over
      two logits is the sigmoid of their difference), trained with BCE weighted by
      ``pos_weight = max(1, n_neg / n_pos)`` over the whole buffer — the released class weighting;
    * training is online, not an offline re-run of the trainer: every ``train_every`` feedbacks
      (``observe`` calls that added rows), ``steps`` AdamW mini-batch steps (``batch`` rows drawn
      uniformly without replacement from the buffer; lr ``lr``, weight decay ``weight_decay``, grad
      norm clip ``clip``); no warmup/schedule, no validation split or best-AUC checkpoint;
    * the read scores only the top ``prefilter`` of the pool by similarity (§1.3 "memq"), never every
      case in memory.

    Training rows: one (query, case, label) row per shown case that has a credit in
    ``Outcome.credits`` and a vector; label = ``credit >= threshold`` (Memento's binary reward; for
    ±1 rewards use ``threshold=0``). The buffer keeps the last ``buffer`` rows (FIFO). A round is
    skipped (and the feedback count reset) while the buffer has fewer than ``min_rows`` rows or holds
    only one class — a one-class classifier would rank by noise.

    Read: until the first training step has run, top-k by similarity (exactly the ``similarity``
    learner; ``Selection.scores`` are then the sims of the prefiltered candidates). Training only runs
    on ≥ ``min_rows`` rows and the FIFO buffer never shrinks, so "trained" implies the buffer has
    ≥ ``min_rows`` rows. After it, top-k by Q, ties broken by higher similarity; ``Selection.scores``
    holds Q of each prefiltered candidate. A candidate with ``vector is None`` cannot be scored by the
    model: it falls back to similarity — ranked below every candidate the model scored, among such
    candidates by similarity, and its score is its similarity. Deterministic: propensity 1.0 for every
    shown id; the ``rng`` argument is unused.

    Per-record state: none. Q depends on the query, so one scalar per record would be misleading;
    ``update_record`` returns ``utility.q`` and ``utility.stats`` unchanged, ``on_write`` returns {}.

    Randomness (weight init, mini-batches, dropout masks) comes only from a numpy Generator and a
    ``torch.Generator`` seeded from ``seed``: a run is reproducible under a seed.

    Threads: ``torch.set_num_threads`` is process-wide, so it is never called at import or
    construction. Each forward (``select``) and training round runs with ``threads`` torch threads
    (default 1) and restores the previous setting afterwards (a ~0.3 µs switch: tiny matmuls run
    fastest on one thread, and far slower when threads contend for busy cores); ``threads=None``
    leaves torch's setting alone.
    """

    name = "memento_q"
    version = "1"

    def __init__(
        self,
        *,
        prefilter: int = 20,
        hidden: int = 256,
        dropout: float = 0.2,
        min_rows: int = 64,
        buffer: int = 5_000,
        threshold: float = 0.5,
        train_every: int = 10,
        steps: int = 5,
        batch: int = 64,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        clip: float = 1.0,
        state_rows: int = 1_000,
        seed: int = 0,
        threads: int | None = 1,
    ) -> None:
        if prefilter < 1 or hidden < 1 or not 0 <= dropout < 1 or min_rows < 1 or buffer < min_rows:
            raise ValueError(
                "memento_q needs prefilter, hidden, min_rows >= 1, 0 <= dropout < 1, buffer >= min_rows"
            )
        if train_every < 1 or steps < 1 or batch < 1 or lr <= 0 or weight_decay < 0 or clip <= 0:
            raise ValueError(
                "memento_q needs train_every, steps, batch >= 1, lr > 0, weight_decay >= 0, clip > 0"
            )
        if state_rows < 0 or (threads is not None and threads < 1):
            raise ValueError("memento_q needs state_rows >= 0 and threads >= 1 (or None)")
        self.prefilter, self.hidden, self.dropout = prefilter, hidden, dropout
        self.min_rows, self.buffer, self.threshold = min_rows, buffer, threshold
        self.train_every, self.steps, self.batch = train_every, steps, batch
        self.lr, self.weight_decay, self.clip = lr, weight_decay, clip
        self.state_rows, self.seed, self.threads = state_rows, seed, threads
        self._rng = np.random.default_rng(seed)
        self._tgen = torch.Generator().manual_seed(seed)
        self.dim: int | None = None  # set by the first vector observed, or by load_state_dict
        self._params: list[torch.Tensor] = []
        self._opt: torch.optim.AdamW | None = None
        self._steps_done = 0  # training steps run so far; > 0 switches the read from sim to Q
        self._since_train = 0
        # replay buffer: a ring; rows [0, size) are filled, `head` is the next write position
        self._bq = self._bc = np.empty((0, 0), dtype=np.float32)
        self._by = np.empty(0, dtype=np.float32)
        self._size = self._head = 0

    # -- model -----------------------------------------------------------------------------------------
    def _build(self, dim: int, weights: Sequence[np.ndarray] | None = None) -> None:
        """Create the head (init as ``nn.Linear``: U(±1/√fan_in), drawn from the seeded Generator)."""
        self.dim = dim
        if weights is None:
            b1, b2 = 1.0 / np.sqrt(2 * dim), 1.0 / np.sqrt(self.hidden)
            weights = (
                self._rng.uniform(-b1, b1, (self.hidden, 2 * dim)),
                self._rng.uniform(-b1, b1, self.hidden),
                self._rng.uniform(-b2, b2, self.hidden),
                self._rng.uniform(-b2, b2, 1),
            )
        w1, b1, w2, b2 = (np.asarray(w, dtype=np.float32) for w in weights)
        # Linear(2d → hidden) kept as its two d × hidden halves: h = c·Wc + q·Wq + b1
        split = (w1[:, :dim].T, w1[:, dim:].T, b1, w2, b2)
        self._params = [torch.tensor(np.ascontiguousarray(w), requires_grad=True) for w in split]
        self._opt = torch.optim.AdamW(self._params, lr=self.lr, weight_decay=self.weight_decay, fused=True)
        self._bq = np.zeros((self.buffer, dim), dtype=np.float32)
        self._bc = np.zeros((self.buffer, dim), dtype=np.float32)
        self._by = np.zeros(self.buffer, dtype=np.float32)
        self._size = self._head = 0

    @contextmanager
    def _torch_threads(self) -> Iterator[None]:
        prev = torch.get_num_threads()
        change = self.threads is not None and self.threads != prev
        if change:
            torch.set_num_threads(self.threads)  # type: ignore[arg-type]
        try:
            yield
        finally:
            if change:
                torch.set_num_threads(prev)

    def q_values(self, query_vector: np.ndarray, case_vectors: np.ndarray) -> np.ndarray:
        """Q of each row of ``case_vectors`` (n × d) for one query: eval mode (no dropout), float32."""
        if self.dim is None:
            raise ValueError("memento_q has no model yet (nothing observed)")
        q = torch.from_numpy(np.ascontiguousarray(query_vector, dtype=np.float32))
        c = torch.from_numpy(np.ascontiguousarray(case_vectors, dtype=np.float32))
        if q.shape != (self.dim,) or c.ndim != 2 or c.shape[1] != self.dim:
            raise ValueError(
                f"memento_q expects {self.dim}-dim vectors, got {tuple(q.shape)}, {tuple(c.shape)}"
            )
        wc, wq, b1, w2, b2 = self._params
        with self._torch_threads(), torch.no_grad():
            h = torch.addmm(torch.addmv(b1, wq.t(), q), c, wc).relu_()
            return torch.sigmoid(torch.addmv(b2, h, w2)).numpy()

    @property
    def trained(self) -> bool:
        return self._steps_done > 0

    # -- policy ----------------------------------------------------------------------------------------
    def select(
        self, query_vector: np.ndarray, pool: Sequence[PoolItem], k: int, rng: np.random.Generator
    ) -> Selection:
        if not pool or k <= 0:
            return Selection([], [], {})
        sims = np.fromiter((p.sim for p in pool), dtype=np.float64, count=len(pool))
        cand = top_k(sims, self.prefilter)  # best sim first
        items = [pool[int(i)] for i in cand]
        csims = sims[cand]
        scores = {it.id: float(s) for it, s in zip(items, csims, strict=True)}
        scored = [j for j, it in enumerate(items) if it.vector is not None] if self.trained else []
        if not scored:  # cold start, or nothing the model can score: similarity
            ids = [items[int(j)].id for j in top_k(csims, k)]
            return Selection(ids, [1.0] * len(ids), scores)
        q = self.q_values(query_vector, np.stack([items[j].vector for j in scored]))  # type: ignore[misc]
        primary = np.full(len(items), -np.inf)  # no vector: below every Q, then by sim
        primary[scored] = q
        for j, v in zip(scored, q, strict=True):
            scores[items[j].id] = float(v)
        order = np.lexsort((-csims, -primary))[:k]  # by Q desc, ties by sim desc (then pool order)
        ids = [items[int(j)].id for j in order]
        return Selection(ids, [1.0] * len(ids), scores)

    def update_record(self, utility: Utility, credit: float) -> tuple[float | None, dict[str, float]]:
        return utility.q, dict(utility.stats)

    def on_write(self, new: PoolItem, neighbours: Sequence[PoolItem]) -> dict[str, dict[str, float]]:
        return {}

    # -- learning --------------------------------------------------------------------------------------
    def observe(self, outcome: Outcome) -> None:
        items = {p.id: p for p in outcome.pool}
        rows = [
            items[i]
            for i in outcome.shown
            if i in outcome.credits and i in items and items[i].vector is not None
        ]
        if not rows:
            return
        query = np.asarray(outcome.query_vector, dtype=np.float32)
        if self.dim is None:
            self._build(int(query.shape[0]))
        if query.shape != (self.dim,):
            raise ValueError(f"memento_q expects {self.dim}-dim vectors, got {query.shape}")
        for item in rows:
            h = self._head
            self._bq[h] = query
            self._bc[h] = item.vector  # type: ignore[assignment]
            self._by[h] = 1.0 if outcome.credits[item.id] >= self.threshold else 0.0
            self._head = (h + 1) % self.buffer
            self._size = min(self._size + 1, self.buffer)
        self._since_train += 1
        if self._since_train >= self.train_every:
            self.train()

    def train(self) -> int:
        """One training round (``steps`` mini-batch steps) on the buffer; returns the steps run."""
        self._since_train = 0
        n = self._size
        if n < self.min_rows or self._opt is None:
            return 0
        n_pos = float(self._by[:n].sum())
        n_neg = n - n_pos
        if n_pos == 0 or n_neg == 0:
            return 0
        pos_weight = torch.tensor([max(1.0, n_neg / n_pos)])
        wc, wq, b1, w2, b2 = self._params
        keep = 1.0 - self.dropout
        size = min(self.batch, n)
        self._tgen.manual_seed(int(self._rng.integers(2**62)))  # dropout masks: one seed per round
        with self._torch_threads():
            for _ in range(self.steps):
                idx = self._rng.choice(n, size=size, replace=False)
                c, q = torch.from_numpy(self._bc[idx]), torch.from_numpy(self._bq[idx])
                y = torch.from_numpy(self._by[idx])
                h = torch.addmm(torch.addmm(b1, c, wc), q, wq).relu()
                if self.dropout > 0:
                    h = h * (torch.rand(h.shape, generator=self._tgen) < keep) / keep
                logit = torch.addmv(b2, h, w2)
                loss = F.binary_cross_entropy_with_logits(logit, y, pos_weight=pos_weight)
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self._params, self.clip)
                self._opt.step()
        self._steps_done += self.steps
        return self.steps

    # -- persistence -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: weights as nested lists, the newest ``state_rows`` buffer rows as base64 float32.

        The optimizer's moments are not kept (a reload starts a fresh AdamW); the numpy Generator's
        state is (as strings: PCG64's 128-bit integers), and the torch Generator is reseeded from it
        each round. Weights round-trip exactly (float32 → Python float → float32), so a reloaded
        learner gives identical scores. Size at the defaults: about 4 MB of JSON for the weights and
        4 MB for 1,000 buffer rows.
        """
        bit = self._rng.bit_generator.state
        state: dict[str, Any] = {
            "format": STATE_FORMAT,
            "dim": self.dim,
            "hidden": self.hidden,
            "steps_done": self._steps_done,
            "since_train": self._since_train,
            "rng": {
                "bit_generator": bit["bit_generator"],
                "state": {k: str(v) for k, v in bit["state"].items()},
                **{k: int(v) for k, v in bit.items() if k not in ("bit_generator", "state")},
            },
        }
        if self.dim is None:
            return state
        wc, wq, b1, w2, b2 = (p.detach().numpy() for p in self._params)
        w1 = np.concatenate((wc.T, wq.T), axis=1)  # nn.Linear layout: hidden × 2d, [case; query]
        keep = min(self._size, self.state_rows)
        # the ring in write order, oldest first; keep the newest `keep` rows
        chron = (np.arange(self._head - self._size, self._head) % self.buffer)[self._size - keep :]
        state |= {
            "w1": w1.tolist(),
            "b1": b1.tolist(),
            "w2": w2.tolist(),
            "b2": b2.tolist(),
            "buffer_q": _b64(self._bq[chron]),
            "buffer_c": _b64(self._bc[chron]),
            "buffer_y": [int(v) for v in self._by[chron]],
        }
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"memento_q: unknown state format {state.get('format')!r}")
        if int(state["hidden"]) != self.hidden:
            raise ValueError(f"memento_q: the state has hidden={state['hidden']}, this learner {self.hidden}")
        rng = state["rng"]
        self._rng.bit_generator.state = {
            "bit_generator": rng["bit_generator"],
            "state": {k: int(v) for k, v in rng["state"].items()},
            **{k: int(v) for k, v in rng.items() if k not in ("bit_generator", "state")},
        }
        self._steps_done = int(state["steps_done"])
        self._since_train = int(state["since_train"])
        if state["dim"] is None:
            self.dim, self._params, self._opt = None, [], None
            self._bq = self._bc = np.empty((0, 0), dtype=np.float32)
            self._by = np.empty(0, dtype=np.float32)
            self._size = self._head = 0
            return
        dim = int(state["dim"])
        weights = [np.asarray(state[k], dtype=np.float32) for k in ("w1", "b1", "w2", "b2")]
        shapes = [(self.hidden, 2 * dim), (self.hidden,), (self.hidden,), (1,)]
        if [w.shape for w in weights] != shapes:
            raise ValueError("memento_q: the state's weight shapes do not match its dim and hidden")
        bq, bc = _unb64(state["buffer_q"], dim), _unb64(state["buffer_c"], dim)
        by = np.asarray(state["buffer_y"], dtype=np.float32)
        if not len(bq) == len(bc) == len(by):
            raise ValueError("memento_q: the state's buffer arrays differ in length")
        self._build(dim, weights)
        n = min(len(by), self.buffer)
        self._bq[:n], self._bc[:n], self._by[:n] = bq[len(by) - n :], bc[len(by) - n :], by[len(by) - n :]
        self._size, self._head = n, n % self.buffer
