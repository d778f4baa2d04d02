"""The test-time-learning stream benchmark (``memq bench ttl``).

Any ``text,label`` CSV becomes a stream, shuffled by seed. At each step an LLM-free agent retrieves k
records with a learner, predicts the label by a similarity-weighted vote of the shown records'
stored labels, reports as ``used`` the shown records whose label it predicted, and gets reward 1 if
right, 0 if wrong; the learner learns from that feedback. The agent then writes the step as an
experience with the revealed label — replaced, with probability p (``noise``), by a wrong label:
a poisoned experience that looks similar but misleads. ``oracle`` is similarity over clean records
only, the ceiling.

Memory lives in arrays here (a 10k-step run makes 10k writes, searches and feedbacks; through the
SQLite store that would take minutes per run), but the learners are the same classes memq's search
uses, called through the same protocol (pool of candidates → ``select`` → ``update_record`` /
``observe`` → ``on_write``).
"""

from __future__ import annotations

import csv
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from memq.errors import InvalidInputError
from memq.learn import make_learner
from memq.learn.base import Outcome, PoolItem, top_k
from memq.learn.credit import assign_credit
from memq.types import Utility
from memq_bench.results import BenchResult, ResultsFile

POOL = 20  # candidates per query handed to the learner (top by similarity)
NEIGHBOURS = 16  # nearest stored records passed to on_write
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


def _vote(labels: np.ndarray, sims: np.ndarray, n_labels: int) -> int:
    if len(labels) == 0:
        return -1
    score = np.zeros(n_labels)
    np.add.at(score, labels, np.maximum(sims, 1e-6))
    return int(score.argmax())


def run_stream(
    spec: RunSpec,
    train_vecs: np.ndarray,
    train_labels: np.ndarray,
    n_labels: int,
    test_vecs: np.ndarray | None = None,
    test_labels: np.ndarray | None = None,
) -> RunResult:
    """One (learner, noise, seed) run over the stream, then the frozen-memory test."""
    started = time.perf_counter()
    rng = np.random.default_rng(spec.seed)
    order = rng.permutation(len(train_labels))
    if spec.max_steps:
        order = order[: spec.max_steps]
    steps = len(order)
    oracle = spec.learner == "oracle"
    learner = make_learner("similarity" if oracle else spec.learner, **spec.params)
    policy_rng = np.random.default_rng(spec.seed + 10_007)
    dim = train_vecs.shape[1]
    vecs = np.zeros((steps, dim), dtype=np.float32)
    stored = np.zeros(steps, dtype=np.int64)
    clean = np.zeros(steps, dtype=bool)
    utils = [Utility() for _ in range(steps)]
    correct = np.zeros(steps)

    def pool_for(query: np.ndarray, size: int) -> tuple[list[PoolItem], np.ndarray]:
        sims = vecs[:size] @ query
        if oracle:
            sims = np.where(clean[:size], sims, -np.inf)
        idx = top_k(sims, POOL)
        idx = idx[np.isfinite(sims[idx])]
        items = [
            PoolItem(str(j), float(sims[j]), utils[j], vector=vecs[j], answer=str(stored[j])) for j in idx
        ]
        return items, sims

    for t, row in enumerate(order):
        x, y = train_vecs[row], int(train_labels[row])
        pool, sims = pool_for(x, t)
        sel = learner.select(x, pool, spec.k, policy_rng)
        shown = [int(i) for i in sel.ids]
        pred = _vote(stored[shown], sims[shown], n_labels) if shown else -1
        reward = 1.0 if pred == y else 0.0
        correct[t] = reward
        if shown:
            used = {str(j) for j in shown if stored[j] == pred}
            credits = assign_credit(sel.ids, reward, strategy=spec.credit, used=used)
            for rid, credit in credits.items():
                j = int(rid)
                before = utils[j]
                q, stats = learner.update_record(before, credit)
                utils[j] = Utility(
                    q=q,
                    n_shown=before.n_shown,
                    n_used=before.n_used + 1,
                    reward_sum=before.reward_sum + credit,
                    stats=stats,
                )
            for j in shown:
                utils[j].n_shown += 1
            learner.observe(Outcome(x, pool, sel.ids, used, reward, credits))
        # write the experience, poisoned with probability `noise`
        label = y
        if rng.random() < spec.noise:
            wrong = int(rng.integers(n_labels - 1))
            label = wrong + (wrong >= y)
        vecs[t], stored[t], clean[t] = x, label, label == y
        if t:
            nb = top_k(sims, NEIGHBOURS)
            new = PoolItem(str(t), 1.0, utils[t], vector=x, answer=str(label))
            neighbours = [PoolItem(str(j), float(sims[j]), utils[j], answer=str(stored[j])) for j in nb]
            for rid, delta in learner.on_write(new, neighbours).items():
                stats = utils[int(rid)].stats
                for key, value in delta.items():
                    stats[key] = stats.get(key, 0.0) + value

    test_acc = None
    if test_vecs is not None and test_labels is not None and len(test_labels):
        hits = 0
        for x, y in zip(test_vecs, test_labels, strict=True):
            pool, sims = pool_for(x, steps)
            sel = learner.select(x, pool, spec.k, policy_rng)
            shown = [int(i) for i in sel.ids]
            hits += _vote(stored[shown], sims[shown], n_labels) == int(y)
        test_acc = hits / len(test_labels)
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
    )


