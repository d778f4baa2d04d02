"""The test-time-learning stream benchmark (``memq bench ttl``), run through memq itself.

Any ``text,label`` CSV becomes a stream, shuffled by seed. At each step an LLM-free agent searches
:class:`memq.Memory` (k records, ``policy`` = the learner under test), predicts the label by a
similarity-weighted vote of the shown records' stored labels, reports as ``used`` the shown records
whose label it predicted, and gets reward 1 if right, 0 if wrong (:meth:`Memory.feedback`). It then
writes the step with :meth:`Memory.remember_experience` with the revealed label — replaced, with
probability p (``noise``), by a wrong label: a poisoned experience that looks similar but misleads.
``oracle`` is the recipe over clean records only (a filter), the ceiling; ``similarity`` is the recipe
with no learning, the baseline. Every search, feedback and write is the library's real path on a
SQLite store; embeddings are computed once (cached on disk) and served by a lookup embedder, so the
per-step cost measured is memq's own.
"""

from __future__ import annotations

import csv
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memq.errors import InvalidInputError
from memq_bench.results import BenchResult, ResultsFile, machine_info

CURVE_WINDOW = 250
LEARNER_ORDER = ("similarity", "memrl", "memento_q", "memq", "oracle")  # baseline first, ceiling last
LABEL_COLUMNS = ("label", "category", "intent", "class", "labels")


@dataclass
class Dataset:
    path: str
    texts: list[str]
    labels: list[str]


def load_labelled_csv(path: str | Path) -> Dataset:
    """Read a ``text,label`` CSV (header required; quoted newlines allowed; texts stripped)."""
    p = Path(path)
    if not p.exists():
        raise InvalidInputError(f"{p} does not exist")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        try:
            header = [h.strip().lower() for h in next(reader)]
        except StopIteration as exc:
            raise InvalidInputError(f"{p} is empty") from exc
        if "text" in header:
            ti = header.index("text")
            li = next((header.index(c) for c in LABEL_COLUMNS if c in header), 1 if ti == 0 else 0)
        else:
            ti, li = 0, 1
        texts, labels = [], []
        for n, row in enumerate(reader, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) <= max(ti, li):
                raise InvalidInputError(f"{p}, row {n}: expected a text and a label column")
            text, label = row[ti].strip(), row[li].strip()
            if not text or not label:
                raise InvalidInputError(f"{p}, row {n}: empty text or label")
            texts.append(text)
            labels.append(label)
    if len(set(labels)) < 2:
        raise InvalidInputError(f"{p} needs at least two distinct labels")
    return Dataset(str(p), texts, labels)


@dataclass
class RunSpec:
    learner: str
    noise: float
    seed: int
    k: int
    max_steps: int | None
    credit: str = "used"
    params: dict[str, Any] = field(default_factory=dict)
    learning: dict[str, Any] = field(default_factory=dict)  # LearningConfig overrides (e.g. promotion)


@dataclass
class RunResult:
    learner: str
    noise: float
    seed: int
    k: int
    steps: int
    last2000: float
    overall: float
    test: float | None
    curve: list[float]
    seconds: float
    poisoned: int
    quarters: list[float] = field(default_factory=list)  # accuracy per quarter of the stream
    ms_per_step: float = 0.0  # search + feedback + write, through Memory (embedding is a lookup)
    served_from: int | None = None  # the step from which the learner served (promoted), if it did


class LookupEmbedder:
    """Vectors computed once, looked up by text (the stream's texts only)."""

    def __init__(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.model_id, self.dim = model_id, int(vectors.shape[1])
        self._index = {t: i for i, t in enumerate(texts)}
        self._vectors = vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self._vectors[self._index[text]]

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._index[t] for t in texts]]


