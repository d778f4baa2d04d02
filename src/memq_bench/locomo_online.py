"""The learning variants of ``memq bench locomo``: ``online`` (a learner preset trained by a citing
agent on conversations 1–5, evaluated frozen on 6–10 against the recipe on the same corpus) and
``within`` (feedback while answering, recall by position in the conversation)."""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.locomo import Conversation
from memq_bench.locomo_bench import (
    ONLINE_SHOWN,
    ONLINE_TRAIN,
    Asked,
    EvidenceCounts,
    _hooks,
    _result,
    _scored,
    _space,
    aggregate,
    ask,
    ingest,
    questions_of,
    recall_at_k,
    turn_docs,
)
from memq_bench.results import BenchResult
from memq_bench.systems import LearningSystem, Timed, make_system


def supports_online(name: str) -> bool:
    """Whether a system learns from feedback (memq learner presets do; fixed recipes and peers do not)."""
    from memq_bench.systems import MEMQ_PRESETS

    return name in MEMQ_PRESETS and MEMQ_PRESETS[name][1] is not None


def run_online(
    name: str,
    embedder: Embedder,
    convs: Sequence[Conversation],
    indices: Sequence[int],
    ks: Sequence[int],
    *,
    train_count: int = ONLINE_TRAIN,
    shown: int = ONLINE_SHOWN,
    seeds: Sequence[int] = (0, 1, 2),
    promotion: str = "guarded",
    progress: Any = None,
) -> list[BenchResult]:
    """A learner preset trained by a citing agent on the first ``train_count`` chosen conversations
    (every question, in order, k = ``shown``), then evaluated frozen on the rest (k = max(ks)), one run
    per seed of citation noise; against the recipe alone on the same conversations (``online-baseline``).

    ``promotion``: ``guarded`` (memq's default: the learner ranks once its off-policy test shows it
    better) or ``always`` (it ranks from its first fit: the learned reranker itself).
    """
    from memq_bench.online import (
        CitingAgent,
        frozen_evaluation,
        seed_summary,
        seeded_results,
        train_questions,
    )

    train, test = list(indices[:train_count]), list(indices[train_count:])
    if not train or not test:
        raise InvalidInputError(
            f"the online variant needs more than {train_count} conversations (got {len(indices)})"
        )
    variant = "online" if promotion == "guarded" else f"online-{promotion}"
    started = time.perf_counter()
    # the recipe alone, on a store that holds the same conversations (training ones unasked), so both
    # sides rank with the same corpus statistics
    base_answers = _frozen(
        make_system("memq", embedder), convs, test, ks, progress, "memq (recipe)", also=train
    )
    base = aggregate(_scored(base_answers, False), ks)
    config = {
        "k": max(ks),
        "train_conversations": [i + 1 for i in train],
        "eval_conversations": [i + 1 for i in test],
        "shown": shown,
        "noise": 0.2,
    }
    results = [
        _result(name, "online-baseline", base, time.perf_counter() - started, config, ["the recipe alone"])
    ]

    def run_seed(seed: int) -> dict[str, float]:
        system = Timed(make_system(name, embedder, learning={"promotion": promotion}, seed=seed))
        if not isinstance(system.system, LearningSystem):
            raise InvalidInputError(f"{name} does not learn from feedback")
        agent = CitingAgent(np.random.default_rng(seed))
        on_turn, on_question = _hooks(progress, f"{name} ({variant}, seed {seed})", convs, train)
        rewards: list[float] = []
        try:
            for i in train:
                conv, space = convs[i], _space(convs[i], i)
                ingest(system, space, turn_docs(conv), on_turn)
                asked = [(a.question, a.gold) for a in questions_of(conv, i, {}, EvidenceCounts())]
                rewards += [
                    r
                    for _, r in train_questions(
                        system, space, asked, agent, shown=shown, on_question=on_question
                    )
                ]
            answers, learned = frozen_evaluation(
                system,
                rewards,
                lambda: _frozen(
                    system, convs, test, ks, progress, f"{name} ({variant}, seed {seed}) eval", own=False
                ),
            )
        finally:
            system.close()
        return aggregate(_scored(answers, False), ks) | learned

    return results + seeded_results(
        variant,
        seeds,
        run_seed,
        lambda per_seed: seed_summary(per_seed, base, gain=("recall@", "ndcg@"), spread=["recall@5"]),
        functools.partial(_result, name),
        seed_config=lambda seed: {**config, "seed": seed},
        summary_config={**config, "seeds": list(seeds), "promotion": promotion},
    )


