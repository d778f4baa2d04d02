"""The ``online`` variant of ``memq bench longmemeval``: a learner preset trained by a citing agent on
half of LME-S60, evaluated frozen on the other half, against the recipe alone on the same corpus.

One system (one tenant) holds every haystack, each in its own space (``lme-<question id>``), so the
learner trained on the training questions is the one that ranks the evaluation questions:

* **split**: the questions at even positions of the file train, those at odd positions evaluate (the
  file is sorted by question id, whose ``gpt4_`` tail is mostly temporal-reasoning; alternating keeps
  the question types balanced between the halves). Abstention questions (``_abs``) are neither asked
  in training nor scored, as in the default variant;
* **training**: each training question's haystack is ingested, then the question is asked with
  k = 5 and the :class:`memq_bench.online.CitingAgent` gives feedback (every training question, in
  file order). Its evidence: the indexed turns marked ``has_answer``; for a question with none (the
  single-session-assistant ones, whose evidence is an assistant turn, under ``--roles user``), the
  indexed turns of its answer sessions;
* **evaluation**: exploration off, no feedback; each evaluation haystack ingested and its question
  asked for the top ``search_k`` turns, scored as the default variant scores
  (:func:`memq_bench.longmemeval.question_metrics`);
* **baseline** (``online-baseline``): the recipe alone (preset ``memq``) on a store holding the same
  haystacks (the training ones ingested, not asked), so both sides rank with the same corpus.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.longmemeval import (
    DATASET,
    LmeQuestion,
    Roles,
    embed_texts,
    ingest_haystack,
    run_retrieval,
    warm_cache,
)
from memq_bench.online import (
    NOISE,
    SHOWN,
    CitingAgent,
    frozen_evaluation,
    seed_summary,
    seeded_results,
    train_questions,
)
from memq_bench.results import NO_HOOKS, BenchResult, ResultsFile, RunHooks, make_result, progress_tick
from memq_bench.systems import MEMQ_PRESETS, LearningSystem, Timed, make_system

NOTES = [
    "LME-S60: a 60-question subset of LongMemEval_S; not comparable with full-500 numbers",
    "train: questions at even positions (citing agent, k = 5, noise 0.2); evaluate: odd positions, frozen",
]
_GAIN_PREFIXES = ("session_recall", "session_ndcg", "turn_recall", "turn_ndcg")
_SPREAD_PREFIXES = ("session_recall_all@", "turn_recall_any@")


def split(questions: Sequence[LmeQuestion]) -> tuple[list[LmeQuestion], list[LmeQuestion]]:
    """(train, eval): the questions at even positions and those at odd positions."""
    return list(questions[::2]), list(questions[1::2])


def evidence(question: LmeQuestion, roles: Roles) -> frozenset[str]:
    """The turn keys the citing agent treats as evidence: indexed ``has_answer`` turns, else the
    indexed turns of the answer sessions (empty for an abstention question)."""
    if question.abstention:
        return frozenset()
    turns = question.turns(roles)
    marked = frozenset(t.key for t in turns if t.has_answer)
    if marked:
        return marked
    sessions = set(question.answer_session_ids)
    return frozenset(t.key for t in turns if t.session_id in sessions)


def _result(
    system: str, variant: str, metrics: dict[str, float], seconds: float, config: dict[str, Any]
) -> BenchResult:
    return make_result(DATASET, system, variant, metrics, seconds, config, NOTES)


def _train(
    system: Timed,
    train: Sequence[LmeQuestion],
    agent: CitingAgent,
    *,
    roles: Roles,
    shown: int,
    tick: Callable[..., None] | None,
) -> list[float]:
    """Ingest each training haystack, ask its question and give the agent's feedback; the rewards."""
    rewards: list[float] = []
    for q in train:
        space = ingest_haystack(system, q, roles)
        gold = evidence(q, roles)
        if gold:
            rewards += [
                r for _, r in train_questions(system, space, [(q.question, gold)], agent, shown=shown)
            ]
        if tick:
            tick()
    return rewards


def run_online(
    name: str,
    embedder: Embedder,
    questions: Sequence[LmeQuestion],
    ks: Sequence[int],
    *,
    roles: Roles = "user",
    search_k: int = 50,
    shown: int = SHOWN,
    seeds: Sequence[int] = (0, 1, 2),
    promotions: Sequence[str] = ("guarded", "always"),
    fit_every: int | None = None,
    progress: Any = None,
) -> list[BenchResult]:
    """``online-baseline``, then per promotion mode one result per seed of citation noise and their
    mean (``online`` for guarded, ``online-<mode>`` otherwise) with ``<metric>/gain`` = mean − baseline
    and ``<metric>/std`` over seeds for session_recall_all@k and turn_recall_any@k.

    ``fit_every``: feedbacks between the learner's refits and promotion tests (None: the learner's
    own, 50 for memq's; the variant names gain ``-fit<N>``)."""
    if fit_every is not None and fit_every < 1:
        raise InvalidInputError(f"fit_every must be >= 1, got {fit_every}")
    if search_k < max(ks):
        raise InvalidInputError(f"search_k ({search_k}) must be >= the largest k ({max(ks)})")
    train, test = split(questions)
    if not any(evidence(q, roles) for q in train) or not any(not q.abstention for q in test):
        raise InvalidInputError(
            f"the online variant needs questions to train on and to evaluate (got {len(questions)})"
        )
    config: dict[str, Any] = {
        "k": list(ks),
        "search_k": search_k,
        "roles": roles,
        "shown": shown,
        "noise": NOISE,
        "split": "train = even positions, eval = odd positions (0-based, file order)",
        "train_questions": [q.question_id for q in train],
        "eval_questions": [q.question_id for q in test],
        "fit_every": fit_every,
    }
    started = time.perf_counter()
    base_system = Timed(make_system("memq", embedder))
    try:
        tick = progress_tick(progress, f"{name} online-baseline: haystacks", len(questions))
        for q in train:  # the same corpus as the learner's, training questions not asked
            ingest_haystack(base_system, q, roles)
            if tick:
                tick()
        run = run_retrieval(base_system, test, ks, roles=roles, search_k=search_k, on_question=tick)
        base = run.metrics() | base_system.latency_metrics()
    finally:
        base_system.close()
    results = [_result(name, "online-baseline", base, time.perf_counter() - started, config)]
    for mode in promotions:
        results += _learner_runs(
            name,
            embedder,
            train,
            test,
            ks,
            base,
            config,
            roles=roles,
            search_k=search_k,
            shown=shown,
            seeds=seeds,
            promotion=mode,
            progress=progress,
        )
    return results