def _vote(
    hits: Sequence[Any], train_vecs: np.ndarray, stored_at: np.ndarray, x: np.ndarray, n_labels: int
) -> tuple[int, list[str]]:
    """The agent: a similarity-weighted vote of the shown records' labels; ``used`` = the shown
    records whose label it predicted (-1 and none with nothing shown)."""
    if not hits:
        return -1, []
    labels = np.array([int(h.record.payload["answer"]) for h in hits])
    sims = np.array([float(train_vecs[stored_at[int(h.record.metadata["i"])]] @ x) for h in hits])
    score = np.zeros(n_labels)
    np.add.at(score, labels, np.maximum(sims, 1e-6))
    pred = int(score.argmax())
    return pred, [h.record.id for h, lab in zip(hits, labels, strict=True) if lab == pred]


def run_stream(
    spec: RunSpec,
    model_id: str,
    train_texts: Sequence[str],
    train_vecs: np.ndarray,
    train_labels: np.ndarray,
    n_labels: int,
    test_texts: Sequence[str] | None = None,
    test_vecs: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
    workdir: str | Path | None = None,
) -> RunResult:
    """One (learner, noise, seed) run over the stream through :class:`memq.Memory`, then the frozen test."""
    from memq import Memory, MemoryConfig

    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(train_labels))
    if spec.max_steps:
        order = order[: spec.max_steps]
    steps = len(order)
    oracle = spec.learner == "oracle"
    policy = "similarity" if oracle else spec.learner
    texts = list(train_texts) + list(test_texts or [])
    vectors = train_vecs if test_vecs is None else np.concatenate([train_vecs, test_vecs])
    config = MemoryConfig(
        seed=spec.seed,
        learner_params={policy: spec.params} if spec.params else {},
        learning={"learner": policy, **spec.learning},
    )
    filters = {"metadata.clean": True} if oracle else None
    correct = np.zeros(steps)
    stored_at = np.zeros(steps, dtype=np.int64)  # record i holds stream row stored_at[i]
    clean = np.zeros(steps, dtype=bool)
    served_from = None
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        mem = Memory(
            Path(tmp) / "ttl.db",
            embedder=LookupEmbedder(model_id, texts, vectors),
            config=config,
            scope="ttl",
        )
        try:
            loop_started = time.perf_counter()
            for t, row in enumerate(order):
                x, y = train_vecs[row], int(train_labels[row])
                result = mem.search(train_texts[row], k=spec.k, policy=policy, filters=filters)
                pred, used = _vote(result.hits, train_vecs, stored_at, x, n_labels)
                reward = 1.0 if pred == y else 0.0
                correct[t] = reward
                if result.hits:
                    mem.feedback(
                        result.id, reward, used=used, credit=spec.credit if spec.credit != "used" else None
                    )
                if served_from is None and result.policy == spec.learner:
                    served_from = t
                label = y
                if rng.random() < spec.noise:  # a poisoned experience: a wrong label
                    wrong = int(rng.integers(n_labels - 1))
                    label = wrong + (wrong >= y)
                stored_at[t], clean[t] = row, label == y
                mem.remember_experience(
                    train_texts[row], str(label), "success", 1.0, metadata={"i": t, "clean": bool(label == y)}
                )
            ms_per_step = 1000 * (time.perf_counter() - loop_started) / max(steps, 1)
            test_acc = None
            if (
                test_texts is not None
                and test_vecs is not None
                and test_labels is not None
                and len(test_labels)
            ):
                mem.config.log_retrievals = False  # memory frozen: nothing is logged or learned
                mem.config.learning.explore = 0.0
                hits = 0
                for text, x, y in zip(test_texts, test_vecs, test_labels, strict=True):
                    result = mem.search(text, k=spec.k, policy=policy, filters=filters)
                    hits += _vote(result.hits, train_vecs, stored_at, x, n_labels)[0] == int(y)
                test_acc = hits / len(test_labels)
        finally:
            mem.close()
    window = min(CURVE_WINDOW, steps)
    curve = [float(correct[i : i + window].mean()) for i in range(0, steps - window + 1, window)]
    return RunResult(
        learner=spec.learner,
        noise=spec.noise,
        seed=spec.seed,
        k=spec.k,
        steps=steps,
        last2000=float(correct[-2000:].mean()),
        overall=float(correct.mean()),
        test=test_acc,
        curve=curve,
        seconds=time.perf_counter() - started,
        poisoned=int((~clean).sum()),
        quarters=[float(part.mean()) for part in np.array_split(correct, 4) if len(part)],
        ms_per_step=ms_per_step,
        served_from=served_from,
    )


