"""End to end with the real embedded model (Gemma 3 270M via llama.cpp, grammar-constrained JSON):
one test per LLM manager. The model is tiny, so these assert the path — a validated answer came back,
decisions were made, records were written with the op log — not the quality of the decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from memq import Memory


@pytest.fixture(scope="module")
def gemma():
    from memq.llm.local import LocalLLM

    return LocalLLM(retries=1)  # each try costs seconds on 2 shared cores


@pytest.fixture
def mem(tmp_path: Path, embedder, gemma):
    gemma.usage.reset()
    m = Memory(tmp_path / "g.db", embedder=embedder, scope="acme", llm=gemma)
    yield m
    m.close()


def logged(mem: Memory, record_id: str, manager: str) -> bool:
    return any(e.actor == f"manager:{manager}" and e.reason for e in mem.history(record_id))


def test_reconcile_with_gemma(mem: Memory) -> None:
    mem.add("Alice lives in Berlin")
    result = mem.add(
        [{"text": "My name is Alice. I live in Munich. I love hiking.", "metadata": {"speaker": "Alice"}}],
        manager="reconcile",
        manager_params={"extract_max_tokens": 160, "decide_max_tokens": 160},
    )
    assert result.decisions and all(d.op in {"ADD", "UPDATE", "INVALIDATE", "NOOP"} for d in result.decisions)
    for record in result.written:
        assert logged(mem, record.id, "reconcile")
    usage = mem.usage()
    assert usage.by_operation["extract"].calls >= 1 and usage.total.prompt_tokens > 0
    if result.written:  # facts were found: the second call ran against the stored neighbour
        assert usage.by_operation["reconcile"].calls >= 1


def test_experience_with_gemma(mem: Memory) -> None:
    result = mem.add(
        {
            "text": "Book a table for two",
            "payload": {"outcome": "success", "trajectory": ["opened app", "booked"]},
        },
        manager="experience",
        manager_params={"max_tokens": 160},
    )
    (record,) = result.written
    assert record.kind == "experience" and record.payload["script"] and record.payload["trajectory"]
    assert logged(mem, record.id, "experience")


def test_insights_with_gemma(mem: Memory) -> None:
    attempts = [
        {
            "text": "Pay the electricity bill",
            "payload": {"outcome": "success", "trajectory": "used bank transfer"},
        },
        {"text": "Pay the water bill", "payload": {"outcome": "failure", "trajectory": "used expired card"}},
    ]
    result = mem.add(attempts, manager="insights", manager_params={"max_tokens": 200})
    assert result.decisions
    for record in result.written:
        assert record.kind == "insight" and record.payload["strength"] >= 1
        assert logged(mem, record.id, "insights")
    assert mem.usage().by_operation["insights"].calls >= 1


def test_notes_with_gemma(mem: Memory) -> None:
    first = mem.add("Python lists are mutable sequences", manager="notes", manager_params={"max_tokens": 96})
    second = mem.add(
        "Python tuples are immutable sequences", manager="notes", manager_params={"max_tokens": 96}
    )
    note = next(r for r in second.written if r.version == 1)
    assert note.kind == "note" and note.payload["keywords"] and note.payload["tags"]
    assert logged(mem, first.written[0].id, "notes") and logged(mem, note.id, "notes")
    assert mem.usage().by_operation["note_evolve"].calls >= 1  # the first note was a neighbour


def test_episodes_with_gemma(mem: Memory) -> None:
    # time-gap boundaries, then one digest call per episode (title, summary, notes) by Gemma; the LLM
    # segmenter's cover of the messages is beyond a 270M model (tested over the replay server instead)
    t0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    stream = [
        {"text": "I'm going to Japan in May.", "metadata": {"role": "user"}, "valid_from": t0},
        {
            "text": "Kyoto is lovely then.",
            "metadata": {"role": "assistant"},
            "valid_from": t0 + timedelta(minutes=1),
        },
        {
            "text": "My laptop battery died.",
            "metadata": {"role": "user"},
            "valid_from": t0 + timedelta(hours=3),
        },
    ]
    result = mem.add(stream, manager="episodes", manager_params={"boundary": "gap", "max_tokens": 200})
    episodes = [r for r in result.written if r.kind == "episode"]
    assert [(r.payload["start"], r.payload["end"]) for r in episodes] == [(0, 1), (2, 2)]
    assert all(r.payload["title"] and r.payload["summary"] for r in episodes)
    assert mem.usage().by_operation["episode_digest"].calls >= 2
    for record in result.written:
        assert logged(mem, record.id, "episodes")
