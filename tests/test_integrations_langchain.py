"""memq's LangChain retriever and tools, driven by the real ``langchain-core`` / ``langchain`` agent and
``langchain-openai``'s ChatOpenAI talking HTTP to the replay server (scripted model turns).

The embedder is memq's HashingEmbedder: these tests check what flows through LangChain (documents,
retrieval ids, tool calls, feedback), and every query shares words with the memory it must find.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain.agents import create_agent
from langchain_core.messages import ToolMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough
from langchain_openai import ChatOpenAI
from pydantic import ValidationError

from llm_replay import Recorded
from memq import AsyncMemory, InvalidInputError, Memory, Scope
from memq.embed import HashingEmbedder
from memq.integrations.langchain import MemqRetriever, create_memq_tools
from memq.integrations.scripted import final, last_tool_output, tool_call

ALICE = Scope(tenant="acme", user="alice")


@pytest.fixture
def mem(tmp_path: Path) -> Memory:
    m = Memory(tmp_path / "lc.db", embedder=HashingEmbedder(dim=64), scope=ALICE)
    m.add(["Alice lives in Berlin", "Alice plays the cello", "Alice is allergic to cats"])
    m.add("Bob lives in Lisbon", scope=Scope(tenant="acme", user="bob"))
    return m


def test_retriever_returns_documents_with_the_retrieval_id(mem: Memory) -> None:
    retriever = MemqRetriever(memory=mem, k=2)
    docs = retriever.invoke("where does Alice live? Berlin")
    assert docs[0].page_content == "Alice lives in Berlin" and len(docs) == 2
    rid = docs[0].metadata["retrieval_id"]
    assert rid == retriever.last_retrieval_id and {d.metadata["retrieval_id"] for d in docs} == {rid}
    assert [d.metadata["rank"] for d in docs] == [1, 2] and docs[0].id == docs[0].metadata["record_id"]
    assert "Bob lives in Lisbon" not in {d.page_content for d in docs}  # alice's scope
    fb = retriever.feedback(1.0, used=[docs[0]])  # the latest retrieval, credit to the used document
    assert list(fb.credits) == [docs[0].id]
    assert mem.get(docs[0].id).utility.n_used == 1
    assert mem.retrieval(rid).feedback.reward == 1.0


async def test_retriever_async_and_with_async_memory(mem: Memory, tmp_path: Path) -> None:
    docs = await MemqRetriever(memory=mem, k=1).ainvoke("cello")
    assert docs[0].page_content == "Alice plays the cello"
    amem = await AsyncMemory.open(tmp_path / "async.db", embedder=HashingEmbedder(dim=64), scope=ALICE)
    await amem.add("Alice collects vinyl records")
    retriever = MemqRetriever(memory=amem, k=1, filters={"kind": "fact"})
    docs = await retriever.ainvoke("vinyl records")
    assert docs[0].page_content == "Alice collects vinyl records"
    fb = await retriever.afeedback(0.0)
    assert fb.reward == 0.0 and fb.credit == "shown"
    with pytest.raises(InvalidInputError, match="AsyncMemory"):
        retriever.invoke("vinyl")
    await amem.close()


def test_retriever_in_a_chain_with_chat_openai(mem: Memory, llm_server) -> None:
    retriever = MemqRetriever(memory=mem, k=1)
    prompt = ChatPromptTemplate.from_messages([("system", "Facts:\n{facts}"), ("human", "{question}")])
    model = ChatOpenAI(model="replay-model", base_url=llm_server.url, api_key="test-key")
    chain = (
        {
            "facts": retriever | (lambda docs: "\n".join(d.page_content for d in docs)),
            "question": RunnablePassthrough(),
        }
        | prompt
        | model
        | StrOutputParser()
    )
    llm_server.script(final("She plays the cello."))
    assert chain.invoke("which instrument, the cello?") == "She plays the cello."
    assert "Alice plays the cello" in llm_server.requests[0].messages[0]["content"]
    assert retriever.last_retrieval_id is not None


def test_agent_remembers_recalls_and_reports_feedback(mem: Memory, llm_server) -> None:
    def after_recall(request: Recorded):
        recalled = json.loads(last_tool_output(request))
        best = recalled["memories"][0]
        return tool_call(
            "feedback", {"retrieval_id": recalled["retrieval_id"], "reward": 1.0, "used": [best["id"]]}
        )

    llm_server.script(
        tool_call("remember", {"text": "Alice prefers aisle seats"}),
        tool_call("recall", {"query": "aisle seats", "k": 2}),
    )
    replies = iter([after_recall, lambda request: final("Booked an aisle seat.")])
    llm_server.respond_with(lambda request: next(replies)(request))
    agent = create_agent(
        ChatOpenAI(model="replay-model", base_url=llm_server.url, api_key="test-key"),
        tools=create_memq_tools(mem),
    )
    out = agent.invoke({"messages": [{"role": "user", "content": "book me a seat"}]})
    assert out["messages"][-1].content == "Booked an aisle seat."
    tool_results = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.name for m in tool_results] == ["remember", "recall", "feedback"]
    recalled = json.loads(tool_results[1].content)
    assert recalled["memories"][0]["text"] == "Alice prefers aisle seats"
    record = mem.get(recalled["memories"][0]["id"])
    assert record.scope == ALICE and record.utility.n_used == 1 and record.utility.reward_sum == 1.0
    assert json.loads(tool_results[2].content)["credited"] == {record.id: 1.0}
    # the tools advertised to the model carry the parameter docs
    tools = {t["function"]["name"]: t["function"] for t in llm_server.requests[0].body["tools"]}
    assert set(tools) == {"remember", "recall", "feedback"}
    assert "retrieval_id" in tools["feedback"]["parameters"]["properties"]


async def test_agent_async_and_a_bad_feedback_reaches_the_model(mem: Memory, llm_server) -> None:
    llm_server.script(
        tool_call("feedback", {"retrieval_id": "no-such-retrieval", "reward": 1.0}),
        final("Sorry, that retrieval id was wrong."),
    )
    agent = create_agent(
        ChatOpenAI(model="replay-model", base_url=llm_server.url, api_key="test-key"),
        tools=create_memq_tools(mem),
    )
    out = await agent.ainvoke({"messages": [{"role": "user", "content": "rate it"}]})
    error = next(m for m in out["messages"] if isinstance(m, ToolMessage))
    assert error.content.startswith("not_found:") and error.status == "error"
    assert last_tool_output(llm_server.requests[1]).startswith("not_found:")  # the model saw it


def test_bad_input(mem: Memory) -> None:
    with pytest.raises(ValidationError, match=r"memq\.Memory"):
        MemqRetriever(memory="memq.db")
    with pytest.raises(ValidationError, match="k must be"):
        MemqRetriever(memory=mem, k=0)
    with pytest.raises(InvalidInputError, match="search first"):
        MemqRetriever(memory=mem).feedback(1.0)
    with pytest.raises(InvalidInputError, match=r"memq\.Memory or AsyncMemory"):
        create_memq_tools("memq.db")  # type: ignore[arg-type]
    recall = create_memq_tools(mem)[1]
    assert recall.invoke({"query": "   "}).startswith("empty_text:")  # reported, not raised
