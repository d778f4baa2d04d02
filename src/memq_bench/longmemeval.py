"""``memq bench longmemeval``: LongMemEval retrieval (Wu et al., ICLR 2025), LLM-free.

Every question has its own haystack of chat sessions; each haystack goes into its own space, one
``add`` per session holding that session's turns as separate records (key ``<session id>_<turn
number>``, 1-based as in LongMemEval's ``run_retrieval.py``). The question is asked once for the top
``search_k`` turns, and two rankings are scored from it:

* turn level: ``turn_recall_any@k`` (and ``turn_recall_all@k``, ``turn_ndcg_any@k``), gold = the
  turns marked ``has_answer`` (a missing key is false); questions with no such indexed turn are
  skipped and counted;
* session level: sessions in the order of their best turn (LongMemEval's turn→session scoring grows
  k until k distinct sessions are covered, which gives the same recall), gold = ``answer_session_ids``:
  ``session_recall_all@k``, ``session_recall_any@k``, ``session_ndcg_any@k`` (binary nDCG over the
  session ranking).

Abstention questions (``_abs``) are skipped, as in the official scripts. ``roles="user"`` indexes only
user turns, like the official turn-level corpus; ``"all"`` also indexes assistant turns.
Ingestion throughput is measured on the oracle split (only evidence sessions per question).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from memq.embed.base import Embedder
from memq.errors import InvalidInputError
from memq_bench.data import read_json_list
from memq_bench.metrics import first_seen, ndcg_binary, recall_all, recall_any
from memq_bench.results import NO_HOOKS, BenchResult, ResultsFile, RunHooks, package_versions
from memq_bench.systems import BenchDoc, Timed, make_system

S_FILE = "longmemeval/longmemeval_s_cleaned_sample60.json"
ORACLE_FILE = "longmemeval/longmemeval_oracle.json"
DATASET = "longmemeval/s_cleaned_sample60"
Roles = Literal["user", "all"]
MAX_CHARS = 32_000  # memq's default max_text_chars; every system gets the same (cut) text


@dataclass(frozen=True)
class LmeTurn:
    key: str  # "<session id>_<1-based turn index>"
    session_id: str
    role: str
    text: str
    has_answer: bool


@dataclass
class LmeSession:
    session_id: str
    when: datetime | None
    turns: list[LmeTurn]


@dataclass
class LmeQuestion:
    question_id: str
    question_type: str
    question: str
    answer_session_ids: list[str]
    sessions: list[LmeSession] = field(default_factory=list)

    @property
    def abstention(self) -> bool:
        return self.question_id.endswith("_abs")

    def turns(self, roles: Roles = "user") -> list[LmeTurn]:
        return [t for s in self.sessions for t in s.turns if roles == "all" or t.role == "user"]


def parse_date(text: str) -> datetime | None:
    """'2023/05/28 (Sun) 19:47' → aware UTC datetime, None if it does not parse."""
    try:
        day, _, clock = text.partition(")")
        return datetime.strptime(f"{day.split('(')[0].strip()} {clock.strip()}", "%Y/%m/%d %H:%M").replace(
            tzinfo=UTC
        )
    except (ValueError, AttributeError):
        return None


def load_longmemeval(path: str | Path, limit: int | None = None) -> list[LmeQuestion]:
    """Read a LongMemEval JSON file (S, M or oracle split); ``limit`` keeps the first N questions."""
    raw = read_json_list(path, "questions")
    out = []
    for i, item in enumerate(raw[:limit] if limit is not None else raw):
        try:
            q = LmeQuestion(
                question_id=str(item["question_id"]),
                question_type=str(item["question_type"]),
                question=str(item["question"]),
                answer_session_ids=[str(s) for s in item["answer_session_ids"]],
            )
            ids, dates, sessions = (
                item["haystack_session_ids"],
                item["haystack_dates"],
                item["haystack_sessions"],
            )
        except (KeyError, TypeError) as exc:
            raise InvalidInputError(f"{path}: question {i} lacks {exc}") from exc
        if not (len(ids) == len(dates) == len(sessions)):
            raise InvalidInputError(
                f"{path}: question {q.question_id}: haystack ids, dates and sessions differ in length"
            )
        for sid, date, turns in zip(ids, dates, sessions, strict=True):
            session = LmeSession(str(sid), parse_date(str(date)), [])
            for n, turn in enumerate(turns, start=1):
                text = str(turn.get("content", ""))[:MAX_CHARS]
                if not text.strip():
                    continue  # nothing to store or find (5 such turns in S60)
                session.turns.append(
                    LmeTurn(
                        f"{sid}_{n}",
                        str(sid),
                        str(turn.get("role", "")),
                        text,
                        bool(turn.get("has_answer", False)),
                    )
                )
            q.sessions.append(session)
        out.append(q)
    return out


def session_of(turn_key: str) -> str:
    """``<session id>_<n>`` → ``<session id>`` (session ids may contain underscores)."""
    return turn_key.rsplit("_", 1)[0]


def question_metrics(
    question: LmeQuestion, ranked_turns: Sequence[str], ks: Sequence[int], roles: Roles
) -> dict[str, float]:
    """Metrics of one question from its ranked turn keys (empty for ``_abs`` questions)."""
    if question.abstention:
        return {}
    out: dict[str, float] = {}
    sessions = [str(s) for s in first_seen(ranked_turns, session_of)]
    gold_sessions = set(question.answer_session_ids)
    if gold_sessions:
        for k in ks:
            out[f"session_recall_all@{k}"] = recall_all(sessions, gold_sessions, k)
            out[f"session_recall_any@{k}"] = recall_any(sessions, gold_sessions, k)
            out[f"session_ndcg_any@{k}"] = ndcg_binary(sessions, gold_sessions, k)
    gold_turns = {t.key for t in question.turns(roles) if t.has_answer}
    if gold_turns:
        for k in ks:
            out[f"turn_recall_any@{k}"] = recall_any(ranked_turns, gold_turns, k)
            out[f"turn_recall_all@{k}"] = recall_all(ranked_turns, gold_turns, k)
            out[f"turn_ndcg_any@{k}"] = ndcg_binary(ranked_turns, gold_turns, k)
    return out


def average(per_question: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean of each metric over the questions that have it, plus ``*_questions`` counts."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for m in per_question:
        for name, v in m.items():
            sums[name] = sums.get(name, 0.0) + v
            counts[name] = counts.get(name, 0) + 1
    out = {name: sums[name] / counts[name] for name in sorted(sums)}
    session_n = [c for n, c in counts.items() if n.startswith("session_")]
    turn_n = [c for n, c in counts.items() if n.startswith("turn_")]
    out["session_questions"] = float(max(session_n, default=0))
    out["turn_questions"] = float(max(turn_n, default=0))
    return out


def docs_of(session: LmeSession, roles: Roles) -> list[BenchDoc]:
    return [
        BenchDoc(key=t.key, text=t.text, when=session.when, meta={"session_id": t.session_id, "role": t.role})
        for t in session.turns
        if roles == "all" or t.role == "user"
    ]


def embed_texts(questions: Sequence[LmeQuestion], roles: Roles) -> list[str]:
    """Every distinct text a run will embed as a document, in order."""
    return list(dict.fromkeys(t.text for q in questions for t in q.turns(roles)))


def warm_cache(
    embedder: Embedder, texts: Sequence[str], batch: int = 128, on_batch: Callable[[int], None] | None = None
) -> tuple[int, float]:
    """Embed ``texts`` once through a caching embedder; returns (texts embedded now, seconds)."""
    misses_before = getattr(embedder, "misses", 0)
    started = time.perf_counter()
    for start in range(0, len(texts), batch):
        embedder.embed_documents(texts[start : start + batch])
        if on_batch:
            on_batch(len(texts[start : start + batch]))
    return getattr(embedder, "misses", 0) - misses_before, time.perf_counter() - started


@dataclass
class SystemRun:
    per_question: list[dict[str, float]] = field(default_factory=list)
    by_type: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        """The averages, plus ``session_recall_all@k/<type>`` and ``turn_recall_any@k/<type>``."""
        out = average(self.per_question)
        for qtype, rows in sorted(self.by_type.items()):
            for key, v in average(rows).items():
                if key.startswith(("session_recall_all@", "turn_recall_any@")):
                    out[f"{key}/{qtype}"] = v
        return out


def space_of(question: LmeQuestion) -> str:
    """The space a question's haystack goes into."""
    return f"lme-{question.question_id}"


