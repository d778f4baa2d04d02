"""LangChain on memq: a retriever in a chain, and an agent with remember / recall / feedback tools.

    pip install 'memq[langchain]'
    python examples/langchain_agent.py

Runs offline: ChatOpenAI talks to memq's replay server, which plays scripted model turns. The
retriever's Documents carry the memq retrieval id, so the app reports reward on what it recalled;
the agent does the same through the ``feedback`` tool with the id its ``recall`` returned.
"""

from __future__ import annotations

from memq.integrations.scripted import final, last_tool_output, offline, tool_call

offline()  # before the frameworks are imported

import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from langchain.agents import create_agent  # noqa: E402
from langchain_core.output_parsers import StrOutputParser  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402

from memq import Memory, Scope  # noqa: E402
from memq.integrations.langchain import MemqRetriever, create_memq_tools  # noqa: E402
from memq.llm.replay import ReplayServer  # noqa: E402


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memq-langchain-"))
    memory = Memory(workdir / "memq.db", scope=Scope(tenant="support", user="ben"))
    memory.add(
        [
            "Ben's router is a FritzBox 7590",
            "Ben's internet contract is 250 Mbit fibre",
            "Ben prefers answers by e-mail",
        ]
    )

    with ReplayServer() as server:
        model = ChatOpenAI(model="replay-model", base_url=server.url, api_key="offline")

        # 1. a retriever in a chain: recalled facts go into the prompt; the app scores the answer
        retriever = MemqRetriever(memory=memory, k=2)
        prompt = ChatPromptTemplate.from_messages(
            [("system", "Known facts:\n{facts}"), ("human", "{question}")]
        )
        question = "Which router does Ben have?"
        docs = retriever.invoke(question)
        server.script(final("Ben has a FritzBox 7590."))
        chain = prompt | model | StrOutputParser()
        answer = chain.invoke({"facts": "\n".join(d.page_content for d in docs), "question": question})
        used = [d for d in docs if "FritzBox" in d.page_content and "FritzBox" in answer]
        retriever.feedback(1.0 if used else 0.0, used=used)  # reward on the latest retrieval

        # 2. an agent with the memory tools: it recalls, answers, and reports how the recall went
        def after_recall(request) -> object:
            recalled = json.loads(last_tool_output(request))
            speed = next(m for m in recalled["memories"] if "Mbit" in m["text"])
            return tool_call(
                "feedback", {"retrieval_id": recalled["retrieval_id"], "reward": 1.0, "used": [speed["id"]]}
            )

        server.script(tool_call("recall", {"query": "internet speed contract", "k": 2}))
        replies = iter(
            [
                after_recall,
                lambda r: tool_call("remember", {"text": "Ben asked about upgrading to 500 Mbit"}),
                lambda r: final("Your contract is 250 Mbit fibre; I noted your interest in 500 Mbit."),
            ]
        )
        server.respond_with(lambda request: next(replies)(request))
        agent = create_agent(model, tools=create_memq_tools(memory, k=2))
        out = agent.invoke({"messages": [{"role": "user", "content": "How fast is my internet?"}]})
        recalled = json.loads(
            next(m.content for m in out["messages"] if getattr(m, "name", None) == "recall")
        )

    print(
        f"chain recalled: {[d.page_content for d in docs]} (retrieval {docs[0].metadata['retrieval_id'][:8]}…)"
    )
    print(f"chain answer:   {answer}")
    print(f"agent recalled: {[m['text'] for m in recalled['memories']]}")
    print(f"agent answer:   {out['messages'][-1].content}")
    print("remembered + learned (memq records and their utility):")
    for record in memory.iter():
        u = record.utility
        print(f"  shown={u.n_shown} used={u.n_used} reward={u.reward_sum}  {record.text}")


if __name__ == "__main__":
    main()
