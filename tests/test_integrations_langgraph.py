"""MemqStore driven by the real LangGraph (``langgraph`` 1.2) and LangMem (``langmem`` 0.0.30).

The store contract runs on SQLite and PostgreSQL, side by side with LangGraph's own ``InMemoryStore``
(same operations, same items, namespaces and filter results). The embedder is memq's HashingEmbedder
where ranking does not matter (contract, graphs, LangMem tools: they check what is stored and found
by exact words); the real MiniLM embedder where the test is about semantic ranking.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.store.base import BaseStore, InvalidNamespaceError, Item, PutOp, SearchItem
from langgraph.store.memory import InMemoryStore
from langmem import create_manage_memory_tool, create_search_memory_tool

from memq import AsyncMemory, FilterError, InvalidInputError, Memory, NotFoundError, ScopeError
from memq.embed import HashingEmbedder
from memq.integrations.langgraph import MemqSearchItem, MemqStore, create_feedback_tool

ITEMS: list[tuple[tuple[str, ...], str, dict[str, Any]]] = [
    (
        ("memories", "alice"),
        "m1",
        {"content": "Alice plays jazz piano", "rank": 3, "tags": {"topic": "music"}},
    ),
    (("memories", "alice"), "m2", {"content": "Alice lives in Berlin", "rank": 5, "tags": {"topic": "home"}}),
    (
        ("memories", "bob"),
        "m1",
        {"content": "Bob is allergic to peanuts", "rank": 1, "tags": {"topic": "food"}},
    ),
    (("memories", "bob", "work"), "w1", {"content": "Bob works at the harbour", "rank": 2}),
    (("docs", "v1"), "readme", {"content": "the project readme", "rank": 4}),
]


def _memory(url: str | Path) -> Memory:
    return Memory(url, embedder=HashingEmbedder(dim=64), scope="acme")


@pytest.fixture
def store(tmp_path: Path) -> MemqStore:
    return MemqStore(_memory(tmp_path / "lg.db"), scope_map={"user": 1}, index={"fields": ["content"]})


def _fill(*stores: BaseStore) -> None:
    for s in stores:
        for ns, key, value in ITEMS:
            s.put(ns, key, value)


def _view(items: list[Item]) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    return sorted((i.namespace, i.key, i.value) for i in items)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_contract_matches_in_memory_store(db_url: str) -> None:
    ours, ref = MemqStore(_memory(db_url), scope_map={"user": 1}), InMemoryStore()
    _fill(ours, ref)
    for ns, key, _ in ITEMS:
        got, want = ours.get(ns, key), ref.get(ns, key)
        assert isinstance(got, Item) and (got.namespace, got.key, got.value) == (
            want.namespace,
            want.key,
            want.value,
        )
    assert ours.get(("memories", "alice"), "nope") is None
    for prefix, flt in [
        ((), None),
        (("memories",), None),
        (("memories", "bob"), None),
        (("memories",), {"rank": {"$gte": 2}}),
        ((), {"rank": {"$lt": 3, "$ne": 1}}),
        (("memories",), {"tags": {"topic": "music"}}),
        ((), {"content": "Bob works at the harbour"}),
    ]:
        got = ours.search(prefix, filter=flt, limit=50)
        assert all(isinstance(i, SearchItem) and i.score is None for i in got)
        assert _view(got) == _view(ref.search(prefix, filter=flt, limit=50)), (prefix, flt)
    for kwargs in [
        {},
        {"prefix": ("memories",)},
        {"suffix": ("v1",)},
        {"prefix": ("memories", "*")},
        {"prefix": ("memories",), "max_depth": 2},
        {"max_depth": 1},
        {"limit": 2, "offset": 1},
    ]:
        assert ours.list_namespaces(**kwargs) == ref.list_namespaces(**kwargs), kwargs
    # update and delete
    for s in (ours, ref):
        s.put(("memories", "alice"), "m2", {"content": "Alice moved to Munich", "rank": 6})
        s.delete(("memories", "bob"), "m1")
        s.delete(("memories", "bob"), "never-there")  # deleting a missing key is a no-op, as in LangGraph
    assert ours.get(("memories", "alice"), "m2").value == {"content": "Alice moved to Munich", "rank": 6}
    assert ours.get(("memories", "bob"), "m1") is None
    assert _view(ours.search((), limit=50)) == _view(ref.search((), limit=50))


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
def test_items_are_memq_records_with_scope_history_and_timestamps(db_url: str) -> None:
    mem = _memory(db_url)
    store = MemqStore(mem, scope_map={"user": 1}, index={"fields": ["content"]})
    store.put(("memories", "alice"), "m1", {"content": "Alice plays jazz piano"})
    first = store.get(("memories", "alice"), "m1")
    store.put(("memories", "alice"), "m1", {"content": "Alice plays blues guitar"})
    second = store.get(("memories", "alice"), "m1")
    assert second.created_at == first.created_at and second.updated_at > first.updated_at
    (record,) = mem.iter()
    assert record.scope.tenant == "acme" and record.scope.user == "alice"
    assert record.text == "Alice plays blues guitar"  # the indexed field, not the JSON
    assert [e.op.value for e in mem.history(record.id)] == ["add", "update"]
    assert mem.history(record.id)[0].actor == "langgraph"
    store.delete(("memories", "alice"), "m1")
    assert [e.op.value for e in mem.history(record.id)] == ["add", "update", "delete"]  # soft delete
    # a new put of a deleted key is a new record
    store.put(("memories", "alice"), "m1", {"content": "Alice is back"})
    assert store.get(("memories", "alice"), "m1").value == {"content": "Alice is back"}


def test_search_with_query_uses_memq_ranking_and_logs_a_retrieval(tmp_path: Path, embedder) -> None:
    mem = Memory(tmp_path / "rank.db", embedder=embedder, scope="acme")
    store = MemqStore(mem, scope_map={"user": 1}, index={"fields": ["content"]})
    _fill(store)
    hits = store.search(("memories",), query="what music does she play?", limit=3)
    assert hits[0].key == "m1" and hits[0].namespace == ("memories", "alice")
    assert all(isinstance(h, MemqSearchItem) and isinstance(h.score, float) for h in hits)
    assert hits[0].score >= hits[1].score >= hits[2].score
    assert len({h.retrieval_id for h in hits}) == 1 and hits[0].dict()["retrieval_id"] == hits[0].retrieval_id
    logged = mem.retrieval(hits[0].retrieval_id)
    assert [s.id for s in logged.shown] == [h.record_id for h in hits]
    # offset pages through the same ranking
    assert [
        h.key for h in store.search(("memories",), query="what music does she play?", limit=2, offset=1)
    ] == [h.key for h in hits[1:3]]
    # the prefix narrows the search: only bob's items
    bob = store.search(("memories", "bob"), query="what music does she play?", limit=10)
    assert {h.namespace[:2] for h in bob} == {("memories", "bob")}


def test_feedback_by_key_reaches_the_records_utility(store: MemqStore) -> None:
    _fill(store)
    hits = store.search(("memories", "alice"), query="jazz piano", limit=2)
    assert hits[0].key == "m1"
    fb = store.feedback(hits[0].retrieval_id, 1.0, used=["m1"])
    assert fb.credit == "used" and list(fb.credits) == [hits[0].record_id]
    record = store.memory.get(hits[0].record_id)
    assert record.utility.n_used == 1 and record.utility.reward_sum == 1.0
    # (namespace, key) pairs and items work too; a key the search did not show is refused
    again = store.search(("memories",), query="jazz piano", limit=5)
    m1s = [h for h in again if h.key == "m1"]
    assert len(m1s) == 2  # alice's and bob's m1
    with pytest.raises(InvalidInputError, match="several namespaces"):
        store.feedback(again[0].retrieval_id, 1.0, used=["m1"])
    fb = store.feedback(again[0].retrieval_id, 0.5, used=[(("memories", "alice"), "m1"), m1s[1]])
    assert set(fb.credits) == {h.record_id for h in m1s}
    with pytest.raises(NotFoundError, match="not among the items"):
        store.feedback(hits[0].retrieval_id, 1.0, used=["w1"], credit="used")
    with pytest.raises(NotFoundError):
        store.feedback("01a00000-0000-7000-8000-000000000000", 1.0)


def test_index_false_items_are_stored_and_fill_query_results(store: MemqStore) -> None:
    store.put(("notes",), "a", {"content": "the train leaves at noon"})
    store.put(("notes",), "b", {"content": "secret code 1234"}, index=False)
    store.put(("notes",), "c", {"title": "no content field here"})  # none of the index fields: not indexed
    hits = store.search(("notes",), query="train noon", limit=5)
    assert [h.key for h in hits] == ["a", "b", "c"]
    assert hits[0].score is not None and hits[1].score is None and hits[2].score is None
    assert store.search(("notes",), query="train noon", limit=1)[0].key == "a"
    assert [h.key for h in store.search(("notes",), query="  ")] == ["a", "b", "c"]  # blank: no ranking
    # per-put index fields override the store's
    store.put(("notes",), "d", {"content": "x", "title": "harbour"}, index=["title"])
    (record,) = [r for r in store.memory.iter() if r.metadata["langgraph"]["key"] == "d"]
    assert record.text == "harbour"


def test_batch_reads_see_the_store_before_its_puts(store: MemqStore) -> None:
    from langgraph.store.base import GetOp, SearchOp

    store.put(("a",), "k", {"content": "old"})
    results = store.batch(
        [
            PutOp(("a",), "k", {"content": "new"}),
            GetOp(("a",), "k"),
            PutOp(("a",), "k", {"content": "newest"}),  # the last put of a key wins
            SearchOp(("a",)),
        ]
    )
    assert results[0] is None and results[1].value == {"content": "old"}
    assert [i.value for i in results[3]] == [{"content": "old"}]
    assert store.get(("a",), "k").value == {"content": "newest"}
    assert len(store.memory.history(next(iter(store.memory.iter())).id)) == 2  # one update, not two


def test_a_bad_put_in_a_batch_writes_nothing(store: MemqStore) -> None:
    with pytest.raises(InvalidInputError):
        store.batch([PutOp(("a",), "good", {"content": "fine"}), PutOp(("a",), "bad", ["not", "a", "dict"])])
    with pytest.raises(InvalidInputError, match="JSON"):
        store.batch([PutOp(("a",), "good", {"content": "fine"}), PutOp(("a",), "bad", {"x": object()})])
    assert store.search(()) == []


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda s: s.put("memories", "k", {"a": 1}), InvalidNamespaceError, "tuple of strings"),
        (lambda s: s.put(("a.b",), "k", {"a": 1}), InvalidNamespaceError, "periods|'.'"),
        (lambda s: s.put((), "k", {"a": 1}), InvalidNamespaceError, "empty"),
        (lambda s: s.put(("langgraph",), "k", {"a": 1}), InvalidNamespaceError, "langgraph"),
        (lambda s: s.batch([PutOp(("a", 3), "k", {"a": 1})]), InvalidNamespaceError, "label 3"),
        (lambda s: s.batch([PutOp(("a",), "", {"a": 1})]), InvalidInputError, "non-empty string"),
        (lambda s: s.batch(["not an op"]), InvalidInputError, "unknown store operation"),
        (lambda s: s.search(("a",), filter={"tags": ["x"]}), FilterError, "scalar"),
        (lambda s: s.search(("a",), filter={"a b": 1}), FilterError, "letters"),
        (lambda s: s.search(("a",), filter={"n": {"$in": [1]}}), FilterError, "operator"),
        (lambda s: s.search(("a",), offset=-1), InvalidInputError, "offset"),
        (lambda s: s.put(("a",), "k", {"a": 1}, ttl=5), NotImplementedError, "TTL"),
        (lambda s: s.put(("a",), "k", {"content": ""}, index=["content"]), Exception, None),
    ],
)
def test_bad_input_is_a_clear_error(store: MemqStore, call, error, match) -> None:
    if match is None:  # an empty indexed field: stored as JSON, not an error
        call(store)
        assert store.get(("a",), "k").value == {"content": ""}
        return
    with pytest.raises(error, match=match):
        call(store)


def test_bad_store_configuration(tmp_path: Path) -> None:
    mem = _memory(tmp_path / "cfg.db")
    with pytest.raises(InvalidInputError, match="embedder"):
        MemqStore(mem, index={"dims": 384, "embed": "openai:text-embedding-3-small", "fields": ["text"]})
    with pytest.raises(ScopeError, match="scope_map"):
        MemqStore(mem, scope_map={"tenant": 0})
    with pytest.raises(ScopeError, match="one namespace position"):
        MemqStore(mem, scope_map={"user": 1, "agent": 1})
    with pytest.raises(ScopeError, match="needs a tenant"):
        MemqStore(Memory(tmp_path / "none.db", embedder=HashingEmbedder(dim=64)))  # no tenant anywhere
    assert MemqStore(Memory(tmp_path / "t.db", embedder=HashingEmbedder(dim=64)), tenant="t").tenant == "t"


async def test_abatch_and_async_methods(tmp_path: Path) -> None:
    store = MemqStore(_memory(tmp_path / "async.db"), index={"fields": ["content"]})
    await asyncio.gather(
        *(store.aput(("chat", f"u{i}"), "k", {"content": f"note number {i}"}) for i in range(5))
    )
    assert (await store.aget(("chat", "u3"), "k")).value == {"content": "note number 3"}
    hits = await store.asearch(("chat",), query="note number 3", limit=5)
    assert len(hits) == 5 and hits[0].namespace == ("chat", "u3")
    fb = await store.afeedback(hits[0].retrieval_id, 1.0, used=[(("chat", "u3"), "k")])
    assert list(fb.credits) == [hits[0].record_id]
    assert await store.alist_namespaces(prefix=("chat",)) == [("chat", f"u{i}") for i in range(5)]
    await store.adelete(("chat", "u3"), "k")
    assert await store.aget(("chat", "u3"), "k") is None
    with pytest.raises(InvalidInputError, match="AsyncMemory"):
        MemqStore(await AsyncMemory.open(tmp_path / "a2.db", embedder=HashingEmbedder(dim=64), scope="acme"))


def _profile_graph(store: MemqStore):
    """A StateGraph whose nodes write a user's facts to the store and read them back."""

    def remember(state: MessagesState, config, *, store: BaseStore) -> dict:
        user = config["configurable"]["user_id"]
        text = state["messages"][-1].content
        if text.startswith("remember:"):
            store.put(
                ("profile", user), f"fact-{len(text)}", {"content": text.removeprefix("remember:").strip()}
            )
        return {}

    def answer(state: MessagesState, config, *, store: BaseStore) -> dict:
        user = config["configurable"]["user_id"]
        hits = store.search(("profile", user), query=state["messages"][-1].content, limit=2)
        facts = "; ".join(h.value["content"] for h in hits) or "nothing"
        return {"messages": [AIMessage(f"I remember: {facts}")]}

    builder = StateGraph(MessagesState)
    builder.add_node("remember", remember)
    builder.add_node("answer", answer)
    builder.add_edge(START, "remember")
    builder.add_edge("remember", "answer")
    builder.add_edge("answer", END)
    return builder.compile(store=store)


