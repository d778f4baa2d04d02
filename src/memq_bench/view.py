"""Reading results files and naming what is in them: shared by the HTML report, results.md and the tables.

Metric names follow the results schema: ``base`` or ``base/slice`` (``recall@5/cat1``, ``em@1/262k``).
Cost metrics (latency, footprint, LLM usage) are told apart from quality metrics by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from memq.errors import InvalidInputError
from memq_bench.results import BenchResult, ResultsFile

_COST = re.compile(
    r"(_ms(_|$)|^records$|^bytes$|^llm_|_per_s$|throughput|seconds|_mb$|_bytes$|_s$|^(load|build|ingest)_)"
)
_COUNT = re.compile(
    r"^(questions|facts|turns|sessions|conversations|dim|rows|labels|steps|n|count|requests)$|^(n|num)_"
    r"|(^|_)(count|n|errors)$"
    r"|^(skipped|malformed|dangling|unparsed|superseded|invalid|missing)(_|$)"
)
LATENCY_KINDS = ("add", "search")


def load_results(path: str | Path) -> ResultsFile:
    """A results file, or a clear error. Older ``memq bench ttl`` files are converted on the fly."""
    p = Path(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"{p} does not exist") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{p} is not JSON: {exc}") from None
    if isinstance(raw, dict) and raw.get("benchmark") == "ttl" and "schema_version" not in raw:
        from memq_bench.ttl import results_file_from_legacy

        return results_file_from_legacy(raw)
    try:
        return ResultsFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise InvalidInputError(f"{p} is not a memq results file ({where}: {first['msg']})") from None


def split_metric(name: str) -> tuple[str, str | None]:
    base, _, part = name.partition("/")
    return base, (part or None)


def is_cost(name: str) -> bool:
    return bool(_COST.search(split_metric(name)[0]))


def is_count(name: str, results: Sequence[BenchResult] = ()) -> bool:
    """A count (questions, facts, malformed ids, dimensions): by its name, or whole values above 1."""
    base = split_metric(name)[0]
    if is_cost(name):
        return False
    if _COUNT.search(base):
        return True
    values = [r.metrics[name] for r in results if name in r.metrics]
    return bool(values) and all(v == int(v) for v in values) and max(values) > 1


def natural_key(name: str) -> list[object]:
    """Sort ``recall@5`` before ``recall@10`` and ``6k`` before ``32k``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def metric_names(results: Sequence[BenchResult]) -> list[str]:
    """Every metric in first-seen order of its base, slices in natural order after the base."""
    order: dict[str, set[str]] = {}
    bare = {name for r in results for name in r.metrics}
    for r in results:
        for name in r.metrics:
            base, part = split_metric(name)
            order.setdefault(base, set())
            if part is not None:
                order[base].add(part)
    # bases of one family (recall@1, recall@5, recall@10) in natural order, families in first-seen order
    family = {b.split("@")[0]: i for i, b in reversed(list(enumerate(order)))}
    bases = sorted(order, key=lambda b: (family[b.split("@")[0]], natural_key(b)))
    out: list[str] = []
    for base in bases:
        parts = order[base]
        if base in bare:
            out.append(base)
        out += [f"{base}/{p}" for p in sorted(parts, key=natural_key)]
    return out


def sliced_bases(results: Sequence[BenchResult]) -> dict[str, list[str]]:
    """``{base: [slices]}`` for every metric reported per slice (category, context length, ...)."""
    out: dict[str, set[str]] = {}
    for r in results:
        for name in r.metrics:
            base, part = split_metric(name)
            if part is not None:
                out.setdefault(base, set()).add(part)
    return {b: sorted(p, key=natural_key) for b, p in out.items()}


def quality_metrics(results: Sequence[BenchResult]) -> list[str]:
    """The headline candidates: every metric that is not per slice, a cost, a count or a spread (``_std``)."""
    return [
        n
        for n in metric_names(results)
        if split_metric(n)[1] is None
        and not is_cost(n)
        and not is_count(n, results)
        and not n.endswith("_std")
    ]


def slice_order(results: Sequence[BenchResult], preferred: Sequence[str]) -> dict[str, list[str]]:
    """``sliced_bases`` without counts, ``preferred`` bases first (in that order), the rest in natural order."""
    bases = {b: v for b, v in sliced_bases(results).items() if not is_count(b)}
    rank = {b: i for i, b in enumerate(preferred)}
    return {b: bases[b] for b in sorted(bases, key=lambda b: (rank.get(b, len(rank)), natural_key(b)))}


def labels(results: Sequence[BenchResult]) -> list[str]:
    """A short unique label per result: the system, plus dataset and variant where they vary."""
    datasets = {r.dataset for r in results}
    variants = {r.variant for r in results}
    out = []
    for r in results:
        parts = [r.system]
        if len(datasets) > 1:
            parts.append(r.dataset)
        if len(variants) > 1:
            parts.append(r.variant)
        out.append(" · ".join(parts))
    seen: dict[str, int] = {}
    for i, lab in enumerate(out):
        if lab in seen:
            seen[lab] += 1
            out[i] = f"{lab} #{seen[lab]}"
        else:
            seen[lab] = 1
    return out


def latency_metrics(results: Sequence[BenchResult]) -> list[str]:
    """Which of ``add_ms_p50``, ``add_ms_p95``, ``search_ms_p50``, ``search_ms_p95`` are present."""
    names = [f"{kind}_ms_{p}" for kind in LATENCY_KINDS for p in ("p50", "p95")]
    return [n for n in names if any(n in r.metrics for r in results)]


def grouped_notes(results: Sequence[BenchResult], names: Sequence[str]) -> list[str]:
    """Each distinct note once, prefixed by the rows it concerns unless it concerns them all."""
    by_note: dict[str, list[str]] = {}
    for lab, r in zip(names, results, strict=True):
        for note in r.notes:
            by_note.setdefault(note, []).append(lab)
    return [
        note if len(labs) == len(results) else f"{', '.join(labs)}: {note}" for note, labs in by_note.items()
    ]


def fmt_value(name: str, v: float | None) -> str:
    """How a metric reads in a table: ratios to 3 decimals, counts with separators, ms to 3 figures."""
    if v is None:
        return ""
    base = split_metric(name)[0]
    if "_ms" in base:
        return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:,.0f}"
    whole = v == int(v) and (abs(v) >= 2 or _COUNT.search(base) is not None)
    if base in ("records", "bytes") or base.startswith("llm_") or whole or abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) < 10:
        return f"{v:.3f}"
    return f"{v:,.1f}"


def higher_is_better(name: str) -> bool | None:
    """Direction of a metric for highlighting the best value; None where it has none."""
    base = split_metric(name)[0]
    if "_ms" in base or base in ("bytes", "records") or base.startswith("llm_") or base.endswith("_std"):
        return False if "_ms" in base else None
    if base.endswith(("_per_s", "throughput")):
        return True
    return None if is_cost(name) or _COUNT.search(base) else True


def best_values(
    results: Sequence[BenchResult], names: Sequence[str], skip: Sequence[str] = ()
) -> dict[str, float]:
    """The best value of each metric with a direction, where the results differ (ties all count)."""
    out = {}
    for name in names:
        vals = [r.metrics[name] for r in results if name in r.metrics and r.system not in skip]
        direction = higher_is_better(name)
        if len(set(vals)) > 1 and direction is not None and not is_count(name, results):
            out[name] = max(vals) if direction else min(vals)
    return out