# ------------------------------------------------------------------------------------------------
# Orchestration: embed once (cached on disk), run every (learner, noise, seed) in worker processes.

_SHARED: dict[str, Any] = {}


def _worker_init() -> None:
    """One thread per worker: BLAS and torch threads would otherwise fight over the cores."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    import torch

    torch.set_num_threads(1)


def _run_job(spec: RunSpec) -> RunResult:
    s = _SHARED
    return run_stream(
        spec, s["train_vecs"], s["train_labels"], s["n_labels"], s.get("test_vecs"), s.get("test_labels")
    )


def embed_texts(
    texts: Sequence[str], cache_path: Path, progress: Callable[[int], None] | None = None
) -> np.ndarray:
    """MiniLM vectors of ``texts``, through a persistent content-hash cache (each text embedded once)."""
    from memq.embed import CachedEmbedder, SentenceTransformerEmbedder

    cache_path.parent.mkdir(parents=True, exist_ok=True)
    embedder = CachedEmbedder(SentenceTransformerEmbedder(threads=None), path=str(cache_path))
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
    _SHARED.update(
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
        import torch
        from threadpoolctl import threadpool_limits

        threads = torch.get_num_threads()
        try:  # one thread while running in this process, restored after (tests share the process)
            with threadpool_limits(1):
                torch.set_num_threads(1)
                for spec in specs:
                    runs.append(_run_job(spec))
                    if on_run:
                        on_run(runs[-1])
        finally:
            torch.set_num_threads(threads)
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
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
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


def markdown_table(rf: ResultsFile) -> str:
    """The docs table for one results file (regenerated from the JSON, never typed by hand)."""
    has_test = any("acc_test" in r.metrics for r in rf.results)
    head = "| noise | learner | last 2,000 | overall | gap closed |" + (
        " test (frozen) |" if has_test else ""
    )
    sep = "|---|---|---|---|---|" + ("---|" if has_test else "")
    lines = [head, sep]
    for r in sorted(rf.results, key=lambda r: r.config.get("noise", 0.0)):  # stable: file order within
        m = r.metrics
        gap = m.get("gap_closed")
        row = (
            f"| {r.config.get('noise', 0.0):.1f} | {r.system} "
            f"| {m['acc_last2000']:.3f} ± {m['acc_last2000_std']:.3f} "
            f"| {m['acc_overall']:.3f} ± {m['acc_overall_std']:.3f} | {'' if gap is None else f'{gap:.2f}'} |"
        )
        if has_test:
            row += f" {m['acc_test']:.3f} ± {m['acc_test_std']:.3f} |" if "acc_test" in m else " |"
        lines.append(row)
    return "\n".join(lines)


def baseline_deltas(rf: ResultsFile) -> list[tuple[float, str, float, float | None]]:
    """(noise, learner, points of accuracy over similarity on the final window, gap closed)."""
    by = {(r.system, r.config.get("noise", 0.0)): r for r in rf.results}
    out = []
    for noise in sorted({r.config.get("noise", 0.0) for r in rf.results}):
        sim = by.get(("similarity", noise))
        if sim is None:
            continue
        for name in ("memrl", "memento_q", "memq"):
            r = by.get((name, noise))
            if r is not None:
                delta = 100 * (r.metrics["acc_last2000"] - sim.metrics["acc_last2000"])
                out.append((noise, name, delta, r.metrics.get("gap_closed")))
    return out


def markdown_page(rf: ResultsFile, command: str) -> str:
    """The results page: how it was made, the table, and the checks the learning issue asks for."""
    a, x = rf.args, rf.extra
    first = rf.results[0] if rf.results else None
    seeds = first.config.get("seeds", a.get("seeds")) if first else a.get("seeds")
    lines = [
        "# Test-time learning on a poisoned-experience stream",
        "",
        "Generated from the results JSON by `memq bench ttl ... --doc` (or `memq bench ttl-report`) — "
        "do not edit by hand.",
        "",
        f"Data: `{Path(a.get('data') or '?').name}` ({x.get('rows') or 0:,} rows, {x.get('labels')} labels)"
        + (f", held-out `{Path(a['test']).name}` with memory frozen" if a.get("test") else "")
        + f"; k = {a.get('k')}, {seeds} seeds, credit = `{a.get('credit', 'used')}`, "
        f"{x.get('seconds') or 0:.0f} s on {rf.machine.get('cpus')} cores.",
        "",
        "```",
        command,
        "```",
        "",
        "Accuracy, mean ± std over seeds; *last 2,000* = the final 2,000 steps of the stream; "
        "*gap closed* = (learner − similarity) / (oracle − similarity) on that window.",
        "",
        markdown_table(rf),
        "",
    ]
    checks = [
        f"| {noise:.1f} | {name} | {delta:+.2f} | {'' if gap is None else f'{gap:.2f}'} |"
        for noise, name, delta, gap in baseline_deltas(rf)
    ]
    if checks:
        lines += [
            "Against the similarity baseline (points of accuracy on the last 2,000 steps):",
            "",
            "| noise | learner | Δ vs similarity | gap closed |",
            "|---|---|---|---|",
            *checks,
            "",
        ]
    return "\n".join(lines)


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
