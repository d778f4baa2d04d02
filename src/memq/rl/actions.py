"""The write operations a policy picks from: the ``reconcile`` op set over K candidate records.

Action ids for K candidate slots: ``0`` ADD, ``1`` NOOP, ``2 + j`` UPDATE candidate j, ``2 + K + j``
INVALIDATE candidate j (and store the item, linked ``supersedes`` → the old record). Slots without a
candidate are masked out. Each action has a feature vector in one shared space of
``2·|ITEM_FEATURES| + 2·|PAIR_FEATURES|`` dimensions, one block per op type: ADD and NOOP read the item
features, UPDATE j and INVALIDATE j the pair features of candidate j. A policy scores each action from
its vector, so the same weights apply to every slot (the candidates' order carries no meaning of its
own beyond the ``sim_rank`` feature).
"""

from __future__ import annotations

import numpy as np

from memq.rl.features import ITEM_FEATURES, PAIR_FEATURES, Observation

ADD, NOOP = 0, 1
OPS = ("ADD", "NOOP", "UPDATE", "INVALIDATE")


def n_actions(k: int) -> int:
    return 2 + 2 * k


def feature_dim() -> int:
    return 2 * len(ITEM_FEATURES) + 2 * len(PAIR_FEATURES)


def action_mask(filled: int, k: int) -> np.ndarray:
    """1 for legal actions: ADD and NOOP always, UPDATE / INVALIDATE only on filled slots."""
    mask = np.zeros(n_actions(k), dtype=np.int8)
    mask[ADD] = mask[NOOP] = 1
    mask[2 : 2 + filled] = 1
    mask[2 + k : 2 + k + filled] = 1
    return mask


def decode(action: int, k: int) -> tuple[str, int | None]:
    """(op name, candidate slot or None) of an action id."""
    if action == ADD:
        return "ADD", None
    if action == NOOP:
        return "NOOP", None
    if 2 <= action < 2 + k:
        return "UPDATE", action - 2
    if 2 + k <= action < 2 + 2 * k:
        return "INVALIDATE", action - 2 - k
    raise ValueError(f"action {action} is outside 0..{n_actions(k) - 1}")


def encode(op: str, slot: int | None, k: int) -> int:
    """The action id of (op, slot); the inverse of :func:`decode`."""
    op = op.upper()
    if op == "ADD":
        return ADD
    if op == "NOOP":
        return NOOP
    if slot is None or not 0 <= slot < k:
        raise ValueError(f"{op} needs a candidate slot in 0..{k - 1}, got {slot}")
    if op == "UPDATE":
        return 2 + slot
    if op in ("INVALIDATE", "DELETE"):
        return 2 + k + slot
    raise ValueError(f"unknown op {op!r}; ops are {', '.join(OPS)}")


def action_features(obs: Observation) -> np.ndarray:
    """(n_actions, feature_dim) matrix: row a is action a's vector (zeros for masked actions)."""
    k = obs.k
    ni, npair = len(ITEM_FEATURES), len(PAIR_FEATURES)
    z = np.zeros((n_actions(k), feature_dim()), dtype=np.float64)
    z[ADD, 0:ni] = obs.item
    z[NOOP, ni : 2 * ni] = obs.item
    upd, inv = 2 * ni, 2 * ni + npair
    z[2 : 2 + k, upd : upd + npair] = obs.pair
    z[2 + k : 2 + 2 * k, inv : inv + npair] = obs.pair
    return z * obs.mask[:, None]


def feature_names() -> list[str]:
    """Names of the feature_dim() coordinates, e.g. ``ADD.max_cos``, ``INVALIDATE.frame``."""
    return (
        [f"ADD.{n}" for n in ITEM_FEATURES]
        + [f"NOOP.{n}" for n in ITEM_FEATURES]
        + [f"UPDATE.{n}" for n in PAIR_FEATURES]
        + [f"INVALIDATE.{n}" for n in PAIR_FEATURES]
    )
