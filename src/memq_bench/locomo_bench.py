"""``memq bench locomo``: turn-level evidence retrieval on LoCoMo, systems side by side.

Each conversation is ingested turn by turn into its own space (speaker and session date in the
indexed text, the session date as world time, each turn linked to the previous turn of its session).
Every question with evidence is asked once with k = max(ks); recall@k and NDCG@10 are read off the
prefix of that ranking, per category number (1–4, overall; 5 apart). The ``audit`` variant re-scores
the same rankings with the audit's corrected evidence (WRONG_CITATION entries), and the ``online``
variant trains a learner preset on conversations 1–5 and evaluates it on 6–10 against the same
retrieval without training. Metric definitions: docs/benchmarks-locomo.md.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.locomo import Conversation, load_locomo
from memq_bench.metrics import ndcg_binary, recall_fraction
from memq_bench.results import BenchResult, ResultsFile, make_result
from memq_bench.systems import BenchDoc, Timed, make_system

DATASET = "locomo10"
AUDIT_FILE = "locomo/locomo10_audit_errors.json"
DEFAULT_KS = (1, 5, 10, 25, 50)
SCORED_CATEGORIES = (1, 2, 3, 4)
VARIANTS = ("default", "audit", "online", "within")
ONLINE_TRAIN = 5  # conversations 1..5 train, the rest evaluate
ONLINE_SHOWN = 5  # records shown per training question (the citing agent cites the evidence among them)
_WELL_FORMED = re.compile(r"D\d+:\d+")
_SALVAGE = re.compile(r"D:?(\d+):(\d+)")

ProgressHook = Callable[[int], None]  # called with the number of units done


# -- gold evidence ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """Gold turn ids of one question, and what was wrong with the raw ids."""

    gold: frozenset[str]
    malformed: int  # ids not of the form D<session>:<turn> (salvaged when a D<s>:<t> is inside)
    dangling: int  # well-formed ids naming no turn of the conversation (dropped)


def parse_evidence(raw: Iterable[str], turn_ids: set[str]) -> Evidence:
    """Turn ids from raw evidence strings such as ``"D1:3"``, ``"D8:6; D9:17"`` or ``"D:11:26"``.

    A malformed string is counted and whatever ``D<s>:<t>`` ids it holds are kept; ids naming no
    turn are counted as dangling and dropped (no system could retrieve them).
    """
    gold: set[str] = set()
    malformed = dangling = 0
    for item in raw:
        text = str(item).strip()
        if not _WELL_FORMED.fullmatch(text):
            malformed += 1
        for m in _SALVAGE.finditer(text):
            key = f"D{int(m.group(1))}:{int(m.group(2))}"
            if key in turn_ids:
                gold.add(key)
            else:
                dangling += 1
    return Evidence(frozenset(gold), malformed, dangling)


def load_audit(path: str | Path) -> dict[tuple[int, int], tuple[str, ...]]:
    """(conversation index, qa index) → corrected evidence, from the audit's WRONG_CITATION entries."""
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read the LoCoMo audit file {path}: {exc}") from exc
    out: dict[tuple[int, int], tuple[str, ...]] = {}
    for entry in entries:
        if entry.get("error_type") != "WRONG_CITATION":
            continue
        m = re.fullmatch(r"locomo_(\d+)_qa(\d+)", str(entry.get("question_id", "")))
        if m:
            out[(int(m.group(1)), int(m.group(2)))] = tuple(str(e) for e in entry.get("correct_evidence", []))
    return out


# -- metrics ------------------------------------------------------------------------------------


def recall_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Share of the gold turn ids among the first k ranked ids (``metrics.recall_fraction``)."""
    return recall_fraction(ranked, set(gold), k)


def ndcg_at_k(ranked: Sequence[str], gold: Iterable[str], k: int) -> float:
    """Binary-relevance NDCG@k: Σ 1/log2(rank+1) over gold hits, over the ideal for min(|gold|, k) hits."""
    return ndcg_binary(ranked, set(gold), k)


@dataclass(frozen=True)
class Scored:
    """One asked question: its category, gold ids and the system's ranking."""

    category: int
    gold: frozenset[str]
    ranked: tuple[str, ...]


def aggregate(scored: Sequence[Scored], ks: Sequence[int]) -> dict[str, float]:
    """``recall@k`` and ``ndcg@10`` over categories 1–4, plus ``.../cat<n>`` for every category present."""
    out: dict[str, float] = {}
    groups: dict[str, list[Scored]] = {"": [s for s in scored if s.category in SCORED_CATEGORIES]}
    for cat in sorted({s.category for s in scored}):
        groups[f"/cat{cat}"] = [s for s in scored if s.category == cat]
    for suffix, items in groups.items():
        if not items:
            continue
        for k in ks:
            out[f"recall@{k}{suffix}"] = sum(recall_at_k(s.ranked, s.gold, k) for s in items) / len(items)
        out[f"ndcg@10{suffix}"] = sum(ndcg_at_k(s.ranked, s.gold, 10) for s in items) / len(items)
        out[f"questions{suffix}"] = float(len(items))
    return out


