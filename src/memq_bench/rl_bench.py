"""``memq rl ...``: train write policies on FactConsolidation, evaluate them on held-out contexts.

* :func:`train_seeds` — GRPO (:mod:`memq.rl.grpo`) on episodes sampled from the 6k and 32k contexts
  (:class:`memq_bench.rl_fc.SampledEpisodes`), one policy file per seed, learning curves kept;
* :func:`evaluate_held_out` — the benchmark's own protocol (:func:`memq_bench.conflict.run_system`)
  on the 64k and 262k contexts, which training never saw: append-only (``supersession-off``), the
  rule-based supersession (``supersession-on``) and each learned policy (``Memory.add(fact,
  manager="learned:PATH")``, one fact per add), em@k by hop and length;
* :func:`to_results` — one results file with both (``extra.curves`` for the report's learning curves).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memq.embed.base import Embedder
from memq.rl.grpo import CurvePoint, GRPOConfig, train
from memq_bench.conflict import (
    DATASET,
    ConflictRow,
    SupersedingMemq,
    group_contexts,
    run_metrics,
    run_system,
)
from memq_bench.results import BenchResult, ResultsFile, package_versions
from memq_bench.rl_fc import HELD_OUT_LENGTHS, TRAIN_LENGTHS, FullContext, SampledEpisodes
from memq_bench.systems import BenchDoc, MemqSystem, Timed

KS = (1, 5)


@dataclass
class EpisodeSpec:
    """How training episodes are drawn (see :class:`SampledEpisodes`) and what the env charges."""

    questions: int = 4
    related: int = 6
    distractors: int = 8
    k: int = 5
    record_cost: float = 0.05


@dataclass
class TrainRun:
    seed: int
    policy_path: Path
    curve: list[CurvePoint]
    seconds: float
    final: dict[str, float] = field(default_factory=dict)


def train_seeds(
    rows: Sequence[ConflictRow],
    embedder: Embedder,
    *,
    seeds: Sequence[int],
    config: GRPOConfig,
    out_dir: str | Path,
    spec: EpisodeSpec | None = None,
    lengths: Sequence[str] = TRAIN_LENGTHS,
    on_update: Callable[[int, CurvePoint], None] | None = None,
) -> list[TrainRun]:
    """Train one policy per seed; each is saved as ``<out_dir>/rl-policy-seed<N>.json``."""
    from dataclasses import replace

    from memq.rl.env import MemoryOpsEnv

    spec = spec or EpisodeSpec()
    contexts = group_contexts(rows, lengths)
    # validation: the smallest training context whole, as the benchmark streams it (training samples
    # slices of it; a policy that only looks good on short slices shows here)
    validation = [FullContext(min(contexts, key=lambda c: len(c.facts))).episode()]
    source = SampledEpisodes(
        contexts,
        embedder,
        questions=spec.questions,
        related=spec.related,
        distractors=spec.distractors,
    )
    runs = []
    for seed in seeds:
        env = MemoryOpsEnv(source, embedder, k=spec.k, record_cost=spec.record_cost)
        try:
            hook = (lambda p, s=seed: on_update(s, p)) if on_update else None
            result = train(env, replace(config, seed=seed), validation=validation, on_update=hook)
        finally:
            env.close()
        result.policy.meta.update(
            {"episodes": asdict(spec), "train_lengths": list(lengths), "dataset": DATASET}
        )
        path = result.policy.save(Path(out_dir) / f"rl-policy-seed{seed}.json")
        last = result.curve[-1]
        final = {
            "best_update": float(result.best_update),
            "train_return_last": last.reward_mean,
            "val_em_first": float(result.curve[0].eval_em or 0.0),
            "val_em_last": float(last.eval_em or 0.0),
            "val_em_best": max(float(p.eval_em) for p in result.curve if p.eval_em is not None),
            "val_return_last": float(last.eval_return or 0.0),
            "train_seconds": result.seconds,
        }
        runs.append(TrainRun(seed, path, result.curve, result.seconds, final))
    return runs


class LearnedMemq(MemqSystem):
    """A memq preset whose facts go through ``manager="learned:PATH"``, one fact per add."""

    def __init__(self, preset: str, embedder: Embedder, policy_path: str | Path, **kwargs: Any) -> None:
        super().__init__(preset, embedder, **kwargs)
        self.manager = f"learned:{policy_path}"
        self.decisions: Counter[str] = Counter()

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        from memq.types import NewRecord

        for d in docs:
            item = NewRecord(text=d.text, metadata={"key": d.key, **d.meta}, valid_from=d.when)
            result = self.memory.add(item, scope=self._scope(space), manager=self.manager)
            self.decisions.update(dec.op for dec in result.decisions)
            self._records += sum(dec.op == "ADD" for dec in result.decisions)


def evaluate_held_out(
    rows: Sequence[ConflictRow],
    embedder: Embedder,
    policies: Sequence[tuple[str, Path]],
    *,
    lengths: Sequence[str] = HELD_OUT_LENGTHS,
    baselines: bool = True,
    max_facts: int | None = None,
    progress: Any = None,
) -> list[BenchResult]:
    """em@k of append-only, rule-based supersession and each policy on ``lengths`` (default 64k, 262k)."""
    contexts = group_contexts(rows, lengths)
    systems: list[tuple[str, str, Callable[[], MemqSystem]]] = []
    if baselines:
        systems += [
            ("memq", "supersession-off", lambda: MemqSystem("memq", embedder)),
            ("memq", "supersession-on", lambda: SupersedingMemq("memq", embedder)),
        ]
    systems += [(name, "learned", lambda p=path: LearnedMemq("memq", embedder, p)) for name, path in policies]
    n_facts = sum(len(c.facts[:max_facts]) for c in contexts)
    out = []
    versions = package_versions()
    for name, variant, build in systems:
        started = time.perf_counter()
        system = Timed(build())
        task = progress.add_task(f"{name} [{variant}] facts", total=n_facts) if progress is not None else None
        try:
            run = run_system(
                system,
                contexts,
                KS,
                chunk=100,
                variant=variant,
                max_facts=max_facts,
                on_facts=(lambda n, t=task: progress.advance(t, n)) if task is not None else None,
            )
            metrics = {**run_metrics(run, KS), **system.latency_metrics()}
        finally:
            system.close()
        inner = system.system
        if isinstance(inner, LearnedMemq):
            for op in ("ADD", "UPDATE", "INVALIDATE", "NOOP"):
                metrics[f"decisions_{op.lower()}"] = float(inner.decisions.get(op, 0))
        notes = []
        if variant == "learned":
            notes.append(
                f"each fact written by Memory.add(fact, manager='learned:{Path(dict(policies)[name]).name}')"
            )
        out.append(
            BenchResult(
                system=name,
                dataset=DATASET,
                variant=variant,
                config={"k": list(KS), "lengths": [c.length for c in contexts], "max_facts": max_facts},
                metrics=metrics,
                seconds=time.perf_counter() - started,
                versions=versions,
                notes=notes,
            )
        )
    return out


def mean_row(results: Sequence[BenchResult], name: str = "learned (mean of seeds)") -> BenchResult | None:
    """The mean (and ``…_std``) of every em metric over the learned policies' results."""
    learned = [r for r in results if r.variant == "learned"]
    if len(learned) < 2:
        return None
    keys = [k for k in learned[0].metrics if k.startswith("em@")]
    metrics: dict[str, float] = {}
    for k in keys:
        values = np.array([r.metrics[k] for r in learned])
        metrics[k], metrics[f"{k}_std"] = float(values.mean()), float(values.std())
    return BenchResult(
        system=name,
        dataset=DATASET,
        variant="learned",
        config=dict(learned[0].config),
        metrics=metrics,
        seconds=sum(r.seconds for r in learned),
        versions=dict(learned[0].versions),
        notes=[f"mean ± std over {len(learned)} seeds: " + ", ".join(r.system for r in learned)],
    )


