"""Safe promotion: a learner serves a tenant only when the log says it beats the recipe.

While the recipe serves, every search also computes the learner's top k (its *shadow* list, logged
with the search), and with probability ε (``LearningConfig.explore``) the recipe's last shown slot is
given to a uniform draw from the learner's picks the recipe did not make (its marginal propensity is
logged, and the displaced candidate's). Once the learner serves, the roles swap: the recipe's top k
is the shadow. So for each logged search n with feedback, with r the credit each shown candidate
earned (mapped to [0, 1]) and p its propensity, both policies are estimated from the same searches by
self-normalised inverse propensity scoring (SNIPS), per shown candidate:

    V̂(π) = Σ_n Σ_{i ∈ shown_n} r_i·π_n(i)/p_i  /  Σ_n Σ_{i ∈ shown_n} π_n(i)/p_i

with π_n(i) = 1 when π would have shown i in search n (the serving policy: every candidate it did not
explore; the shadow policy: its logged list — as it was at search time, so the estimate is
progressive validation, never a fit scored on its own training data). The difference
Δ = V̂(shadow) − V̂(serving) gets a one-sided confidence bound from a seeded bootstrap over searches:
the shadow takes over when its lower bound at 1 − ``alpha`` exceeds 0 on at least ``min_searches``
searches. A learner therefore starts serving only once the log shows it better, and stops when the
recipe is shown better again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import numpy as np

from memq.store.base import LogRow


@dataclass(frozen=True)
class Estimate:
    """Off-policy comparison of the serving policy and its shadow on the same logged searches."""

    serving: float  # V̂ of the policy that served (per shown candidate)
    shadow: float  # V̂ of the other one
    difference: float  # shadow − serving
    lower: float  # one-sided bootstrap bounds of the difference
    upper: float
    searches: int  # logged searches with feedback and a shadow list
    explored: int  # of them, searches in which exploration showed a shadow pick
    effective: float  # effective sample size of the shadow's weights (Σw)²/Σw²

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def compare(
    logs: Iterable[LogRow],
    y01: Callable[[float], float],
    *,
    alpha: float = 0.05,
    rounds: int = 400,
    seed: int = 0,
) -> Estimate | None:
    """SNIPS of the serving policy and of its shadow with a bootstrap bound on their difference."""
    rows: list[tuple[float, float, float, float]] = []
    explored = 0
    shadow_w: list[float] = []
    for log in logs:
        if log.shadow is None:
            continue
        shadow = set(log.shadow)
        a = b = c = d = 0.0
        for rid, propensity, was_explored in log.shown:
            if propensity <= 0:
                continue
            r = y01(log.credits.get(rid, 0.0))
            w = 1.0 / propensity
            if rid in shadow:
                a, b = a + r * w, b + w
                shadow_w.append(w)
            if not was_explored:
                c, d = c + r * w, d + w
        explored += any(e for _, _, e in log.shown)
        rows.append((a, b, c, d))
    if not rows:
        return None
    m = np.asarray(rows)
    sums = m.sum(axis=0)

    def values(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(s[..., 1] > 0, s[..., 0] / s[..., 1], 0.0), np.where(
                s[..., 3] > 0, s[..., 2] / s[..., 3], 0.0
            )

    v_shadow, v_serving = values(sums)
    # bootstrap over searches: each resample draws len(m) searches with replacement; its counts
    # (a multinomial draw, built by one bincount) weight the searches' sums
    rng = np.random.default_rng(seed)
    n = len(m)
    picks = rng.integers(0, n, size=(rounds, n)) + (np.arange(rounds) * n)[:, None]
    counts = np.bincount(picks.ravel(), minlength=rounds * n).reshape(rounds, n).astype(np.float64)
    boot_shadow, boot_serving = values(counts @ m)
    diff = boot_shadow - boot_serving
    w = np.asarray(shadow_w)
    return Estimate(
        serving=float(v_serving),
        shadow=float(v_shadow),
        difference=float(v_shadow - v_serving),
        lower=float(np.quantile(diff, alpha)),
        upper=float(np.quantile(diff, 1 - alpha)),
        searches=len(m),
        explored=int(explored),
        effective=float(w.sum() ** 2 / (w * w).sum()) if len(w) else 0.0,
    )


def switch(estimate: Estimate | None, min_searches: int) -> bool:
    """True when the shadow is shown better than the serving policy (promote, or demote)."""
    return estimate is not None and estimate.searches >= min_searches and estimate.lower > 0.0