def test_state_graph_reads_and_writes_the_store(store: MemqStore) -> None:
    graph = _profile_graph(store)
    alice = {"configurable": {"user_id": "alice"}}
    graph.invoke({"messages": [HumanMessage("remember: Alice takes the night train to Vienna")]}, alice)
    out = graph.invoke({"messages": [HumanMessage("which train does Alice take?")]}, alice)
    assert "night train to Vienna" in out["messages"][-1].content
    bob = graph.invoke({"messages": [HumanMessage("which train?")]}, {"configurable": {"user_id": "bob"}})
    assert bob["messages"][-1].content == "I remember: nothing"  # another user's namespace
    (record,) = store.memory.iter()
    assert record.scope.user == "alice"


async def test_state_graph_async_run_uses_abatch(store: MemqStore) -> None:
    graph = _profile_graph(store)
    cfg = {"configurable": {"user_id": "carol"}}
    await graph.ainvoke({"messages": [HumanMessage("remember: Carol keeps bees")]}, cfg)
    out = await graph.ainvoke({"messages": [HumanMessage("what does Carol keep?")]}, cfg)
    assert out["messages"][-1].content == "I remember: Carol keeps bees"


def _scripted_agent(store: MemqStore, script):
    """A graph whose 'model' node replays tool calls (``script(messages)``) through a real ToolNode."""
    namespace = ("memories", "{langgraph_user_id}")
    tools = [
        create_manage_memory_tool(namespace=namespace),
        create_search_memory_tool(namespace=namespace),
        create_feedback_tool(),
    ]

    def model(state: MessagesState) -> dict:
        return {"messages": [script(state["messages"])]}

    builder = StateGraph(MessagesState)
    builder.add_node("model", model)
    builder.add_node("tools", ToolNode(tools))
    builder.add_edge(START, "model")
    builder.add_conditional_edges("model", lambda s: "tools" if s["messages"][-1].tool_calls else END)
    builder.add_edge("tools", "model")
    return builder.compile(store=store)