# -- ingestion and questions ----------------------------------------------------------------------


def turn_docs(conv: Conversation) -> list[BenchDoc]:
    """One doc per turn: key = dia_id, text = ``Turn.indexed_text``, world time = the session date.

    ``meta["follows"]`` names the previous turn of the same session, so systems that keep links
    (memq) can relate a turn to its neighbours; others ignore it.
    """
    docs = []
    prev: dict[int, str] = {}
    for turn in conv.turns:
        meta: dict[str, Any] = {"speaker": turn.speaker, "session": turn.session}
        if turn.session in prev:
            meta["follows"] = prev[turn.session]
        docs.append(BenchDoc(key=turn.dia_id, text=turn.indexed_text(), when=turn.when, meta=meta))
        prev[turn.session] = turn.dia_id
    return docs


@dataclass(frozen=True)
class Asked:
    """A question to ask: where it comes from, its official and audited gold."""

    conv_index: int
    qa_index: int
    question: str
    category: int
    gold: frozenset[str]
    audit_gold: frozenset[str]


@dataclass
class EvidenceCounts:
    malformed: int = 0
    dangling: int = 0
    skipped: int = 0  # questions without any usable evidence


def questions_of(
    conv: Conversation,
    conv_index: int,
    audit: Mapping[tuple[int, int], Sequence[str]],
    counts: EvidenceCounts,
) -> list[Asked]:
    turn_ids = {t.dia_id for t in conv.turns}
    out = []
    for qa_index, q in enumerate(conv.questions):
        ev = parse_evidence(q.evidence, turn_ids)
        counts.malformed += ev.malformed
        counts.dangling += ev.dangling
        if not ev.gold:
            counts.skipped += 1
            continue
        fixed = audit.get((conv_index, qa_index))
        audit_gold = parse_evidence(fixed, turn_ids).gold if fixed is not None else ev.gold
        out.append(Asked(conv_index, qa_index, q.question, q.category, ev.gold, audit_gold or ev.gold))
    return out


def ingest(system: Timed, space: str, docs: Sequence[BenchDoc], on_turn: ProgressHook | None = None) -> None:
    """Add turn by turn: one add call per turn, as a chat agent writes memory."""
    for doc in docs:
        system.add(space, [doc])
        if on_turn:
            on_turn(1)


def ask(
    system: Timed, space: str, asked: Sequence[Asked], k: int, on_question: ProgressHook | None = None
) -> list[tuple[Asked, tuple[str, ...]]]:
    out = []
    for a in asked:
        out.append((a, tuple(system.search(space, a.question, k))))
        if on_question:
            on_question(1)
    return out


def _scored(answers: Sequence[tuple[Asked, tuple[str, ...]]], audit: bool) -> list[Scored]:
    return [Scored(a.category, a.audit_gold if audit else a.gold, ranked) for a, ranked in answers]


# -- the run ------------------------------------------------------------------------------------