def curves(runs: Sequence[TrainRun]) -> list[dict[str, Any]]:
    """Learning curves in the report's format (``extra.curves``: system, variant, step, accuracy)."""
    out = []
    for run in runs:
        evals = [p for p in run.curve if p.eval_em is not None]
        trains = [p for p in run.curve if p.update > 0]
        out.append(
            {
                "system": f"seed {run.seed}",
                "variant": "validation em@1 (greedy policy, the whole 6k context)",
                "step": [p.update for p in evals],
                "accuracy": [p.eval_em for p in evals],
            }
        )
        out.append(
            {
                "system": f"seed {run.seed}",
                "variant": "training return (sampled rollouts, EM − record cost)",
                "step": [p.update for p in trains],
                "accuracy": [p.reward_mean for p in trains],
            }
        )
    return out


def to_results(
    runs: Sequence[TrainRun],
    held_out: Sequence[BenchResult],
    *,
    args: dict[str, Any],
    config: GRPOConfig,
    spec: EpisodeSpec,
) -> ResultsFile:
    rf = ResultsFile(benchmark="rl", args=args)
    versions = package_versions()
    for run in runs:
        rf.results.append(
            BenchResult(
                system=f"seed {run.seed}",
                dataset=DATASET,
                variant="training",
                seed=run.seed,
                config={"lengths": list(TRAIN_LENGTHS), "policy": run.policy_path.name},
                metrics=run.final,
                seconds=run.seconds,
                versions=versions,
            )
        )
    rf.results += list(held_out)
    avg = mean_row(held_out)
    if avg is not None:
        rf.results.append(avg)
    rf.extra = {
        "curves": curves(runs),
        "curve_x_label": "GRPO update",
        "curve_y_label": "em@1 / return",
        "grpo": asdict(config),
        "episodes": asdict(spec),
        "training": [{"seed": r.seed, "curve": [asdict(p) for p in r.curve]} for r in runs],
    }
    return rf
