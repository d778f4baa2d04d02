"""``memq evolve``: a search over memq's own design space (MemEvolve / ALMA style) on LoCoMo.

The space (one trial = one configuration, :func:`suggest`):

* retrieval (``SearchOptions``): fusion (weighted / RRF), the dense weight w (lexical 1 − w), the
  link-spreading weight, the candidate pool per signal, recency (off, or a half-life and a weight),
  MMR (off, or λ);
* write path: the embedder (``--embedders``) and the write manager (``append``; ``dedupe`` with its
  cosine threshold; ``learned:PATH`` with ``--policy``; ``reconcile`` with ``--llm``).

Objectives (Optuna's multi-objective TPE): evidence recall@5 over LoCoMo categories 1–4 (maximise),
search latency p50 in ms (minimise) and, when an LLM manager is in the space, LLM tokens per add
(minimise). Protocol: ``memq bench locomo``'s own — turns added one by one with ``follows`` links,
every question with evidence asked with k = 50, recall@5 read off the ranking.

The split is fixed: the **search half** (conversations 1–5) is the only data the study evaluates on;
the **held-out half** (6–10) is evaluated once at the end, for the chosen configuration (best recall@5
on the Pareto front, ties to the lower latency) and for today's default, side by side. Stores are
ingested once per (embedder, manager) and reused by every trial that shares them.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.locomo import Conversation
from memq_bench.locomo_bench import (
    DATASET,
    EvidenceCounts,
    Scored,
    aggregate,
    ask,
    ingest,
    questions_of,
    turn_docs,
)
from memq_bench.results import BenchResult, ResultsFile, package_versions
from memq_bench.systems import MemqSystem, Timed

SEARCH_HALF = (0, 1, 2, 3, 4)  # conversations 1–5 (0-based indices)
HELD_OUT_HALF = (5, 6, 7, 8, 9)  # conversations 6–10
ASK_K = 50  # as `memq bench locomo`
KS = (1, 5, 10)
LLM_MANAGERS = ("reconcile",)
DEFAULT_PARAMS: dict[str, Any] = {
    "fusion": "weighted",
    "w_dense": 0.4,
    "link_weight": 0.5,
    "pool": 200,
    "recency": False,
    "mmr": False,
}


@dataclass(frozen=True)
class WriteConfig:
    """What the stored records depend on: a store is ingested once per WriteConfig."""

    embedder: str = "minilm"
    manager: str = "append"
    threshold: float | None = None  # dedupe only

    @property
    def manager_params(self) -> dict[str, Any]:
        return {"threshold": self.threshold} if self.manager == "dedupe" and self.threshold else {}


@dataclass(frozen=True)
class Design:
    """One point of the space: search options (``SearchOptions`` fields) and the write configuration."""

    search: dict[str, Any]
    write: WriteConfig


def search_options(params: dict[str, Any]) -> dict[str, Any]:
    """``SearchOptions`` fields of a trial's parameters."""
    w = float(params["w_dense"])
    out: dict[str, Any] = {
        "fusion": params["fusion"],
        "weights": {"dense": round(w, 4), "lexical": round(1.0 - w, 4)},
        "link_weight": round(float(params["link_weight"]), 4),
        "candidates": int(params["pool"]),
    }
    if params.get("recency"):
        out["recency_half_life_days"] = round(float(params["half_life_days"]), 3)
        out["recency_weight"] = round(float(params["recency_weight"]), 4)
    if params.get("mmr"):
        out["mmr_lambda"] = round(float(params["mmr_lambda"]), 4)
    return out


def design_of(params: dict[str, Any], embedders: Sequence[str]) -> Design:
    manager = str(params.get("manager", "append"))
    threshold = float(params["threshold"]) if manager == "dedupe" else None
    write = WriteConfig(str(params.get("embedder", embedders[0])), manager, threshold)
    return Design(search_options(params), write)