def _call(name: str, **args: Any) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": f"call-{name}"}])


def test_langmem_tools_run_on_the_store_and_feedback_learns(store: MemqStore) -> None:
    seen: dict[str, Any] = {}

    def script(messages):
        step = sum(isinstance(m, AIMessage) for m in messages)
        if step == 0:
            return _call("manage_memory", content="Alice prefers window seats", action="create")
        if step == 1:
            return _call("manage_memory", content="Alice is vegetarian", action="create")
        if step == 2:
            return _call("search_memory", query="seat preference window")
        if step == 3:  # the search output the model sees carries the retrieval id
            seen["results"] = json.loads(messages[-1].content)
            best = seen["results"][0]
            return _call(
                "memory_feedback", retrieval_id=best["retrieval_id"], reward=1.0, used_keys=[best["key"]]
            )
        if step == 4:
            seen["feedback"] = messages[-1].content
            key = seen["results"][1]["key"]
            return _call("manage_memory", content="Alice eats fish now", action="update", id=key)
        return AIMessage("done")

    graph = _scripted_agent(store, script)
    graph.invoke({"messages": [HumanMessage("hi")]}, {"configurable": {"langgraph_user_id": "alice"}})
    best, other = seen["results"][:2]
    assert best["value"] == {"content": "Alice prefers window seats"} and best["namespace"] == [
        "memories",
        "alice",
    ]
    assert seen["feedback"].startswith("feedback recorded: reward 1.0 credited to 1")
    records = {r.text: r for r in store.memory.iter()}
    assert records["Alice prefers window seats"].utility.n_used == 1
    assert records["Alice prefers window seats"].scope.user == "alice"
    assert "Alice eats fish now" in records and "Alice is vegetarian" not in records  # LangMem's update
    assert [e.op.value for e in store.memory.history(records["Alice eats fish now"].id)] == ["add", "update"]
    assert other["key"] == records["Alice eats fish now"].metadata["langgraph"]["key"]