def ingest_haystack(system: Timed, question: LmeQuestion, roles: Roles) -> str:
    """Add a question's haystack to its own space, one ``add`` per session; returns the space."""
    space = space_of(question)
    for session in question.sessions:
        docs = docs_of(session, roles)
        if docs:
            system.add(space, docs)
    return space


def run_retrieval(
    system: Timed,
    questions: Sequence[LmeQuestion],
    ks: Sequence[int],
    *,
    roles: Roles,
    search_k: int,
    on_question: Callable[[], None] | None = None,
) -> SystemRun:
    """Ingest each haystack into its own space (one add per session), ask, score."""
    run = SystemRun()
    for q in questions:
        space = ingest_haystack(system, q, roles)
        ranked = system.search(space, q.question, search_k)
        m = question_metrics(q, ranked, ks, roles)
        if m:
            run.per_question.append(m)
            run.by_type.setdefault(q.question_type, []).append(m)
        if on_question:
            on_question()
    return run


def run_ingest(
    system: Timed,
    questions: Sequence[LmeQuestion],
    *,
    roles: Roles,
    on_question: Callable[[], None] | None = None,
) -> tuple[int, float]:
    """Ingest the oracle haystacks; returns (turns, seconds spent in add calls)."""
    turns = 0
    started = len(system.add_ms)
    for q in questions:
        for session in q.sessions:
            docs = docs_of(session, roles)
            if docs:
                system.add(f"oracle-{q.question_id}", docs)
                turns += len(docs)
        if on_question:
            on_question()
    return turns, sum(system.add_ms[started:]) / 1000