def suggest(trial: Any, embedders: Sequence[str], managers: Sequence[str]) -> Design:
    """Draw one configuration from the space (conditional parameters only where they apply)."""
    params: dict[str, Any] = {
        "fusion": trial.suggest_categorical("fusion", ["weighted", "rrf"]),
        "w_dense": trial.suggest_float("w_dense", 0.0, 1.0),
        "link_weight": trial.suggest_float("link_weight", 0.0, 1.0),
        "pool": trial.suggest_int("pool", 50, 400, step=50),
        "recency": trial.suggest_categorical("recency", [False, True]),
        "mmr": trial.suggest_categorical("mmr", [False, True]),
    }
    if params["recency"]:
        params["half_life_days"] = trial.suggest_float("half_life_days", 1.0, 720.0, log=True)
        params["recency_weight"] = trial.suggest_float("recency_weight", 0.0, 1.0)
    if params["mmr"]:
        params["mmr_lambda"] = trial.suggest_float("mmr_lambda", 0.3, 1.0)
    params["embedder"] = trial.suggest_categorical("embedder", list(embedders))
    params["manager"] = trial.suggest_categorical("manager", list(managers))
    if params["manager"] == "dedupe":
        params["threshold"] = trial.suggest_float("threshold", 0.85, 0.99, step=0.01)
    return design_of(params, embedders)


class Evaluator:
    """Ingests conversations per WriteConfig (cached) and scores a Design on a set of conversations.

    ``evaluated`` logs every (phase, conversation indices) it scored: the test checks that the
    held-out half never appears during the search.
    """

    def __init__(
        self,
        convs: Sequence[Conversation],
        embedder_for: Callable[[str], Embedder],
        *,
        llm: Any = None,
        progress: Any = None,
        workdir: str | Path | None = None,
    ) -> None:
        self.convs, self.embedder_for, self.llm, self.progress = convs, embedder_for, llm, progress
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="memq-evolve-"))
        self._systems: dict[tuple[WriteConfig, tuple[int, ...]], tuple[Timed, dict[str, float]]] = {}
        self.evaluated: list[tuple[str, tuple[int, ...]]] = []

    def _store(self, write: WriteConfig, indices: tuple[int, ...]) -> tuple[Timed, dict[str, float]]:
        key = (write, indices)
        if key in self._systems:
            return self._systems[key]
        folder = self.workdir / f"store-{len(self._systems)}"
        inner = MemqSystem("memq", self.embedder_for(write.embedder), workdir=folder)
        if write.manager != "append":  # every add of the harness goes through the write manager
            if write.manager in LLM_MANAGERS:
                if self.llm is None:
                    raise InvalidInputError(f"the {write.manager} manager needs --llm")
                inner.memory.llm = self.llm
            inner.memory.add = functools.partial(  # type: ignore[method-assign]
                inner.memory.add, manager=write.manager, manager_params=write.manager_params or None
            )
        system = Timed(inner)
        task = None
        if self.progress is not None:
            turns = sum(len(self.convs[i].turns) for i in indices)
            task = self.progress.add_task(f"ingest {write.embedder}/{write.manager}", total=turns)
        usage0 = _tokens(inner)
        for i in indices:
            hook = (lambda n, t=task: self.progress.advance(t, n)) if task is not None else None
            ingest(system, _space(self.convs[i], i), turn_docs(self.convs[i]), hook)
        if task is not None:
            self.progress.remove_task(task)
        adds = sum(len(self.convs[i].turns) for i in indices)
        cost = {
            "llm_tokens_per_add": (_tokens(inner) - usage0) / max(1, adds),
            "add_ms_p50": _p50(system.add_ms),
        }
        self._systems[key] = (system, cost)
        return system, cost

    def evaluate(self, design: Design, indices: Sequence[int], phase: str) -> dict[str, float]:
        """recall@k (categories 1–4 and per category), search latency and write cost of ``design``."""
        indices = tuple(indices)
        self.evaluated.append((phase, indices))
        system, cost = self._store(design.write, indices)
        inner = system.system
        assert isinstance(inner, MemqSystem)
        inner._options = dict(design.search)  # the harness reads its search options from here
        system.search_ms.clear()
        scored: list[Scored] = []
        for i in indices:
            asked = questions_of(self.convs[i], i, {}, EvidenceCounts())
            for a, ranked in ask(system, _space(self.convs[i], i), asked, ASK_K):
                scored.append(Scored(a.category, a.gold, ranked))
        metrics = aggregate(scored, KS)
        metrics["search_ms_p50"] = _p50(system.search_ms)
        metrics.update(cost)
        return metrics

    def close(self) -> None:
        for system, _ in self._systems.values():
            system.close()
        self._systems.clear()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _space(conv: Conversation, index: int) -> str:
    return f"{index + 1:02d}-{conv.sample_id}"


