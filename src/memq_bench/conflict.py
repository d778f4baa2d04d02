"""``memq bench conflict``: MemoryAgentBench Conflict_Resolution (FactConsolidation), retrieval only.

Each row's context is a numbered list of facts in which a later fact overrides an earlier one
about the same subject. Facts are ingested in order, in chunks (one ``add`` per chunk); then each
question is asked and scored ``em@k``: does a gold answer occur (MemoryAgentBench's
``substring_exact_match``, SQuAD-normalised) in the text of any of the top-k retrieved facts?

Variants: ``supersession-off`` (every fact stays current) and ``supersession-on`` (memq only: each
new fact invalidates the current fact with the same subject key, see :mod:`memq_bench.supersession`,
so search sees only the latest facts), and ``reconcile`` (memq only, needs an LLM: each fact is
written through ``manager="reconcile"``, see :mod:`memq_bench.conflict_reconcile`). Peers store with
``infer=False`` and have no update path, so they run ``off`` only. SH and MH rows of one length share one context: it is ingested once per
system and variant, into its own space, and both rows' questions are asked there.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq.llm.base import LLM
from memq_bench.conflict_reconcile import ReconcilingMemq
from memq_bench.data import read_json_list
from memq_bench.metrics import substring_match
from memq_bench.results import NO_HOOKS, BenchResult, ResultsFile, RunHooks, package_versions
from memq_bench.supersession import SUBJECT_FIELD, subject_key, supersede
from memq_bench.systems import MEMQ_PRESETS, BenchDoc, BenchSystem, MemqSystem, Timed, make_system

CONFLICT_FILE = "memoryagentbench/Conflict_Resolution.json"
DATASET = "memoryagentbench/FactConsolidation"
LENGTHS = ("6k", "32k", "64k", "262k")
VARIANTS = ("off", "on", "reconcile")
NO_LLM_NOTE = "reconcile: no LLM configured (pass --llm)"
_SOURCE = re.compile(r"^factconsolidation_(sh|mh)_(\w+)$")
_NUMBERED = re.compile(r"^\s*(\d+)\.\s+(.*\S)\s*$")


@dataclass
class ConflictRow:
    """One row of the file: ``hop`` is ``sh`` or ``mh``, ``length`` the context size (``6k`` ...)."""

    hop: str
    length: str
    facts: list[str]
    questions: list[str]
    answers: list[list[str]]


@dataclass
class ConflictContext:
    """A context shared by rows of one length, with the rows asked on it."""

    length: str
    facts: list[str]
    rows: list[ConflictRow] = field(default_factory=list)


def parse_context(context: str) -> list[str]:
    """The fact sentences of a context, in serial order ("Here is a list of facts:" is dropped)."""
    numbered: list[tuple[int, str]] = []
    for line in context.splitlines():
        m = _NUMBERED.match(line)
        if m:
            numbered.append((int(m.group(1)), m.group(2)))
    if not numbered:
        raise InvalidInputError("a FactConsolidation context holds no numbered facts ('0. ...')")
    numbered.sort(key=lambda x: x[0])  # the higher serial wins, so order by it
    return [text for _, text in numbered]


def load_conflict(path: str | Path) -> list[ConflictRow]:
    """Read the Conflict_Resolution file (a JSON list of rows with context/questions/answers/metadata)."""
    raw = read_json_list(path, "rows")
    rows = []
    for i, item in enumerate(raw):
        try:
            source = str(item["metadata"]["source"])
            questions = [str(q) for q in item["questions"]]
            answers = [[str(a) for a in (ans if isinstance(ans, list) else [ans])] for ans in item["answers"]]
            context = str(item["context"])
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(
                f"{path}: row {i} lacks {exc} (needs context, questions, answers, metadata.source)"
            ) from exc
        m = _SOURCE.match(source)
        if not m:
            continue  # another MemoryAgentBench task in the same file
        if len(questions) != len(answers):
            raise InvalidInputError(
                f"{path}: row {source} has {len(questions)} questions but {len(answers)} answers"
            )
        rows.append(ConflictRow(m.group(1), m.group(2), parse_context(context), questions, answers))
    if not rows:
        raise InvalidInputError(f"{path}: no factconsolidation_(sh|mh)_<length> rows")
    return rows


def group_contexts(
    rows: Sequence[ConflictRow], lengths: Sequence[str] | None = None
) -> list[ConflictContext]:
    """Rows grouped by identical context (SH and MH of one length share one), shortest first."""
    groups: dict[tuple[str, ...], ConflictContext] = {}
    for row in rows:
        if lengths is not None and row.length not in lengths:
            continue
        ctx = groups.setdefault(tuple(row.facts), ConflictContext(row.length, row.facts))
        ctx.rows.append(row)
    return sorted(groups.values(), key=lambda c: len(c.facts))


class SupersedingMemq(MemqSystem):
    """A memq preset that applies :func:`~memq_bench.supersession.supersede` after every add.

    Keeps a per-space index subject key → current record id (the space starts empty, so the
    index is complete); counts invalidated and unparsed facts.
    """

    def __init__(self, preset: str, embedder: Embedder, **kwargs: Any) -> None:
        super().__init__(preset, embedder, **kwargs)
        self._index: dict[str, dict[str, str]] = {}
        self.invalidated = 0
        self.unparsed = 0

    def add(self, space: str, docs: Sequence[BenchDoc]) -> None:
        from memq.types import NewRecord

        items = []
        for d in docs:
            key = subject_key(d.text)
            meta = {"key": d.key, **d.meta, **({SUBJECT_FIELD: key} if key else {})}
            items.append(NewRecord(text=d.text, metadata=meta, valid_from=d.when))
        scope = self._scope(space)
        records = self.memory.add(items, scope=scope)
        self._records += len(docs)
        report = supersede(self.memory, records, scope=scope, index=self._index.setdefault(space, {}))
        self.invalidated += len(report.invalidated)
        self.unparsed += report.unparsed


def build_system(name: str, variant: str, embedder: Embedder, llm: LLM | None = None) -> BenchSystem:
    if variant == "reconcile":
        if name not in MEMQ_PRESETS:
            raise InvalidInputError(f"the reconcile variant applies to memq presets only, not {name!r}")
        if llm is None:
            raise InvalidInputError(NO_LLM_NOTE)
        return ReconcilingMemq(name, embedder, llm)
    if variant == "on":
        if name not in MEMQ_PRESETS:
            raise InvalidInputError(f"supersession 'on' applies to memq presets only, not {name!r}")
        return SupersedingMemq(name, embedder)
    return make_system(name, embedder)


@dataclass
class ConflictRun:
    """Scores of one (system, variant): hits[(hop, length)][k] = questions answered within top k."""

    system: str
    variant: str
    hits: dict[tuple[str, str], dict[int, int]] = field(default_factory=dict)
    asked: dict[tuple[str, str], int] = field(default_factory=dict)
    ingest_seconds: float = 0.0
    facts: int = 0
    invalidated: int | None = None
    unparsed: int | None = None
    llm: dict[str, float] | None = None  # reconcile: LLM usage, errors and decisions
    llm_error_examples: list[str] = field(default_factory=list)


def score_question(texts: Sequence[str], answers: Sequence[str], ks: Sequence[int]) -> dict[int, bool]:
    """Whether a gold answer occurs in the first k retrieved texts, for each k."""
    return {k: substring_match(answers, texts[:k]) for k in ks}


def run_system(
    system: Timed,
    contexts: Sequence[ConflictContext],
    ks: Sequence[int],
    *,
    chunk: int,
    variant: str,
    on_facts: Callable[[int], None] | None = None,
    on_question: Callable[[], None] | None = None,
    max_facts: int | None = None,
) -> ConflictRun:
    """Ingest each context's facts (the first ``max_facts`` when set), then ask its rows' questions."""
    run = ConflictRun(system.name, variant)
    k_max = max(ks)
    inner = system.system
    for ctx in contexts:
        space = f"fc-{ctx.length}"
        texts = {f"{ctx.length}:{i}": fact for i, fact in enumerate(ctx.facts[:max_facts])}
        docs = [
            BenchDoc(key=key, text=text, meta={"serial": i}) for i, (key, text) in enumerate(texts.items())
        ]
        step = 1 if isinstance(inner, ReconcilingMemq) else chunk  # reconcile: one fact per add
        started = time.perf_counter()
        for start in range(0, len(docs), step):
            system.add(space, docs[start : start + step])
            if on_facts:
                on_facts(len(docs[start : start + step]))
        run.ingest_seconds += time.perf_counter() - started
        run.facts += len(docs)
        for row in ctx.rows:
            slot = (row.hop, row.length)
            counts = run.hits.setdefault(slot, dict.fromkeys(ks, 0))
            for question, answers in zip(row.questions, row.answers, strict=True):
                keys = system.search(space, question, k_max)
                if isinstance(inner, ReconcilingMemq):  # the model's texts, not the dataset's
                    found = [t for k in keys if (t := inner.text_of(k)) is not None]
                else:
                    found = [texts[k] for k in keys if k in texts]
                got = score_question(found, answers, ks)
                for k, ok in got.items():
                    counts[k] += int(ok)
                run.asked[slot] = run.asked.get(slot, 0) + 1
                if on_question:
                    on_question()
    if isinstance(inner, SupersedingMemq):
        run.invalidated, run.unparsed = inner.invalidated, inner.unparsed
    if isinstance(inner, ReconcilingMemq):
        run.llm = inner.metrics()
        run.llm_error_examples = list(inner.error_messages)
    return run


def run_metrics(run: ConflictRun, ks: Sequence[int]) -> dict[str, float]:
    """``em@k`` overall, ``em@k/<length>`` (SH and MH together), ``em@k/sh_<length>``, ``em@k/mh_<length>``."""
    out: dict[str, float] = {}
    lengths = list(dict.fromkeys(length for _, length in run.hits))
    for k in ks:
        total = sum(c[k] for c in run.hits.values())
        asked = sum(run.asked.values())
        out[f"em@{k}"] = total / asked if asked else 0.0
        for length in lengths:
            slots = [s for s in run.hits if s[1] == length]
            n = sum(run.asked[s] for s in slots)
            out[f"em@{k}/{length}"] = sum(run.hits[s][k] for s in slots) / n
            for s in slots:
                out[f"em@{k}/{s[0]}_{length}"] = run.hits[s][k] / run.asked[s]
    out["questions"] = float(sum(run.asked.values()))
    out["facts"] = float(run.facts)
    out["ingest_facts_per_s"] = run.facts / run.ingest_seconds if run.ingest_seconds else 0.0
    if run.invalidated is not None:
        out["superseded_facts"] = float(run.invalidated)
        out["unparsed_facts"] = float(run.unparsed or 0)
    out["llm_calls"] = 0.0
    out["llm_tokens"] = 0.0
    out.update(run.llm or {})
    return out


def plan(systems: Sequence[str], variants: Sequence[str]) -> list[tuple[str, str]]:
    """(system, variant) pairs to run: ``on`` and ``reconcile`` only for memq presets."""
    pairs = []
    for variant in variants:
        for name in systems:
            if variant in ("on", "reconcile") and name not in MEMQ_PRESETS:
                continue
            pairs.append((name, variant))
    return pairs


def run_benchmark(
    rows: Sequence[ConflictRow],
    systems: Sequence[str],
    embedder: Embedder,
    *,
    ks: Sequence[int] = (1, 5, 10),
    lengths: Sequence[str] | None = None,
    variants: Sequence[str] = VARIANTS,
    chunk: int = 100,
    llm: LLM | None = None,
    max_facts: int | None = None,
    hooks: RunHooks = NO_HOOKS,
) -> ResultsFile:
    """Run every (system, variant) on every context; one :class:`BenchResult` each.

    ``reconcile`` runs only with an ``llm``; without one it is left out and the results file's
    ``extra["notes"]`` says so. ``max_facts`` ingests only the first N facts of each context, in
    every variant (so the variants of one run stay comparable); all questions are still asked.
    """
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise InvalidInputError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    if chunk < 1:
        raise InvalidInputError("chunk must be >= 1")
    if max_facts is not None and max_facts < 1:
        raise InvalidInputError("max_facts must be >= 1")
    run_notes: list[str] = []
    if "reconcile" in variants and llm is None:
        variants = [v for v in variants if v != "reconcile"]
        run_notes.append(NO_LLM_NOTE)
    if max_facts is not None:
        run_notes.append(
            f"max_facts={max_facts}: only the first {max_facts} facts of each context are written, in every "
            "variant; all questions are asked, so em@k is bounded by the facts written"
        )
    contexts = group_contexts(rows, lengths)
    if not contexts:
        raise InvalidInputError(
            f"no rows of length {', '.join(lengths or [])}; the file has {sorted({r.length for r in rows})}"
        )
    pairs = plan(systems, variants)
    n_facts = sum(len(c.facts[:max_facts]) for c in contexts)
    n_questions = sum(len(r.questions) for c in contexts for r in c.rows)
    results = hooks.new_results("conflict", extra={"notes": run_notes})
    versions = package_versions()
    for name, variant in pairs:
        started = time.perf_counter()
        system = Timed(build_system(name, variant, embedder, llm))
        on_facts = hooks.tick(f"{name} [{variant}] facts", n_facts)
        on_question = hooks.tick(f"{name} [{variant}] questions", n_questions)
        try:
            run = run_system(
                system,
                contexts,
                ks,
                chunk=chunk,
                variant=variant,
                on_facts=on_facts,
                on_question=on_question,
                max_facts=max_facts,
            )
            metrics = {**run_metrics(run, ks), **system.latency_metrics()}
        finally:
            system.close()
        notes = list(run_notes)
        if variant == "off" and name not in MEMQ_PRESETS:
            notes.append("peer stores facts with infer=False and has no update path: supersession off only")
        if variant == "on":
            notes.append(
                "LLM-free supersession by (relation, subject) key; old facts invalidated, history kept"
            )
        if variant == "reconcile":
            notes.append(
                f"each fact written by Memory.add(manager='reconcile') with {getattr(llm, 'model_id', llm)}; "
                "scored on the retrieved records' own (model-written) texts"
            )
            errors = int(metrics.get("llm_errors", 0))
            if errors:
                notes.append(
                    f"{errors} add(s) raised LLMError and were skipped (nothing written for those facts); "
                    "first: " + " | ".join(run.llm_error_examples)
                )
        results.results.append(
            BenchResult(
                system=name,
                dataset=DATASET,
                variant="reconcile" if variant == "reconcile" else f"supersession-{variant}",
                config={
                    "k": list(ks),
                    "chunk_facts": 1 if variant == "reconcile" else chunk,
                    "lengths": [c.length for c in contexts],
                    "max_facts": max_facts,
                    **({"llm": getattr(llm, "model_id", str(llm))} if variant == "reconcile" else {}),
                },
                metrics=metrics,
                seconds=time.perf_counter() - started,
                versions=versions,
                notes=notes,
            )
        )
        hooks.save(results)
    return results


def markdown_table(results: ResultsFile, ks: Sequence[int]) -> str:
    """One line per (system, variant): em@k per length and overall."""
    lengths = [x for x in LENGTHS if any(f"em@{ks[0]}/{x}" in r.metrics for r in results.results)]
    head = ["system", "variant"] + [f"em@{k}/{x}" for k in ks for x in lengths] + [f"em@{k}" for k in ks]
    head += ["add ms p50", "search ms p50"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results.results:
        m = r.metrics
        cells = [r.system, r.variant.removeprefix("supersession-")]
        cells += [f"{m.get(f'em@{k}/{x}', float('nan')):.3f}" for k in ks for x in lengths]
        cells += [f"{m.get(f'em@{k}', float('nan')):.3f}" for k in ks]
        cells += [f"{m.get('add_ms_p50', float('nan')):.1f}", f"{m.get('search_ms_p50', float('nan')):.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