# ------------------------------------------------------------------------------------------------
# Orchestration: embed once (cached on disk), run every (learner, noise, seed) in worker processes.

_SHARED: dict[str, Any] = {}


def _worker_init() -> None:
    """One thread per worker: BLAS threads would otherwise fight over the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _run_job(spec: RunSpec) -> RunResult:
    s = _SHARED
    return run_stream(
        spec,
        s["model_id"],
        s["train_texts"],
        s["train_vecs"],
        s["train_labels"],
        s["n_labels"],
        s.get("test_texts"),
        s.get("test_vecs"),
        s.get("test_labels"),
    )


def embed_texts(
    texts: Sequence[str], cache_path: Path, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """Default-embedder vectors of ``texts``, through a persistent content-hash cache (each text once)."""
    from memq.embed import CachedEmbedder, default_embedder

    cache_path.parent.mkdir(parents=True, exist_ok=True)
    embedder = CachedEmbedder(default_embedder(), path=str(cache_path))
    out = []
    for i in range(0, len(texts), 512):
        out.append(embedder.embed_documents(list(texts[i : i + 512])))
        if progress:
            progress(min(512, len(texts) - i))
    return np.concatenate(out).astype(np.float32)


def _seeded(learner: str, seed: int) -> dict[str, Any]:
    """Learners with their own randomness get the run's seed."""
    return {"seed": seed} if learner == "memento_q" else {}


def similarity_stats(vecs: np.ndarray, pairs: int = 20_000, seed: int = 0) -> tuple[float, float]:
    """Mean and std of cosine similarity between random pairs (MemRL's corpus statistics)."""
    rng = np.random.default_rng(seed)
    a = vecs[rng.integers(len(vecs), size=pairs)]
    b = vecs[rng.integers(len(vecs), size=pairs)]
    sims = (a * b).sum(axis=1)
    return float(sims.mean()), float(sims.std())