def _p50(samples: Sequence[float]) -> float:
    import numpy as np

    return float(np.percentile(samples, 50)) if samples else 0.0


def _tokens(system: MemqSystem) -> float:
    total = system.memory.usage().total
    return float(total.prompt_tokens + total.completion_tokens)


@dataclass
class EvolveResult:
    trials: list[dict[str, Any]]
    front: list[dict[str, Any]]
    chosen: Design
    chosen_search: dict[str, float]
    default_search: dict[str, float]
    chosen_held_out: dict[str, float]
    default_held_out: dict[str, float]
    evaluated: list[tuple[str, tuple[int, ...]]]
    objectives: list[str]
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)


def run_evolve(
    convs: Sequence[Conversation],
    embedder_for: Callable[[str], Embedder],
    *,
    trials: int = 40,
    search_half: Sequence[int] = SEARCH_HALF,
    held_out: Sequence[int] = HELD_OUT_HALF,
    embedders: Sequence[str] = ("minilm",),
    managers: Sequence[str] = ("append", "dedupe"),
    llm: Any = None,
    seed: int = 0,
    progress: Any = None,
    workdir: str | Path | None = None,
) -> EvolveResult:
    """Search the space on ``search_half`` only, then score the chosen design and the default on ``held_out``."""
    from memq.rl._extras import require

    optuna = require("optuna", "memq evolve")
    if trials < 1:
        raise InvalidInputError("--trials must be >= 1")
    if set(search_half) & set(held_out) or not search_half or not held_out:
        raise InvalidInputError("the search and held-out halves must be non-empty and disjoint")
    if max(*search_half, *held_out) >= len(convs):
        raise InvalidInputError(f"the data has {len(convs)} conversations; the split needs more")
    if any(m in LLM_MANAGERS for m in managers) and llm is None:
        raise InvalidInputError("the reconcile manager in the space needs an LLM (--llm SPEC)")
    uses_llm = any(m in LLM_MANAGERS for m in managers)
    objectives = ["recall@5", "search_ms_p50"] + (["llm_tokens_per_add"] if uses_llm else [])
    directions = ["maximize", "minimize"] + (["minimize"] if uses_llm else [])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():  # multivariate / group TPE are marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            seed=seed, multivariate=True, group=True, n_startup_trials=min(10, trials)
        )
    study = optuna.create_study(directions=directions, sampler=sampler)
    study.enqueue_trial(
        {**DEFAULT_PARAMS, "embedder": embedders[0], "manager": "append"}
    )  # trial 0: today's default
    evaluator = Evaluator(convs, embedder_for, llm=llm, progress=progress, workdir=workdir)
    designs: dict[int, Design] = {}
    scores: dict[int, dict[str, float]] = {}
    task = progress.add_task("evolve trials", total=trials) if progress is not None else None
    started = time.perf_counter()

    def objective(trial: Any) -> tuple[float, ...]:
        design = suggest(trial, embedders, managers)
        metrics = evaluator.evaluate(design, search_half, "search")
        designs[trial.number], scores[trial.number] = design, metrics
        if task is not None:
            progress.advance(task, 1)
        return tuple(metrics[o] for o in objectives)

    try:
        study.optimize(objective, n_trials=trials)
        front_numbers = {t.number for t in study.best_trials}
        chosen_n = max(front_numbers, key=lambda n: (scores[n]["recall@5"], -scores[n]["search_ms_p50"]))
        default = design_of({**DEFAULT_PARAMS, "manager": "append"}, embedders)
        default = Design({}, default.write)  # the default is SearchOptions() itself, not a copy of it
        chosen_held = evaluator.evaluate(designs[chosen_n], held_out, "held-out")
        default_held = evaluator.evaluate(default, held_out, "held-out")
    finally:
        evaluator.close()
    rows = [_trial_row(n, designs[n], scores[n], n in front_numbers) for n in sorted(designs)]
    return EvolveResult(
        trials=rows,
        front=[r for r in rows if r["pareto"]],
        chosen=designs[chosen_n],
        chosen_search=scores[chosen_n],
        default_search=scores[0],
        chosen_held_out=chosen_held,
        default_held_out=default_held,
        evaluated=list(evaluator.evaluated),
        objectives=objectives,
        seconds=time.perf_counter() - started,
    )