def run_benchmark(
    questions: Sequence[LmeQuestion],
    oracle: Sequence[LmeQuestion] | None,
    systems: Sequence[str],
    embedder: Embedder,
    *,
    ks: Sequence[int] = (5, 10),
    roles: Roles = "user",
    search_k: int = 50,
    hooks: RunHooks = NO_HOOKS,
) -> ResultsFile:
    """Warm the embedding cache once, then run every system on the same questions."""
    if search_k < max(ks):
        raise InvalidInputError(f"search_k ({search_k}) must be >= the largest k ({max(ks)})")
    results = hooks.new_results("longmemeval")
    texts = embed_texts(list(questions) + list(oracle or []), roles)
    embedded, embed_s = warm_cache(embedder, texts, on_batch=hooks.tick("embedding (cached)", len(texts)))
    results.extra["embedding"] = {
        "texts": len(texts),
        "embedded_now": embedded,
        "seconds": embed_s,
        "texts_per_s_of_misses": embedded / embed_s if embedded and embed_s else None,
        "model": embedder.model_id,
    }
    versions = package_versions()
    for name in systems:
        started = time.perf_counter()
        system = Timed(make_system(name, embedder))
        on_question = hooks.tick(f"{name}: S questions", len(questions))
        try:
            run = run_retrieval(
                system,
                questions,
                ks,
                roles=roles,
                search_k=search_k,
                on_question=on_question,
            )
            metrics = run.metrics()
            metrics.update(system.latency_metrics())
        finally:
            system.close()
        if oracle:
            ingest = Timed(make_system(name, embedder))
            on_ingest = hooks.tick(f"{name}: oracle ingest", len(oracle))
            try:
                turns, seconds = run_ingest(
                    ingest,
                    oracle,
                    roles=roles,
                    on_question=on_ingest,
                )
            finally:
                ingest.close()
            metrics["ingest_turns"] = float(turns)
            metrics["ingest_turns_per_s"] = turns / seconds if seconds else 0.0
        metrics["llm_calls"] = 0.0
        metrics["llm_tokens"] = 0.0
        results.results.append(
            BenchResult(
                system=name,
                dataset=DATASET,
                variant=f"turns-{roles}",
                config={"k": list(ks), "search_k": search_k, "roles": roles, "questions": len(questions)},
                metrics=metrics,
                seconds=time.perf_counter() - started,
                versions=versions,
                notes=[
                    "LME-S60: a 60-question subset of LongMemEval_S; not comparable with full-500 numbers",
                    "one record per turn; session ranking = sessions by their best turn",
                    "ingest_turns_per_s: oracle split, embeddings served from a warm cache (store cost only)",
                ],
            )
        )
        hooks.save(results)
    return results


def markdown_table(results: ResultsFile, ks: Sequence[int]) -> str:
    cols = [f"session_recall_all@{k}" for k in ks] + [f"session_ndcg_any@{k}" for k in ks]
    cols += [f"turn_recall_any@{k}" for k in ks]
    lat = ["add_ms_p50", "search_ms_p50", "search_ms_p95", "ingest_turns_per_s"]
    head = ["system", *cols, "add ms p50", "search ms p50", "search ms p95", "ingest turns/s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    nan = float("nan")
    for r in results.results:
        m = r.metrics
        cells = [r.system] + [f"{m.get(c, nan):.3f}" for c in cols] + [f"{m.get(c, nan):.1f}" for c in lat]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
