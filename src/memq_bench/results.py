"""The results file every ``memq bench <name> --out results.json`` writes (schema in docs/results.md).

One :class:`BenchResult` per (system, dataset, variant). ``metrics`` is flat: names like ``recall@5``,
``recall@5/cat1``, ``session_recall_all@5``, ``em@1/262k``, ``add_ms_p50``, ``llm_calls``. Other tools
script against these names, so keep them stable.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from memq._cpu import first_processor
from memq._cpu import flags as cpu_flags

SCHEMA_VERSION = 1
_TRACKED = (
    "memq",
    "torch",
    "sentence-transformers",
    "usearch",
    "mem0ai",
    "chromadb",
    "qdrant-client",
    "openai",
    "llama-cpp-python",
)


class BenchResult(BaseModel):
    """One system on one dataset variant."""

    model_config = ConfigDict(extra="forbid")

    system: str
    dataset: str
    variant: str = "default"
    config: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    timings: dict[str, float] = Field(default_factory=dict)
    seconds: float
    versions: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class ResultsFile(BaseModel):
    """What ``--out`` holds: the benchmark, where and when it ran, and its results."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    benchmark: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    machine: dict[str, Any] = Field(default_factory=lambda: machine_info())
    args: dict[str, Any] = Field(default_factory=dict)
    results: list[BenchResult] = Field(default_factory=list)
    extra: dict[str, Any] = Field(default_factory=dict)


def progress_tick(progress: Any, label: str, total: int) -> Callable[..., None] | None:
    """The advance hook of a new task ``label`` on a progress display (None without a display)."""
    if progress is None:
        return None
    task = progress.add_task(label, total=total)
    return lambda n=1: progress.advance(task, n)


@dataclass(frozen=True)
class RunHooks:
    """What a benchmark command hands its runner: the ``args`` its results file records, a progress
    display (or None), and ``checkpoint``, called with the results after each system (so a crash in a
    later system keeps the finished ones)."""

    args: Mapping[str, Any] = field(default_factory=dict)
    progress: Any = None
    checkpoint: Callable[[ResultsFile], None] | None = None

    def new_results(self, benchmark: str, **fields: Any) -> ResultsFile:
        return ResultsFile(benchmark=benchmark, args=dict(self.args), **fields)

    def tick(self, label: str, total: int) -> Callable[..., None] | None:
        return progress_tick(self.progress, label, total)

    def save(self, results: ResultsFile) -> None:
        if self.checkpoint is not None:
            self.checkpoint(results)


NO_HOOKS = RunHooks()


def package_versions(names: Iterable[str] = _TRACKED) -> dict[str, str]:
    """Installed versions of the packages that shape a result (absent ones are left out)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def make_result(
    dataset: str,
    system: str,
    variant: str,
    metrics: dict[str, float],
    seconds: float,
    config: dict[str, Any],
    notes: Sequence[str] = (),
) -> BenchResult:
    """One result, stamped with the installed versions of the packages that shape it."""
    return BenchResult(
        system=system,
        dataset=dataset,
        variant=variant,
        config=config,
        metrics=metrics,
        seconds=seconds,
        versions=package_versions(),
        notes=list(notes),
    )


# the instruction sets the kernels memq leans on choose between (ONNX Runtime's fp32 and int8 matrix
# products, usearch's int8 distances, numpy's BLAS): a figure is comparable only on the same ones
_ISA = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_int8",
    "asimd",
    "asimddp",
    "sve",
)


def cpu_info() -> dict[str, Any]:
    """The CPU a benchmark ran on: its model name, its identity (vendor, family, model, stepping: one
    model name covers several generations) and which of ``_ISA`` it has. A VM may land on another
    host from one run to the next, and int8 and fp32 kernels rank differently with and without VNNI
    (docs/benchmarks-embedders.md), so every results file records it. Read from ``/proc/cpuinfo``
    (:mod:`memq._cpu`); elsewhere only ``platform.processor()``."""
    fields = first_processor()
    if fields is None:
        return {"cpu": platform.processor() or None, "cpu_id": None, "isa": None}
    have = cpu_flags() or frozenset()
    ident = [fields.get(k) for k in ("vendor_id", "cpu family", "model", "stepping")]
    return {
        "cpu": fields.get("model name") or platform.processor() or None,
        "cpu_id": None if not any(ident) else " ".join(f"{v}" for v in ident if v),
        "isa": [name for name in _ISA if name in have],
    }


def cpu_words(machine: Mapping[str, Any]) -> str:
    """How a docs page names a results file's CPU, in parentheses after its core count:
    " (AMD EPYC: AuthenticAMD 25 1 1; avx2, fma, f16c)"; just the model for a file written before
    :func:`cpu_info` (no identity, no instruction sets), and "" when it has neither."""
    model = machine.get("cpu") or machine.get("processor") or machine.get("cpu_model")
    if not model:
        return ""
    if machine.get("isa") is None:
        return f" ({model})"
    isa = ", ".join(machine["isa"]) or "none of " + ", ".join(_ISA[:5])
    return f" ({model}: {machine.get('cpu_id') or 'identity unknown'}; {isa})"


def machine_info() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        **cpu_info(),
    }


def percentiles(samples_ms: Sequence[float], prefix: str) -> dict[str, float]:
    """``{prefix}_p50``, ``_p95``, ``_p99`` and ``_mean`` of a latency sample in milliseconds."""
    if not samples_ms:
        return {}
    arr = np.asarray(samples_ms, dtype=float)
    return {
        f"{prefix}_p50": float(np.percentile(arr, 50)),
        f"{prefix}_p95": float(np.percentile(arr, 95)),
        f"{prefix}_p99": float(np.percentile(arr, 99)),
        f"{prefix}_mean": float(arr.mean()),
    }


def write_results(path: str | Path, results: ResultsFile) -> Path:
    """Write atomically (temp file + rename) so a crashed run never leaves half a JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(results.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_results(path: str | Path) -> ResultsFile:
    return ResultsFile.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