def _frozen(
    system: Any,
    convs: Sequence[Conversation],
    indices: Sequence[int],
    ks: Sequence[int],
    progress: Any,
    label: str,
    own: bool = True,
    also: Sequence[int] = (),
) -> list[tuple[Asked, tuple[str, ...]]]:
    """Ingest (when ``own``: a fresh system, closed after) and ask every question without feedback;
    the conversations ``also`` are ingested first and not asked."""
    timed = system if isinstance(system, Timed) else Timed(system)
    on_turn, on_question = _hooks(progress, label, convs, indices)
    answers: list[tuple[Asked, tuple[str, ...]]] = []
    try:
        for i in also:
            ingest(timed, _space(convs[i], i), turn_docs(convs[i]))
        for i in indices:
            conv, space = convs[i], _space(convs[i], i)
            ingest(timed, space, turn_docs(conv), on_turn)
            answers += ask(timed, space, questions_of(conv, i, {}, EvidenceCounts()), max(ks), on_question)
    finally:
        if own:
            timed.close()
    return answers


def run_within(
    name: str,
    embedder: Embedder,
    convs: Sequence[Conversation],
    indices: Sequence[int],
    *,
    shown: int = ONLINE_SHOWN,
    seed: int = 0,
    promotion: str = "guarded",
    bins: int = 5,
    progress: Any = None,
) -> BenchResult:
    """Feedback while answering: each conversation in a fresh store, its questions asked in order with
    the citing agent's feedback; recall@``shown`` of each served list, by position in the
    conversation (``bins`` equal parts), against the recipe's on the same questions."""
    from memq_bench.online import CitingAgent, train_questions

    started = time.perf_counter()
    learner_curve = np.zeros(bins)
    recipe_curve = np.zeros(bins)
    counts = np.zeros(bins)
    for i in indices:
        conv, space = convs[i], _space(convs[i], i)
        asked = questions_of(conv, i, {}, EvidenceCounts())
        pairs = [(a.question, a.gold) for a in asked]
        base = Timed(make_system("memq", embedder))
        learner = Timed(make_system(name, embedder, learning={"promotion": promotion}, seed=seed))
        try:
            ingest(base, space, turn_docs(conv))
            ingest(learner, space, turn_docs(conv))
            served = train_questions(
                learner, space, pairs, CitingAgent(np.random.default_rng(seed)), shown=shown
            )
            recipe = [tuple(base.search(space, q, shown)) for q, _ in pairs]
        finally:
            base.close()
            learner.close()
        for j, ((keys, _), ref, (_, gold)) in enumerate(zip(served, recipe, pairs, strict=True)):
            b = min(bins - 1, j * bins // max(1, len(pairs)))
            learner_curve[b] += recall_at_k(list(keys), gold, shown)
            recipe_curve[b] += recall_at_k(list(ref), gold, shown)
            counts[b] += 1
        if progress is not None:
            progress.console.log(f"{name}: conversation {i + 1} done (within-conversation curve)")
    learner_curve /= np.maximum(counts, 1)
    recipe_curve /= np.maximum(counts, 1)
    metrics = {f"recall@{shown}/bin{b + 1}": float(learner_curve[b]) for b in range(bins)}
    metrics |= {f"recall@{shown}/recipe/bin{b + 1}": float(recipe_curve[b]) for b in range(bins)}
    later = slice(bins // 2, bins)
    metrics[f"recall@{shown}/later/gain"] = float(learner_curve[later].mean() - recipe_curve[later].mean())
    config = {
        "shown": shown,
        "seed": seed,
        "promotion": promotion,
        "conversations": [i + 1 for i in indices],
        "bins": bins,
    }
    return _result(name, "online-within" if promotion == "guarded" else f"online-within-{promotion}", metrics,
                   time.perf_counter() - started, config)  # fmt: skip