def parse_conversations(spec: str | None, total: int) -> tuple[int, ...]:
    """``None`` → all; ``"1-3,7"`` → 1-based numbers and ranges → 0-based indices."""
    if spec is None or not spec.strip():
        return tuple(range(total))
    picked: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise InvalidInputError(f"--conversations takes numbers and ranges like 1-3,7, got {part!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 1 <= lo <= hi <= total:
            raise InvalidInputError(f"conversation numbers run from 1 to {total}, got {part!r}")
        picked.extend(range(lo - 1, hi))
    return tuple(dict.fromkeys(picked))


def _space(conv: Conversation, index: int) -> str:
    return f"{index + 1:02d}-{conv.sample_id}"


def _result(
    system: str,
    variant: str,
    metrics: dict[str, float],
    seconds: float,
    config: dict[str, Any],
    notes: list[str] | None = None,
) -> BenchResult:
    return make_result(DATASET, system, variant, metrics, seconds, config, notes or ())


def run_system(
    name: str,
    embedder: Embedder,
    convs: Sequence[Conversation],
    indices: Sequence[int],
    audit: Mapping[tuple[int, int], Sequence[str]],
    ks: Sequence[int],
    *,
    with_audit: bool = True,
    progress: Any = None,
) -> list[BenchResult]:
    """The ``default`` (and ``audit``) results of one system on the chosen conversations."""
    started = time.perf_counter()
    system = Timed(make_system(name, embedder))
    counts = EvidenceCounts()
    answers: list[tuple[Asked, tuple[str, ...]]] = []
    on_turn, on_question = _hooks(progress, name, convs, indices)
    try:
        for i in indices:
            conv, space = convs[i], _space(convs[i], i)
            ingest(system, space, turn_docs(conv), on_turn)
            answers += ask(system, space, questions_of(conv, i, audit, counts), max(ks), on_question)
        timing = system.latency_metrics()
    finally:
        system.close()
    seconds = time.perf_counter() - started
    common = {
        **timing,
        "malformed_evidence": float(counts.malformed),
        "dangling_evidence": float(counts.dangling),
        "skipped_no_evidence": float(counts.skipped),
        "conversations": float(len(indices)),
        "llm_calls": 0.0,
        "llm_tokens": 0.0,
    }
    config = {"k": max(ks), "ks": list(ks), "conversations": [i + 1 for i in indices]}
    out = [_result(name, "default", {**aggregate(_scored(answers, False), ks), **common}, seconds, config)]
    if with_audit:
        fixed = sum(1 for a, _ in answers if a.audit_gold != a.gold)
        metrics = {**aggregate(_scored(answers, True), ks), **common, "audit_corrected": float(fixed)}
        out.append(
            _result(
                name, "audit", metrics, seconds, config, ["evidence of WRONG_CITATION questions replaced"]
            )
        )
    return out


def run_locomo(
    systems: Sequence[str],
    embedder: Embedder,
    data: str | Path,
    *,
    audit_path: str | Path | None = None,
    conversations: str | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    variants: Sequence[str] = VARIANTS,
    online_train: int = ONLINE_TRAIN,
    seeds: Sequence[int] = (0, 1, 2),
    promotions: Sequence[str] = ("guarded", "always"),
    progress: Any = None,
    args: Mapping[str, Any] | None = None,
) -> ResultsFile:
    """Run every system on the chosen conversations; one :class:`ResultsFile` for all of them.

    ``progress`` is a ``rich.progress.Progress`` (or anything with ``add_task``/``advance``), or None.
    The embedding cache is warmed first (every turn and question embedded once, in batches), so
    systems that share ``embedder`` never embed a text twice.
    """
    from memq_bench.locomo_online import run_online, run_within, supports_online

    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise InvalidInputError(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    if not ks or any(k < 1 for k in ks):
        raise InvalidInputError("--k takes positive integers")
    ks = sorted(set(ks) | {5, 10})  # recall@5 and ndcg@10 are always reported
    try:
        convs = load_locomo(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"cannot read LoCoMo data from {data}: {exc}") from exc
    indices = parse_conversations(conversations, len(convs))
    audit = load_audit(audit_path) if audit_path is not None and "audit" in variants else {}
    out = ResultsFile(benchmark="locomo", args=dict(args or {}))
    out.extra["embedding"] = warm_embeddings(embedder, [convs[i] for i in indices], progress)
    for name in systems:
        if "default" in variants or "audit" in variants:
            got = run_system(
                name, embedder, convs, indices, audit, ks, with_audit="audit" in variants, progress=progress
            )
            out.results += [r for r in got if r.variant in variants]
        if "online" in variants and supports_online(name):
            for mode in promotions:
                out.results += run_online(
                    name, embedder, convs, indices, ks, train_count=online_train, seeds=seeds, promotion=mode,
                    progress=progress,
                )  # fmt: skip
        if "within" in variants and supports_online(name):
            for mode in promotions:
                out.results.append(
                    run_within(name, embedder, convs, indices, promotion=mode, progress=progress)
                )
    out.extra["conversations"] = [convs[i].sample_id for i in indices]
    return out


def _hooks(
    progress: Any, label: str, convs: Sequence[Conversation], indices: Sequence[int]
) -> tuple[ProgressHook | None, ProgressHook | None]:
    if progress is None:
        return None, None
    turns = progress.add_task(f"{label}: turns", total=sum(len(convs[i].turns) for i in indices))
    asked = sum(len(questions_of(convs[i], i, {}, EvidenceCounts())) for i in indices)
    questions = progress.add_task(f"{label}: questions", total=asked)
    return (lambda n: progress.advance(turns, n)), (lambda n: progress.advance(questions, n))


def warm_embeddings(
    embedder: Embedder, convs: Sequence[Conversation], progress: Any = None, batch: int = 128
) -> dict[str, Any]:
    """Embed every turn (as a document) and question (as a query) once, through a caching embedder."""
    docs = [t.indexed_text() for c in convs for t in c.turns]
    queries = list(dict.fromkeys(q.question for c in convs for q in c.questions))
    task = progress.add_task("embedding (cached)", total=len(docs) + len(queries)) if progress else None
    misses_before = getattr(embedder, "misses", 0)
    started = time.perf_counter()
    for start in range(0, len(docs), batch):
        embedder.embed_documents(docs[start : start + batch])
        if progress:
            progress.advance(task, len(docs[start : start + batch]))
    for q in queries:
        embedder.embed_query(q)
        if progress:
            progress.advance(task, 1)
    return {
        "model": embedder.model_id,
        "texts": len(docs) + len(queries),
        "embedded_now": getattr(embedder, "misses", 0) - misses_before,
        "seconds": time.perf_counter() - started,
    }