async def test_langmem_tools_async_and_delete(store: MemqStore) -> None:
    seen: dict[str, Any] = {}

    def script(messages):
        step = sum(isinstance(m, AIMessage) for m in messages)
        if step == 0:
            return _call("manage_memory", content="Dan collects stamps", action="create")
        if step == 1:
            seen["key"] = messages[-1].content.split()[-1]
            return _call("manage_memory", action="delete", id=seen["key"])
        if step == 2:
            return _call("search_memory", query="stamps")
        seen["after"] = json.loads(messages[-1].content)
        return AIMessage("done")

    graph = _scripted_agent(store, script)
    await graph.ainvoke({"messages": [HumanMessage("hi")]}, {"configurable": {"langgraph_user_id": "dan"}})
    assert seen["after"] == []
    assert await store.aget(("memories", "dan"), seen["key"]) is None


def test_feedback_tool_needs_a_memq_store() -> None:
    tool = create_feedback_tool()
    graph_store = InMemoryStore()

    def node(state: MessagesState) -> dict:
        tool.invoke({"retrieval_id": "x", "reward": 1.0})
        return {}

    builder = StateGraph(MessagesState)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    graph = builder.compile(store=graph_store)
    with pytest.raises(InvalidInputError, match="not a MemqStore"):
        graph.invoke({"messages": [HumanMessage("x")]})
