"""``experience``, ``insights``, ``notes`` and ``episodes`` over the replay server (real HTTP, real
OpenAI client): each manager's decisions, its op log, and bad answers → typed error, nothing written."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from llm_replay import Recorded, answer, empty, malformed, truncated
from memq import InvalidInputError, Memory
from memq.errors import LLMOutputError


def snapshot(mem: Memory) -> str:
    out = io.StringIO()
    mem.export(out, all_tenants=True)
    return out.getvalue()


@pytest.fixture
def mem(tmp_path: Path, embedder, llm_server):
    m = Memory(tmp_path / "l.db", embedder=embedder, scope="acme", llm=llm_server.llm())
    yield m
    m.close()


# -- experience ----------------------------------------------------------------------------------------

WIN = {
    "text": "Transfer 100 EUR to Bob",
    "payload": {"outcome": "success", "trajectory": ["open app", "SEPA form"]},
}
LOSS = {
    "text": "Transfer 50 EUR to Carol",
    "payload": {"outcome": "failure", "trajectory": ["used card form"]},
}


def test_experience_script_and_reflection(mem: Memory, llm_server) -> None:
    llm_server.script(
        answer({"steps": ["Open the banking app", "Choose the SEPA form", "Confirm with the PIN"]}),
        answer(
            {"went_wrong": "used the card form", "avoid": "the card form", "improve": "use the SEPA form"}
        ),
    )
    result = mem.add([WIN, LOSS], manager="experience")
    win, loss = result.written
    assert win.kind == loss.kind == "experience"
    assert win.payload["script"][1] == "Choose the SEPA form" and win.payload["answer"].startswith(
        "SCRIPT: 1."
    )
    assert win.payload["trajectory"] == ["open app", "SEPA form"] and win.payload["reward"] == 1.0
    assert loss.payload["type"] == "adjustment" and loss.payload["reflection"]["avoid"] == "the card form"
    assert loss.payload["trajectory"] == ["used card form"] and loss.payload["reward"] == 0.0
    assert (
        "SEPA" in llm_server.requests[0].prompt_text and "<trajectory>" in llm_server.requests[0].prompt_text
    )
    assert mem.history(loss.id)[0].actor == "manager:experience"
    assert "reflection" in mem.history(loss.id)[0].reason
    assert set(mem.usage().by_operation) == {"experience_script", "experience_reflection"}
    # the same task again joins the stored experience's task key (remember_experience's MemRL merge)
    llm_server.script(answer({"steps": ["Open the app", "Use SEPA"]}))
    again = mem.add(WIN, manager="experience").written[0]
    assert again.payload["task_key"] == win.payload["task_key"]
    assert again.links[0].target == win.id and again.links[0].type == "same_task"


def test_experience_bad_input_and_bad_answer_write_nothing(mem: Memory, llm_server) -> None:
    with pytest.raises(InvalidInputError, match="outcome"):
        mem.add("a task with no outcome", manager="experience")
    assert llm_server.requests == []
    before = snapshot(mem)
    llm_server.script(answer({"steps": []}), malformed("{"), truncated('{"steps": ["Open'))
    with pytest.raises(LLMOutputError):
        mem.add([LOSS, WIN], manager="experience", manager_params={"reflect": False})
    assert snapshot(mem) == before


# -- insights ------------------------------------------------------------------------------------------


def test_insights_rule_lifecycle(mem: Memory, llm_server) -> None:
    llm_server.script(
        answer(
            {
                "status": "changes",
                "ops": [
                    {"op": "ADD", "text": "Use the SEPA form for transfers", "reason": "success used it"},
                    {"op": "ADD", "text": "Always ask twice", "reason": "guess"},
                ],
            }
        ),
    )
    first = mem.add([WIN, LOSS], manager="insights")
    assert [d.op for d in first.decisions] == ["ADD", "ADD"]
    assert all(r.kind == "insight" and r.payload["strength"] == 2 for r in first.written)
    prompt = llm_server.requests[0].prompt_text
    assert "SUCCESS: Transfer 100 EUR to Bob" in prompt and "FAILURE: Transfer 50 EUR to Carol" in prompt
    sepa, twice = sorted(first.written, key=lambda r: r.id)

    def numbers(request: Recorded) -> dict[str, int]:
        text = request.messages[-1]["content"]
        return {
            t: i
            for i, t in enumerate(["Use the SEPA form for transfers", "Always ask twice"])
            if f'[{i}] "{t}"' in text
        }

    llm_server.respond_with(
        lambda req: {
            "status": "changes",
            "ops": [
                {
                    "op": "AGREE",
                    "rule": numbers(req)["Use the SEPA form for transfers"],
                    "reason": "confirmed",
                },
                {"op": "REMOVE", "rule": numbers(req)["Always ask twice"], "reason": "not helpful"},
            ],
        }
    )
    mem.add([WIN, LOSS], manager="insights")
    assert mem.get(sepa.id).payload["strength"] == 3
    assert mem.get(twice.id).payload["strength"] == 1 and mem.get(twice.id).valid_to is None
    mem.add([WIN, LOSS], manager="insights")
    gone = mem.get(twice.id)
    assert gone.payload["strength"] == 0 and gone.valid_to is not None  # removed at 0: invalidated, kept
    assert [e.op.value for e in mem.history(twice.id)] == ["add", "update", "invalidate"]
    assert "strength 0" in mem.history(twice.id)[-1].reason
    assert [r.text for r in mem.iter(kinds=["insight"])] == ["Use the SEPA form for transfers"]
    # an EDIT of the surviving rule: new text, strength + 1; the retired rule is no longer shown
    llm_server.respond_with(None)
    llm_server.script(
        answer(
            {
                "status": "changes",
                "ops": [{"op": "EDIT", "rule": 0, "text": "Pay by SEPA transfer, never the card form"}],
            }
        )
    )
    mem.add(LOSS, manager="insights")
    assert "Always ask twice" not in llm_server.requests[-1].prompt_text
    edited = mem.get(sepa.id)
    assert edited.text == "Pay by SEPA transfer, never the card form" and edited.payload["strength"] == 5


def test_insights_unknown_rule_and_silent_empty_are_refused(mem: Memory, llm_server) -> None:
    before = snapshot(mem)
    llm_server.script(
        answer({"status": "changes", "ops": [{"op": "AGREE", "rule": 0}]}),  # there are no rules
        answer({"status": "changes", "ops": []}),  # changes announced, none given
        empty(),
    )
    with pytest.raises(LLMOutputError):
        mem.add([WIN, LOSS], manager="insights")
    assert snapshot(mem) == before
    llm_server.script(answer({"status": "no_change", "ops": []}))
    result = mem.add(WIN, manager="insights")
    assert [d.op for d in result.decisions] == ["NOOP"] and snapshot(mem) == before


# -- notes ---------------------------------------------------------------------------------------------


def test_notes_links_and_neighbour_evolution(mem: Memory, llm_server) -> None:
    llm_server.script(
        answer({"keywords": ["python", "asyncio"], "tags": ["programming"], "context": "Async Python."})
    )
    first = mem.add("asyncio runs coroutines on an event loop", manager="notes").written[0]
    assert len(llm_server.requests) == 1  # no older note: no evolution call
    assert first.payload["tags"] == ["programming"] and first.metadata["tags"] == ["programming"]
    llm_server.script(
        answer(
            {
                "keywords": ["trio"],
                "tags": ["programming", "concurrency"],
                "context": "Structured concurrency.",
            }
        ),
        answer(
            {
                "links": [0],
                "updates": [
                    {
                        "id": 0,
                        "context": "Async Python, compared with trio.",
                        "tags": ["programming", "concurrency"],
                    }
                ],
                "reason": "same topic",
            }
        ),
    )
    result = mem.add("trio offers structured concurrency for async Python", manager="notes")
    assert [d.op for d in result.decisions] == ["EVOLVE", "ADD"]
    note = next(r for r in result.written if r.version == 1)
    assert note.links[0].target == first.id and note.links[0].type == "related"
    evolved = mem.get(first.id)
    assert evolved.version == 2 and evolved.payload["context"] == "Async Python, compared with trio."
    assert evolved.metadata["tags"] == ["programming", "concurrency"]
    last = mem.history(first.id)[-1]
    assert last.actor == "manager:notes" and "EVOLVE" in last.reason and "same topic" in last.reason
    assert first.id not in llm_server.requests[-1].prompt_text  # numbered, never the real id


def test_notes_invalid_neighbour_number_writes_nothing(mem: Memory, llm_server) -> None:
    llm_server.script(answer({"keywords": ["a"], "tags": ["b"], "context": "c"}))
    mem.add("asyncio runs coroutines on an event loop", manager="notes")
    before = snapshot(mem)
    llm_server.script(
        answer({"keywords": ["a"], "tags": ["b"], "context": "c"}),
        *[answer({"links": [3], "updates": [], "reason": ""})] * 3,  # only note 0 was shown
    )
    with pytest.raises(LLMOutputError):
        mem.add("trio and asyncio", manager="notes")
    assert snapshot(mem) == before


# -- episodes ------------------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
STREAM = [
    {"text": "I'm planning a trip to Japan in May", "metadata": {"role": "user"}, "valid_from": T0},
    {
        "text": "Kyoto is lovely in spring",
        "metadata": {"role": "assistant"},
        "valid_from": T0 + timedelta(minutes=1),
    },
    {
        "text": "My laptop battery died again",
        "metadata": {"role": "user"},
        "valid_from": T0 + timedelta(hours=5),
    },
]


def test_episodes_llm_segmentation(mem: Memory, llm_server) -> None:
    llm_server.script(
        answer({"episodes": [{"start": 0, "end": 0, "title": "x", "summary": "y"}]}),  # does not cover 1-2
        answer(
            {
                "episodes": [
                    {
                        "start": 0,
                        "end": 1,
                        "title": "Japan trip",
                        "summary": "Trip to Japan in May.",
                        "notes": ["User plans a trip to Japan in May"],
                    },
                    {"start": 2, "end": 2, "title": "Laptop", "summary": "Battery died.", "notes": []},
                ]
            }
        ),
    )
    result = mem.add(STREAM, manager="episodes")
    assert [d.op for d in result.decisions] == ["EPISODE", "ADD", "EPISODE"]
    trip, note, laptop = result.written
    assert laptop.payload["start"] == 2 and laptop.links == []
    assert trip.kind == "episode" and trip.text == "Japan trip: Trip to Japan in May."
    assert [m["text"] for m in trip.payload["messages"]] == [STREAM[0]["text"], STREAM[1]["text"]]
    assert trip.valid_from == T0
    assert note.kind == "note" and note.links[0].target == trip.id and note.provenance.parent_ids == [trip.id]
    assert trip.links[0].target == note.id
    assert "messages 0-1" in mem.history(trip.id)[0].reason
    assert (
        "1: assistant: Kyoto" in llm_server.requests[0].prompt_text
        or "assistant: Kyoto" in llm_server.requests[0].prompt_text
    )
    assert mem.usage().by_operation["episodes_segment"].retries == 1


def test_episodes_deterministic_boundaries_without_llm(tmp_path: Path, embedder) -> None:
    with Memory(tmp_path / "e.db", embedder=embedder, scope="acme") as m:
        with pytest.raises(InvalidInputError, match="needs an LLM"):
            m.add(STREAM, manager="episodes")
        gap = m.add(STREAM, manager="episodes", manager_params={"boundary": "gap", "gap_minutes": 60})
        assert [r.payload["start"] for r in gap.written] == [0, 2]
        assert all(r.kind == "episode" for r in gap.written) and m.usage().total.calls == 0
        topic = m.add(
            ["Kyoto temples are beautiful", "Kyoto shrines and temples in spring", "My laptop battery died"],
            manager="episodes",
            manager_params={"boundary": "topic", "topic_threshold": 0.3},
        )
        assert [(r.payload["start"], r.payload["end"]) for r in topic.written] == [(0, 1), (2, 2)]


def test_episodes_gap_boundaries_with_llm_digests(mem: Memory, llm_server) -> None:
    before = snapshot(mem)
    llm_server.script(
        answer({"title": "Japan", "summary": "A trip.", "notes": ["Trip to Japan in May"]}),
        malformed("{"),
        malformed("{"),
        malformed("{"),
    )
    with pytest.raises(LLMOutputError):  # the second episode's digest never validates: nothing written
        mem.add(STREAM, manager="episodes", manager_params={"boundary": "gap"})
    assert snapshot(mem) == before


async def _async_experiences(path: Path, embedder, llm) -> list:
    from memq import AsyncMemory

    async with await AsyncMemory.open(str(path), embedder=embedder, scope="acme", llm=llm) as m:
        first = (await m.add(WIN, manager="experience")).written[0]
        second = (await m.add(WIN, manager="experience")).written[0]
        return [first, second, (await m.history(second.id))[0], m.usage()]


def test_experience_through_async_memory(tmp_path: Path, embedder, llm_server) -> None:
    import asyncio

    llm_server.script(answer({"steps": ["Open the app", "Use SEPA"]}), answer({"steps": ["Use SEPA"]}))
    first, second, event, usage = asyncio.run(
        _async_experiences(tmp_path / "a.db", embedder, llm_server.llm())
    )
    assert second.payload["task_key"] == first.payload["task_key"] == first.id
    assert second.links[0].target == first.id and event.actor == "manager:experience"
    assert usage.by_operation["experience_script"].calls == 2