def summarize(per_seed: Sequence[dict[str, float]], base: dict[str, float]) -> dict[str, float]:
    """The mean over seeds of every metric all seeds have; ``<metric>/gain`` = mean − ``base`` for the
    recall and nDCG metrics; ``<metric>/std`` (over seeds) for session_recall_all@k and turn_recall_any@k."""
    spread = [key for key in per_seed[0] if key.startswith(_SPREAD_PREFIXES) and "/" not in key]
    return seed_summary(per_seed, base, gain=_GAIN_PREFIXES, spread=spread)


def _learner_runs(
    name: str,
    embedder: Embedder,
    train: Sequence[LmeQuestion],
    test: Sequence[LmeQuestion],
    ks: Sequence[int],
    base: dict[str, float],
    config: dict[str, Any],
    *,
    roles: Roles,
    search_k: int,
    shown: int,
    seeds: Sequence[int],
    promotion: str,
    progress: Any,
) -> list[BenchResult]:
    """One promotion mode: a run per seed, then their mean with gains over ``base``."""
    variant = "online" if promotion == "guarded" else f"online-{promotion}"
    learning: dict[str, Any] = {"promotion": promotion}
    options: dict[str, Any] = {}
    if config["fit_every"] is not None:
        variant += f"-fit{config['fit_every']}"
        learning["update_every"] = config["fit_every"]  # learners without a fit of their own (memrl)
        if MEMQ_PRESETS[name][1] in ("memq", "memento_q"):
            options["learner_params"] = {"fit_every": config["fit_every"]}

    def run_seed(seed: int) -> dict[str, float]:
        system = Timed(make_system(name, embedder, learning=learning, seed=seed, **options))
        if not isinstance(system.system, LearningSystem):
            system.close()
            raise InvalidInputError(f"{name} does not learn from feedback")
        tick = progress_tick(progress, f"{name} {variant} seed {seed}: questions", len(train) + len(test))
        try:
            rewards = _train(
                system, train, CitingAgent(np.random.default_rng(seed)), roles=roles, shown=shown, tick=tick
            )
            run, learned = frozen_evaluation(
                system,
                rewards,
                lambda: run_retrieval(system, test, ks, roles=roles, search_k=search_k, on_question=tick),
                feedback_counts=True,
            )
            metrics = run.metrics() | system.latency_metrics()
        finally:
            system.close()
        return metrics | learned

    return seeded_results(
        variant,
        seeds,
        run_seed,
        lambda per_seed: summarize(per_seed, base),
        functools.partial(_result, name),
        seed_config=lambda seed: {**config, "seed": seed, "promotion": promotion},
        summary_config={**config, "seeds": list(seeds), "promotion": promotion},
    )


def run_online_benchmark(
    questions: Sequence[LmeQuestion],
    systems: Sequence[str],
    embedder: Embedder,
    *,
    ks: Sequence[int] = (5, 10),
    roles: Roles = "user",
    search_k: int = 50,
    seeds: Sequence[int] = (0, 1, 2),
    promotions: Sequence[str] = ("guarded", "always"),
    fit_every: int | None = None,
    results: ResultsFile | None = None,
    hooks: RunHooks = NO_HOOKS,
) -> ResultsFile:
    """Warm the embedding cache (documents and questions), then the online variant of every learner
    preset in ``systems`` (others are skipped), appended to ``results`` (a new file if None)."""
    from memq_bench.locomo_online import supports_online

    learners = [s for s in systems if supports_online(s)]
    if not learners:
        raise InvalidInputError(
            f"the online variant needs a learner preset among --systems (e.g. memq-memq), got {list(systems)}"
        )
    out = results if results is not None else hooks.new_results("longmemeval")
    texts = embed_texts(questions, roles)
    embedded, seconds = warm_cache(embedder, texts, on_batch=hooks.tick("embedding (cached)", len(texts)))
    for q in questions:
        embedder.embed_query(q.question)
    out.extra.setdefault(
        "embedding",
        {"texts": len(texts), "embedded_now": embedded, "seconds": seconds, "model": embedder.model_id},
    )
    for name in learners:
        out.results += run_online(
            name,
            embedder,
            questions,
            ks,
            roles=roles,
            search_k=search_k,
            seeds=seeds,
            promotions=promotions,
            fit_every=fit_every,
            progress=hooks.progress,
        )
        hooks.save(out)
    skipped = [s for s in systems if s not in learners]
    if skipped:
        out.extra.setdefault("notes", []).append(
            f"online variant skipped for fixed systems: {', '.join(skipped)}"
        )
    return out
