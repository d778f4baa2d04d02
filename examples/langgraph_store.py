"""LangGraph + LangMem on memq: a tool-calling agent whose long-term memory is a MemqStore.

    pip install 'memq[langmem]'        # LangGraph, LangMem (and langchain-openai, which LangMem uses)
    python examples/langgraph_store.py

Runs offline: the chat model is LangChain's ChatOpenAI pointed at memq's replay server, which plays
scripted model turns (tool calls, then answers). Everything else is real: the LangGraph StateGraph and
ToolNode, LangMem's memory tools, memq's store, embedder and learning. Two conversations with Alice:
in the first the agent saves two memories; in the second it searches them, uses one, and reports a
reward on that search with the feedback tool — memq credits the memory it used.
"""

from __future__ import annotations

from memq.integrations.scripted import final, last_tool_output, offline, tool_call

offline()  # before the frameworks are imported

import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from langchain_openai import ChatOpenAI  # noqa: E402
from langgraph.graph import START, MessagesState, StateGraph  # noqa: E402
from langgraph.prebuilt import ToolNode, tools_condition  # noqa: E402
from langmem import create_manage_memory_tool, create_search_memory_tool  # noqa: E402

from memq import Memory  # noqa: E402
from memq.integrations.langgraph import MemqStore, create_feedback_tool  # noqa: E402
from memq.llm.replay import ReplayServer  # noqa: E402


def build_agent(store: MemqStore, server: ReplayServer):
    namespace = ("memories", "{langgraph_user_id}")  # LangMem fills the user id from the run config
    tools = [
        create_manage_memory_tool(namespace=namespace),
        create_search_memory_tool(namespace=namespace),
        create_feedback_tool(),  # reward on a search: memq learns which memories help
    ]
    model = ChatOpenAI(model="replay-model", base_url=server.url, api_key="offline").bind_tools(tools)

    def agent(state: MessagesState) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("agent", agent)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", tools_condition)
    builder.add_edge("tools", "agent")
    return builder.compile(store=store)


def feedback_on_the_window_seat(request) -> object:
    """The model's turn after the search: it used the window-seat memory, and says so."""
    results = json.loads(last_tool_output(request))
    used = next(r for r in results if "window" in r["value"]["content"])
    return tool_call(
        "memory_feedback", {"retrieval_id": used["retrieval_id"], "reward": 1.0, "used_keys": [used["key"]]}
    )


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memq-langgraph-"))
    memory = Memory(workdir / "memq.db", scope="travel-app")
    # namespace label 1 is the memq user; the indexed field is LangMem's "content"
    store = MemqStore(memory, scope_map={"user": 1}, index={"fields": ["content"]})
    alice = {"configurable": {"langgraph_user_id": "alice"}}

    with ReplayServer() as server:
        agent = build_agent(store, server)
        server.script(
            tool_call("manage_memory", {"content": "Alice prefers window seats", "action": "create"}),
            tool_call("manage_memory", {"content": "Alice is vegetarian", "action": "create"}),
            final("Noted: window seats and vegetarian meals."),
        )
        agent.invoke({"messages": [("user", "I always sit by the window, and I'm vegetarian.")]}, alice)

        replies = iter(
            [feedback_on_the_window_seat, lambda request: final("Booked a window seat to Vienna.")]
        )
        server.script(tool_call("search_memory", {"query": "seat preference window aisle"}))
        server.respond_with(lambda request: next(replies)(request))
        out = agent.invoke({"messages": [("user", "Book me a seat on the train to Vienna.")]}, alice)
        recalled = json.loads(last_tool_output(server.requests[-2]))

    print("remembered (LangMem's manage_memory tool -> MemqStore):")
    for item in store.search(("memories", "alice")):
        print(f"  {item.namespace} {item.key[:8]}…  {item.value['content']}")
    print("recalled (search_memory; memq hybrid ranking, each result carries the retrieval id):")
    for r in recalled:
        print(f"  score {r['score']:.2f}  {r['value']['content']}  retrieval {r['retrieval_id'][:8]}…")
    print(f"agent: {out['messages'][-1].content}")
    print("learned (memory_feedback -> memq utility of the memory the agent used):")
    for record in memory.iter():
        u = record.utility
        print(
            f"  user={record.scope.user} shown={u.n_shown} used={u.n_used} reward={u.reward_sum}  {record.text}"
        )


if __name__ == "__main__":
    main()