def run_benchmark(
    train: Dataset,
    test: Dataset | None,
    *,
    learners: Sequence[str],
    noises: Sequence[float],
    seeds: int,
    k: int,
    max_steps: int | None,
    jobs: int,
    cache_path: Path,
    on_embed: Callable[[int], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    names = sorted(set(train.labels) | (set(test.labels) if test else set()))
    index = {n: i for i, n in enumerate(names)}
    train_vecs = embed_texts(train.texts, cache_path, on_embed)
    test_vecs = embed_texts(test.texts, cache_path, on_embed) if test else None
    mean, std = similarity_stats(train_vecs)
    params: dict[str, dict[str, Any]] = {"memrl": {"sim_mean": mean, "sim_std": std}}
    from memq.embed import default_embedder

    _SHARED.update(
        model_id=default_embedder().model_id,
        train_texts=list(train.texts),
        test_texts=None if test is None else list(test.texts),
        train_vecs=train_vecs,
        train_labels=np.array([index[x] for x in train.labels]),
        n_labels=len(names),
        test_vecs=test_vecs,
        test_labels=None if test is None else np.array([index[x] for x in test.labels]),
    )
    specs = [
        RunSpec(name, noise, seed, k, max_steps, params={**params.get(name, {}), **_seeded(name, seed)})
        for noise in noises
        for name in [*learners, "oracle"]
        for seed in range(seeds)
    ]
    runs: list[RunResult] = []
    if jobs <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # one thread while running in this process
            for spec in specs:
                runs.append(_run_job(spec))
                if on_run:
                    on_run(runs[-1])
    else:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            max_workers=jobs, mp_context=mp.get_context("fork"), initializer=_worker_init
        ) as ex:
            futures = [ex.submit(_run_job, spec) for spec in specs]
            for fut in as_completed(futures):
                runs.append(fut.result())
                if on_run:
                    on_run(runs[-1])
    return _summarise(runs, train, test, k, seeds, max_steps, params, time.perf_counter() - started)


def _summarise(
    runs: list[RunResult],
    train: Dataset,
    test: Dataset | None,
    k: int,
    seeds: int,
    max_steps: int | None,
    params: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    from memq import __version__

    results = []
    for learner, noise in sorted({(r.learner, r.noise) for r in runs}, key=lambda x: (x[1], x[0])):
        group = sorted((r for r in runs if r.learner == learner and r.noise == noise), key=lambda r: r.seed)
        last = np.array([r.last2000 for r in group])
        overall = np.array([r.overall for r in group])
        entry: dict[str, Any] = {
            "learner": learner,
            "noise": noise,
            "k": k,
            "seeds": len(group),
            "steps": group[0].steps,
            "last2000_mean": float(last.mean()),
            "last2000_std": float(last.std()),
            "overall_mean": float(overall.mean()),
            "overall_std": float(overall.std()),
            "seconds": float(sum(r.seconds for r in group)),
            "ms_per_step": float(np.mean([r.ms_per_step for r in group])),
            "served_from": [r.served_from for r in group],
            "curve": [float(v) for v in np.mean([r.curve for r in group], axis=0)],
            "per_seed": {"last2000": last.tolist(), "overall": overall.tolist()},
        }
        if all(len(r.quarters) == 4 for r in group):
            entry["quarters"] = [float(v) for v in np.mean([r.quarters for r in group], axis=0)]
        if group[0].test is not None:
            tests = np.array([r.test for r in group])
            entry.update(test_mean=float(tests.mean()), test_std=float(tests.std()))
            entry["per_seed"]["test"] = tests.tolist()
        results.append(entry)
    _gap_closed(results)
    return {
        "benchmark": "ttl",
        "data": train.path,
        "test": test.path if test else None,
        "rows": len(train.texts),
        "labels": len(set(train.labels)),
        "k": k,
        "seeds": seeds,
        "max_steps": max_steps,
        "credit": "used",
        "curve_window": CURVE_WINDOW,
        "learner_params": params,
        "seconds": seconds,
        "versions": {"memq": __version__, "numpy": np.__version__, "python": platform.python_version()},
        "machine": machine_info(),
        "results": results,
    }


def _gap_closed(results: list[dict[str, Any]]) -> None:
    """gap closed = (learner − similarity) / (oracle − similarity), on the last-2,000 window."""
    for noise in {r["noise"] for r in results}:
        by = {r["learner"]: r for r in results if r["noise"] == noise}
        if "similarity" not in by or "oracle" not in by:
            continue
        base, top = by["similarity"]["last2000_mean"], by["oracle"]["last2000_mean"]
        for r in by.values():
            r["gap_closed"] = None if top - base <= 1e-9 else (r["last2000_mean"] - base) / (top - base)


def dataset_name(path: str | Path) -> str:
    """``banking77`` for ``.../banking77/train.csv``; the file stem for any other CSV."""
    p = Path(path)
    return p.parent.name if p.stem.lower() in ("train", "test", "dev", "valid") and p.parent.name else p.stem


def variant_name(noise: float) -> str:
    return f"p={noise:g}"


def to_results_file(report: dict[str, Any], created_at: datetime | None = None) -> ResultsFile:
    """The shared results schema: one entry per (learner, noise); curves and per-seed values in ``extra``.

    Metrics: ``acc_last2000`` (accuracy on the final 2,000 steps, mean over seeds), ``acc_overall``,
    ``acc_test`` (held-out, memory frozen) with ``_std`` companions, and ``gap_closed`` =
    (learner − similarity) / (oracle − similarity) on the final window where the gap is non-zero.
    """
    dataset = dataset_name(report["data"])
    results, curves, per_seed = [], [], []
    order = {name: i for i, name in enumerate(LEARNER_ORDER)}
    for r in sorted(report["results"], key=lambda r: (r["noise"], order.get(r["learner"], 99), r["learner"])):
        metrics = {
            "acc_last2000": r["last2000_mean"],
            "acc_last2000_std": r["last2000_std"],
            "acc_overall": r["overall_mean"],
            "acc_overall_std": r["overall_std"],
        }
        if "test_mean" in r:
            metrics.update(acc_test=r["test_mean"], acc_test_std=r["test_std"])
        for i, q in enumerate(r.get("quarters", []), start=1):
            metrics[f"acc_q{i}"] = q
        if r.get("gap_closed") is not None:
            metrics["gap_closed"] = r["gap_closed"]
        if r.get("ms_per_step"):
            metrics["ms_per_step"] = r["ms_per_step"]  # search + feedback + write through Memory
        served = [s for s in r.get("served_from") or [] if s is not None]
        if served:  # the stream step from which the learner ranked (promoted), mean over seeds
            metrics["served_from_step"] = float(np.mean(served))
        variant = variant_name(r["noise"])
        config = {
            "noise": r["noise"],
            "k": r["k"],
            "seeds": r["seeds"],
            "steps": r["steps"],
            "credit": report.get("credit", "used"),
        }
        params = report.get("learner_params", {}).get(r["learner"])
        if params:
            config["params"] = params
        results.append(
            BenchResult(
                system=r["learner"],
                dataset=dataset,
                variant=variant,
                config=config,
                metrics=metrics,
                seconds=r["seconds"],
                versions=report.get("versions", {}),
            )
        )
        window = report.get("curve_window", CURVE_WINDOW)
        curves.append(
            {
                "system": r["learner"],
                "variant": variant,
                "noise": r["noise"],
                "step": [window * (i + 1) for i in range(len(r["curve"]))],
                "accuracy": r["curve"],
            }
        )
        per_seed.append({"system": r["learner"], "variant": variant, **r.get("per_seed", {})})
    args = {key: report.get(key) for key in ("data", "test", "k", "seeds", "max_steps", "credit", "command")}
    args["noise"] = sorted({r["noise"] for r in report["results"]})
    args["learners"] = sorted({r["learner"] for r in report["results"]})
    extra = {
        "rows": report.get("rows"),
        "labels": report.get("labels"),
        "seconds": report.get("seconds"),
        "curve_window": report.get("curve_window", CURVE_WINDOW),
        "learner_params": report.get("learner_params", {}),
        "curves": curves,
        "per_seed": per_seed,
    }
    kwargs: dict[str, Any] = {"created_at": created_at} if created_at else {}
    if report.get("machine"):
        kwargs["machine"] = {"python": report.get("versions", {}).get("python"), **report["machine"]}
    return ResultsFile(benchmark="ttl", args=args, results=results, extra=extra, **kwargs)


def results_file_from_legacy(raw: dict[str, Any]) -> ResultsFile:
    """Read a file written by the first ``memq bench ttl`` (its own JSON shape) as a results file."""
    return to_results_file(raw)


def run_with_progress(
    train: Dataset, test: Dataset | None, *, console: Any = None, **kwargs: Any
) -> dict[str, Any]:
    """:func:`run_benchmark` with two progress bars (embedding, stream runs) on ``console``."""
    from memq_bench.tables import bench_progress

    learners, noises, seeds = kwargs["learners"], kwargs["noises"], kwargs["seeds"]
    total_runs = len(noises) * (len(learners) + 1) * seeds
    n_texts = len(train.texts) + (len(test.texts) if test else 0)
    with bench_progress(console) as bar:
        emb = bar.add_task("embedding (cached)", total=n_texts)
        runs = bar.add_task("stream runs", total=total_runs)
        return run_benchmark(
            train,
            test,
            on_embed=lambda n: bar.advance(emb, n),
            on_run=lambda r: bar.advance(runs, 1),
            **kwargs,
        )