def _trial_row(n: int, design: Design, metrics: dict[str, float], pareto: bool) -> dict[str, Any]:
    return {
        "trial": n,
        "pareto": pareto,
        "search": design.search,
        "write": {
            "embedder": design.write.embedder,
            "manager": design.write.manager,
            **design.write.manager_params,
        },
        "metrics": {k: v for k, v in metrics.items() if not k.startswith("questions")},
    }


def memory_config(design: Design) -> Any:
    """The design as a :class:`memq.config.MemoryConfig` (what ``Memory(config=...)`` and ``memq serve --config`` load)."""
    from memq.config import MemoryConfig
    from memq.retrieve.pipeline import SearchOptions

    fields: dict[str, Any] = {"search": SearchOptions(**design.search), "embedder": design.write.embedder}
    if design.write.manager != "append":
        fields["manager"] = design.write.manager
        fields["manager_params"] = design.write.manager_params
    return MemoryConfig(**fields)


def write_config(design: Design, path: str | Path) -> Path:
    """The design as a config file holding only what differs from memq's defaults (so it keeps loading
    when MemoryConfig gains fields); ``MemoryConfig.load`` / ``Memory(config=path)`` read it."""
    import json

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    data = memory_config(design).model_dump(mode="json", exclude_defaults=True)
    p.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return p


def to_results(result: EvolveResult, args: dict[str, Any]) -> ResultsFile:
    """The run as a results file: search-half and held-out rows for the chosen design and the default."""
    versions = package_versions()
    out = ResultsFile(benchmark="evolve", args=args)
    rows = [
        ("memq default", "search-half", result.default_search, {}),
        ("memq evolved", "search-half", result.chosen_search, result.chosen.search),
        ("memq default", "held-out", result.default_held_out, {}),
        ("memq evolved", "held-out", result.chosen_held_out, result.chosen.search),
    ]
    for system, variant, metrics, search in rows:
        half = SEARCH_HALF if variant == "search-half" else HELD_OUT_HALF
        out.results.append(
            BenchResult(
                system=system,
                dataset=DATASET,
                variant=variant,
                config={"search": search, "conversations": [i + 1 for i in half], "k": ASK_K},
                metrics=metrics,
                seconds=result.seconds,
                versions=versions,
            )
        )
    held = result.chosen_held_out["recall@5"] - result.default_held_out["recall@5"]
    out.results[3].metrics["recall@5/gain_vs_default"] = held
    out.extra = {
        "objectives": result.objectives,
        "pareto": result.front,
        "trials": result.trials,
        "chosen": {"search": result.chosen.search, "write": _trial_row(0, result.chosen, {}, True)["write"]},
        "evaluated": [{"phase": p, "conversations": [i + 1 for i in idx]} for p, idx in result.evaluated],
        "config": result.config,
    }
    return out
