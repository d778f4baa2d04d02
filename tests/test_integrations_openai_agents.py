"""MemqSession and memq's function tools driven by the real OpenAI Agents SDK (``openai-agents`` 0.24):
``Runner.run`` with an ``OpenAIChatCompletionsModel`` whose client talks HTTP to the replay server
(scripted model turns). Tracing is off (the SDK would otherwise export traces to OpenAI).

The embedder is memq's HashingEmbedder: the tests check history round trips, tool calls and
feedback; every query shares words with the memory it must find.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

from agents import Agent, OpenAIChatCompletionsModel, Runner, SQLiteSession, set_tracing_disabled
from agents.memory import SessionSettings
from openai import AsyncOpenAI

from llm_replay import Recorded
from memq import AsyncMemory, InvalidInputError, Memory, Scope, ScopeError
from memq.embed import HashingEmbedder
from memq.integrations.openai_agents import MemqSession, item_text, memq_tools
from memq.integrations.scripted import final, last_tool_output, tool_call

set_tracing_disabled(True)
ALICE = Scope(tenant="acme", user="alice")


@pytest.fixture
def mem(tmp_path: Path) -> Memory:
    return Memory(tmp_path / "agents.db", embedder=HashingEmbedder(dim=64), scope=ALICE)


def _agent(server, tools=()) -> Agent:
    client = AsyncOpenAI(base_url=server.url, api_key="test-key")
    model = OpenAIChatCompletionsModel(model="replay-model", openai_client=client)
    return Agent(name="assistant", instructions="Be brief.", model=model, tools=list(tools))


async def test_runner_keeps_history_in_memq_like_the_sdk_sqlite_session(mem: Memory, llm_server) -> None:
    session = MemqSession("chat-1", mem)
    reference = SQLiteSession("chat-1")
    llm_server.script(final("Hi Alice!"), final("Hi Alice!"), final("You said your name is Alice."))
    agent = _agent(llm_server)
    await Runner.run(agent, "Hi, I'm Alice", session=session)
    await Runner.run(agent, "Hi, I'm Alice", session=reference)
    result = await Runner.run(agent, "What is my name?", session=session)
    assert result.final_output == "You said your name is Alice."
    # the second turn's request carried the first turn's history from memq
    sent = [m["content"] for m in llm_server.requests[2].messages if m["role"] != "system"]
    assert sent[:2] == ["Hi, I'm Alice", "Hi Alice!"]
    items = await session.get_items()
    # the SDK's own items, field for field (only the replayed response id differs between the runs)
    assert len(items) == 4 and _no_response_id(items[:2]) == _no_response_id(await reference.get_items())
    assert await session.get_items(limit=2) == items[2:]
    records = list(mem.iter(kinds=["message"]))
    assert [r.text for r in records] == [
        "user: Hi, I'm Alice",
        "assistant: Hi Alice!",
        "user: What is my name?",
        "assistant: You said your name is Alice.",
    ]
    assert {r.scope for r in records} == {Scope(tenant="acme", user="alice", session="chat-1")}
    assert await MemqSession("chat-2", mem).get_items() == []  # sessions do not mix


def _no_response_id(items: list[dict]) -> list[dict]:
    return [
        {k: v for k, v in i.items() if k != "provider_data"} | {"pd": i.get("provider_data", {}).get("model")}
        for i in items
    ]


async def test_pop_clear_and_settings(mem: Memory) -> None:
    session = MemqSession("s", mem, session_settings=SessionSettings(limit=1))
    await session.add_items([{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    assert await session.get_items() == [{"role": "user", "content": "two"}]  # the settings' limit
    assert await session.get_items(limit=5) == [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ]
    assert await session.pop_item() == {"role": "user", "content": "two"}
    assert await session.get_items(limit=5) == [{"role": "user", "content": "one"}]
    (left,) = mem.iter(kinds=["message"])
    await session.clear_session()
    assert await session.get_items() == [] and await session.pop_item() is None
    assert list(mem.iter()) == []  # soft deleted: hidden, and the history stays
    assert [e.op.value for e in mem.history(left.id)] == ["add", "delete"]
    assert mem.get(left.id, include_deleted=True).text == "user: one"


async def test_session_on_async_memory(tmp_path: Path, llm_server) -> None:
    amem = await AsyncMemory.open(tmp_path / "a.db", embedder=HashingEmbedder(dim=64), scope=ALICE)
    session = MemqSession("chat-async", amem)
    llm_server.script(final("Noted."), final("Lisbon."))
    agent = _agent(llm_server)
    await Runner.run(agent, "I moved to Lisbon", session=session)
    result = await Runner.run(agent, "Where do I live?", session=session)
    assert result.final_output == "Lisbon."
    assert [m["content"] for m in llm_server.requests[1].messages][1:3] == ["I moved to Lisbon", "Noted."]
    assert len(await session.get_items()) == 4
    await amem.close()


async def test_agent_recalls_and_reports_feedback_through_tools(mem: Memory, llm_server) -> None:
    mem.add(["Alice's usual seat is 14C, an aisle seat", "Alice flies with a cello"])

    def after_recall(request: Recorded):
        recalled = json.loads(last_tool_output(request))
        seat = next(m for m in recalled["memories"] if "14C" in m["text"])
        return tool_call(
            "feedback", {"retrieval_id": recalled["retrieval_id"], "reward": 1.0, "used": [seat["id"]]}
        )

    llm_server.script(tool_call("recall", {"query": "usual seat aisle", "k": 2}))
    steps = iter([after_recall, lambda r: tool_call("remember", {"text": "Alice booked 14C on May 2"}), None])
    llm_server.respond_with(lambda r: (next(steps) or (lambda _: final("Booked 14C.")))(r))
    session = MemqSession("trip", mem)
    agent = _agent(llm_server, memq_tools(mem, kinds=["fact"]))
    result = await Runner.run(agent, "Book my usual seat", session=session)
    assert result.final_output == "Booked 14C."
    seat = next(r for r in mem.iter(kinds=["fact"]) if "14C, an aisle" in r.text)
    assert seat.utility.n_used == 1 and seat.utility.reward_sum == 1.0
    assert any(r.text == "Alice booked 14C on May 2" for r in mem.iter(kinds=["fact"]))
    # recall searched facts only (kinds=["fact"]), not the session's own messages
    recalled = json.loads(last_tool_output(llm_server.requests[1]))
    assert all("user:" not in m["text"] for m in recalled["memories"])
    # the run's tool calls are in the memq session too, searchable as text
    texts = [r.text for r in mem.iter(kinds=["message"])]
    assert any(t.startswith("recall(") for t in texts) and any(t.startswith("feedback(") for t in texts)
    tools = memq_tools(mem)
    assert tools[0].memq_tools is tools[2].memq_tools


async def test_tool_errors_reach_the_model(mem: Memory, llm_server) -> None:
    llm_server.script(
        tool_call("feedback", {"retrieval_id": "nope", "reward": 1.0, "used": None}), final("ok")
    )
    await Runner.run(_agent(llm_server, memq_tools(mem)), "rate it")
    assert last_tool_output(llm_server.requests[1]).startswith("not_found: no retrieval nope")


def test_item_text() -> None:
    assert item_text({"role": "user", "content": "hi"}) == "user: hi"
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello"}]}
    assert item_text(message) == "assistant: Hello"
    assert (
        item_text({"type": "function_call", "name": "recall", "arguments": '{"q": 1}'}) == 'recall({"q": 1})'
    )
    assert item_text({"type": "function_call_output", "output": "done"}) == "done"
    assert item_text({"type": "reasoning", "summary": []}) == '{"summary": [], "type": "reasoning"}'


async def test_bad_input(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match="session_id"):
        MemqSession("", mem)
    with pytest.raises(InvalidInputError, match=r"memq\.Memory"):
        MemqSession("s", "memq.db")  # type: ignore[arg-type]
    with pytest.raises(ScopeError, match="session 'other'"):
        MemqSession("s", mem, scope=Scope(tenant="acme", session="other"))
    session = MemqSession("s", mem)
    with pytest.raises(InvalidInputError, match="list of items"):
        await session.add_items(["not a dict"])
    with pytest.raises(InvalidInputError, match="limit"):
        await session.get_items(limit=-1)
    with pytest.raises(InvalidInputError, match="JSON"):
        await session.add_items([{"role": "user", "content": "ok"}, {"role": "user", "content": object()}])
    assert await session.get_items() == []  # the batch wrote nothing
