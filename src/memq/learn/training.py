"""From the retrieval log to a learner's training rows (what was served is what is learned from)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from memq.learn.base import TrainingData
from memq.retrieve.features import FEATURE_SET, NAMES
from memq.store.base import LogRow


def training_data(logs: Iterable[LogRow]) -> TrainingData:
    """One row per shown candidate of each logged search with feedback and logged features.

    ``y``: the credit it earned (0 when it was shown and the feedback credited it nothing, e.g. not
    among ``used``); ``w``: 1 / its logged propensity. Searches logged with another feature set (an
    older memq's) are skipped: their columns mean other things.
    """
    xs: list[np.ndarray] = []
    ys: list[float] = []
    ws: list[float] = []
    groups: list[int] = []
    ids: list[str] = []
    queries: list[np.ndarray | None] = []
    for log in logs:
        if log.features is None or log.feature_set != FEATURE_SET:
            continue
        at = {rid: i for i, rid in enumerate(log.window)}
        group = len(queries)
        added = False
        for rid, propensity, _ in log.shown:
            row = at.get(rid)
            if row is None or propensity <= 0:
                continue
            xs.append(log.features[row])
            ys.append(float(log.credits.get(rid, 0.0)))
            ws.append(1.0 / propensity)
            groups.append(group)
            ids.append(rid)
            added = True
        if added:
            queries.append(log.query_vector)
    x = np.vstack(xs).astype(np.float64) if xs else np.zeros((0, len(NAMES)))
    return TrainingData(
        x=x,
        y=np.asarray(ys),
        w=np.asarray(ws),
        group=np.asarray(groups, dtype=np.int64),
        ids=ids,
        query_vectors=queries,
        retrievals=len(queries),
    )
