"""MemqMemoryBlock and memq's function tools inside the real LlamaIndex (``llama-index-core`` 0.14):
its chat ``Memory`` (short-term window flushed into the block) and a ``FunctionAgent`` whose LLM is
LlamaIndex's own scripted ``MockFunctionCallingLLM`` (a response generator plays the model).

The embedder is memq's HashingEmbedder: the tests check what the block shows the model and stores,
and the feedback path; every query shares words with the memory it must find.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.memory import Memory as ChatMemory
from pydantic import ValidationError

from llm_replay import answer
from memq import AsyncMemory, InvalidInputError, Memory, NotFoundError, Scope
from memq.embed import HashingEmbedder
from memq.integrations.llamaindex import MemqMemoryBlock, memq_tools

ALICE = Scope(tenant="acme", user="alice")
# LlamaIndex's workflow runtime walks the agent's members with inspect.getmembers, which touches
# pydantic's deprecated attributes: its warnings, not memq's
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]


@pytest.fixture
def mem(tmp_path: Path) -> Memory:
    m = Memory(tmp_path / "li.db", embedder=HashingEmbedder(dim=64), scope=ALICE)
    m.add(["Alice's usual seat is 14C", "Alice plays the cello", "Alice is allergic to cats"])
    return m


def _chat_memory(block: MemqMemoryBlock, token_limit: int = 4000) -> ChatMemory:
    return ChatMemory.from_defaults(
        session_id="s1",
        token_limit=token_limit,
        chat_history_token_ratio=0.5,
        token_flush_size=40,
        memory_blocks=[block],
    )


def _system_text(messages: list[ChatMessage]) -> str:
    return "\n".join(m.content or "" for m in messages if m.role.value == "system")


async def test_agent_sees_recalled_memories_and_reports_feedback(mem: Memory) -> None:
    block = MemqMemoryBlock(memory=mem, k=2)
    seen: list[list[ChatMessage]] = []

    def model(messages: list[ChatMessage], **kwargs) -> ChatMessage:
        seen.append(list(messages))
        if len(seen) > 1:
            return ChatMessage(role="assistant", content="Booked seat 14C.")
        system = _system_text(messages)  # the block rendered the hits with their ids
        rid = re.search(r"retrieval_id: (\S+)", system).group(1)
        seat = re.search(r"- \[(\S+)\] Alice's usual seat is 14C", system).group(1)
        call = ToolCallBlock(
            tool_call_id="c1",
            tool_name="feedback",
            tool_kwargs={"retrieval_id": rid, "reward": 1.0, "used": [seat]},
        )
        return ChatMessage(role="assistant", blocks=[call])

    agent = FunctionAgent(tools=memq_tools(mem), llm=MockFunctionCallingLLM(response_generator=model))
    out = await agent.run("book my usual seat", memory=_chat_memory(block))
    assert str(out) == "Booked seat 14C."
    seat = next(r for r in mem.iter() if r.text == "Alice's usual seat is 14C")
    assert seat.utility.n_used == 1 and seat.utility.reward_sum == 1.0
    tool_result = next(m for m in seen[1] if m.role.value == "tool")
    assert '"credit": "used"' in tool_result.content
    assert block.last_retrieval_id is not None


async def test_flushed_messages_are_stored_and_recalled_later(mem: Memory) -> None:
    block = MemqMemoryBlock(memory=mem, k=2, retrieval_context_window=1)  # query: the latest message
    chat = _chat_memory(block, token_limit=120)
    await chat.aput(ChatMessage(role="user", content="My sister Ines lives in Porto and teaches chemistry."))
    for i in range(6):  # push the first message out of the short-term window
        await chat.aput(ChatMessage(role="user", content=f"unrelated filler line {i} " * 4))
    stored = [r for r in mem.iter(kinds=["message"])]
    assert stored[0].text == "user: My sister Ines lives in Porto and teaches chemistry."
    assert stored[0].scope == Scope(tenant="acme", user="alice", session="s1")
    assert stored[0].metadata == {"role": "user"}
    messages = await chat.aget(input="where does Ines live, Porto?")
    # the memory's system block shows the recalled message with its id and the retrieval id
    system = _system_text(messages)
    assert "Ines lives in Porto" in system and f"retrieval_id: {block.last_retrieval_id}" in system
    fb = block.feedback(0.0)
    assert fb.reward == 0.0 and fb.credit == "shown"
    assert mem.retrieval(block.last_retrieval_id).feedback is not None


async def test_block_with_async_memory_and_a_manager(tmp_path: Path, llm_server) -> None:
    amem = await AsyncMemory.open(
        tmp_path / "a.db", embedder=HashingEmbedder(dim=64), scope=ALICE, llm=llm_server.llm()
    )
    block = MemqMemoryBlock(memory=amem, manager="reconcile", show_ids=False)
    llm_server.script(answer({"status": "facts", "facts": ["Bea's flight leaves at noon"]}))
    await block.aput([ChatMessage(role="user", content="Hi, I'm Bea; my flight leaves at noon tomorrow.")])
    (fact,) = [r async for r in _aiter(amem)]
    assert fact.text == "Bea's flight leaves at noon"  # the reconcile manager extracted the fact
    text = await block.aget([ChatMessage(role="user", content="when does the flight leave? noon")])
    assert text == "- Bea's flight leaves at noon"  # show_ids=False: no ids
    await block.afeedback(1.0)
    with pytest.raises(InvalidInputError, match="AsyncMemory"):
        block.feedback(1.0)
    await amem.close()


async def _aiter(amem: AsyncMemory):
    for record in (await amem.list()).records:
        yield record


async def test_tools_sync_and_errors(mem: Memory) -> None:
    remember, recall, feedback = memq_tools(mem, k=1)
    assert [t.metadata.name for t in (remember, recall, feedback)] == ["remember", "recall", "feedback"]
    assert "retrieval_id" in recall.metadata.description
    remember.call(text="Alice takes the night train")
    out = recall.call(query="night train")
    assert "Alice takes the night train" in out.content
    with pytest.raises(NotFoundError, match="no retrieval nope"):  # an agent shows the model str(error)
        await feedback.acall(retrieval_id="nope", reward=1.0)


async def test_empty_input_reads_nothing(mem: Memory) -> None:
    block = MemqMemoryBlock(memory=mem)
    assert await block.aget([]) == ""
    assert await block.aget([ChatMessage(role="user", content="   ")]) == ""
    await block.aput([ChatMessage(role="user", content="")])
    assert block.last_retrieval_id is None
    assert len(list(mem.iter())) == 3  # nothing stored


def test_bad_input(mem: Memory) -> None:
    with pytest.raises(ValidationError, match=r"memq\.Memory"):
        MemqMemoryBlock(memory="memq.db")
    with pytest.raises(ValidationError, match="k must be"):
        MemqMemoryBlock(memory=mem, k=0)
    with pytest.raises(InvalidInputError, match="search first"):
        MemqMemoryBlock(memory=mem).feedback(1.0)
