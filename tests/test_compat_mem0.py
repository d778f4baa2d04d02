"""memq.compat.mem0: mem0's ``Memory`` API on memq, side by side with the real mem0 (``mem0ai`` 2.2).

Real mem0 runs as memq's benchmark peer does (``memq_bench.peers.mem0``): ``infer=False``, local qdrant
in tmp_path, telemetry off, memq's embedder. Both sides use the real MiniLM embedder (``embedder``
fixture), so searches rank alike. mem0's documented quick-starts run unchanged except the import,
with ``infer=True`` answered by the replay server through memq's ``reconcile`` manager.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from llm_replay import Recorded, answer
from memq import FilterError, InvalidInputError, NotFoundError, ScopeError
from memq import Memory as MemqMemory
from memq.compat.mem0 import AsyncMemory, Mem0NotFoundError, Memory
from memq.embed import HashingEmbedder

MOVIES = [
    {"role": "user", "content": "I'm planning to watch a movie tonight. Any recommendations?"},
    {"role": "assistant", "content": "How about thriller movies? They can be quite engaging."},
    {"role": "user", "content": "I'm not a big fan of thriller movies but I love sci-fi movies."},
    {
        "role": "assistant",
        "content": "Got it! I'll avoid thriller recommendations and suggest sci-fi movies.",
    },
]
UNKNOWN = "0b8a3f58-2f9e-4c1e-9d51-4e0f0a1b2c3d"


@pytest.fixture
def real_mem0(tmp_path: Path, embedder):
    from memq_bench.peers.mem0 import Mem0System

    system = Mem0System(embedder, workdir=tmp_path / "mem0")
    yield system.memory
    system.close()


@pytest.fixture
def ours(tmp_path: Path, embedder) -> Memory:
    return Memory(tmp_path / "compat.db", embedder=embedder)


@pytest.fixture
def quick(tmp_path: Path) -> Memory:
    """A compat memory on the HashingEmbedder, for tests about shapes and errors, not ranking."""
    return Memory(tmp_path / "quick.db", embedder=HashingEmbedder(dim=64))


def _shape(item: dict[str, Any]) -> set[str]:
    return set(item)


def _same_calls(mem) -> dict[str, Any]:
    """The same mem0 calls on either implementation; what each returned."""
    out: dict[str, Any] = {}
    out["add_list"] = mem.add(MOVIES, user_id="alice", metadata={"category": "movies"}, infer=False)
    out["add_str"] = mem.add("Alice is allergic to peanuts", user_id="alice", agent_id="chef", infer=False)
    out["add_named"] = mem.add(
        [
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "I run on Sundays", "name": "al"},
        ],
        user_id="alice",
        run_id="r1",
        infer=False,
    )
    out["add_dict"] = mem.add({"role": "user", "content": "Bob cycles to work"}, user_id="bob", infer=False)
    out["search"] = mem.search("Which movies does she love? sci-fi", filters={"user_id": "alice"}, top_k=3)
    out["search_meta"] = mem.search("movies", filters={"user_id": "alice", "category": "movies"}, top_k=10)
    first = out["add_list"]["results"][2]["id"]
    out["get"] = mem.get(first)
    out["get_all"] = mem.get_all(filters={"user_id": "alice"}, top_k=10)
    out["update"] = mem.update(first, text="Loves sci-fi and space operas", metadata={"mood": "happy"})
    out["after_update"] = mem.get(first)
    out["history"] = mem.history(first)
    out["delete"] = mem.delete(first)
    out["after_delete"] = mem.get(first)
    out["history_deleted"] = mem.history(first)
    out["delete_all"] = mem.delete_all(user_id="alice")
    out["left"] = mem.get_all(filters={"user_id": "alice"})
    return out


def test_same_calls_same_shapes_as_real_mem0(real_mem0, ours: Memory) -> None:
    theirs, mine = _same_calls(real_mem0), _same_calls(ours)
    for key in ("add_list", "add_str", "add_named", "add_dict"):
        assert [_shape(r) for r in mine[key]["results"]] == [_shape(r) for r in theirs[key]["results"]], key
        strip = [{k: v for k, v in r.items() if k != "id"} for r in mine[key]["results"]]
        assert strip == [{k: v for k, v in r.items() if k != "id"} for r in theirs[key]["results"]], key
    assert len(mine["add_named"]["results"]) == 1  # the system message is skipped by both
    # search: same keys per result, same best memory, same metadata, scores best first
    assert set(mine["search"]) == {"results", "retrieval_id"} and set(theirs["search"]) == {"results"}
    assert [_shape(r) for r in mine["search"]["results"][:1]] == [
        _shape(r) for r in theirs["search"]["results"][:1]
    ]
    sci_fi = {MOVIES[2]["content"], MOVIES[3]["content"]}  # both rank the two sci-fi turns in their top 3
    for side in (mine, theirs):
        assert sci_fi <= {r["memory"] for r in side["search"]["results"]}
    scores = [r["score"] for r in mine["search"]["results"]]
    assert scores == sorted(scores, reverse=True)
    assert {r["memory"] for r in mine["search_meta"]["results"]} == {
        r["memory"] for r in theirs["search_meta"]["results"]
    }
    # get / get_all / update / delete
    for key in ("get", "after_update"):
        assert _shape(mine[key]) == _shape(theirs[key]), key
        assert {k: mine[key][k] for k in ("memory", "metadata", "user_id", "role", "hash", "score")} == {
            k: theirs[key][k] for k in ("memory", "metadata", "user_id", "role", "hash", "score")
        }, key
    # get_all: the same memories with the same keys (mem0's qdrant lists in no particular order)
    assert {r["memory"]: _shape(r) for r in mine["get_all"]["results"]} == {
        r["memory"]: _shape(r) for r in theirs["get_all"]["results"]
    }
    for key in ("update", "delete", "delete_all", "after_delete", "left"):
        assert mine[key] == theirs[key], key
    assert mine["after_update"]["updated_at"] > mine["after_update"]["created_at"]
    # history: same rows (keys, events, old/new texts)
    for key in ("history", "history_deleted"):
        assert [_shape(r) for r in mine[key]] == [_shape(r) for r in theirs[key]], key
        fields = ("event", "old_memory", "new_memory", "is_deleted", "role", "actor_id")
        assert [{f: r[f] for f in fields} for r in mine[key]] == [
            {f: r[f] for f in fields} for r in theirs[key]
        ]


def test_errors_where_mem0_errs(real_mem0, ours: Memory) -> None:
    for mem in (real_mem0, ours):
        with pytest.raises(Exception, match="user_id"):  # mem0: its ValidationError; memq: ScopeError
            mem.add("no owner", infer=False)
        with pytest.raises(ValueError, match="user_id"):
            mem.search("anything", filters={"category": "x"})
        with pytest.raises(ValueError, match="user_id"):
            mem.get_all()
        with pytest.raises(ValueError, match="not found"):
            mem.update(UNKNOWN, text="x")
        with pytest.raises(ValueError, match="not found"):
            mem.delete(UNKNOWN)
        with pytest.raises(ValueError, match="At least one"):
            mem.update(UNKNOWN)
        with pytest.raises(ValueError, match="reset"):
            mem.delete_all()
        with pytest.raises(ValueError, match="whitespace"):
            mem.add("x", user_id="al ice", infer=False)
        with pytest.raises(ValueError, match="threshold"):
            mem.search("x", filters={"user_id": "a"}, threshold=2)
        with pytest.raises(ValueError, match="top_k"):
            mem.get_all(filters={"user_id": "a"}, top_k=-1)
        assert mem.get(UNKNOWN) is None
        assert mem.history(UNKNOWN) == []
        with pytest.raises(NotImplementedError):
            mem.chat("hi")
    with pytest.raises(NotFoundError):  # memq's own error class too
        ours.delete(UNKNOWN)


QUICKSTART_V2 = """
from mem0 import Memory

m = Memory()

messages = [
    {"role": "user", "content": "Hi, I'm Alex. I love basketball and gaming."},
    {"role": "assistant", "content": "Hey Alex! I'll remember your interests."}
]
m.add(messages, user_id="alex")

results = m.search("What do you know about me?", filters={"user_id": "alex"})
print(results)
"""

QUICKSTART_V1 = """
from mem0 import Memory

m = Memory()

messages = [
    {"role": "user", "content": "I'm planning to watch a movie tonight. Any recommendations?"},
    {"role": "assistant", "content": "How about thriller movies? They can be quite engaging."},
    {"role": "user", "content": "I'm not a big fan of thriller movies but I love sci-fi movies."},
    {"role": "assistant", "content": "Got it! I'll avoid thriller recommendations and suggest sci-fi movies in the future."}
]

# Store inferred memories (default behavior)
result = m.add(messages, user_id="alice", metadata={"category": "movie_recommendations"})

# Store memories with agent and run context
result = m.add(messages, user_id="alice", agent_id="movie-assistant", run_id="session-001", metadata={"category": "movie_recommendations"})

# Store raw messages without inference
result = m.add(messages, user_id="alice", metadata={"category": "movie_recommendations"}, infer=False)

# Get all memories
all_memories = m.get_all(user_id="alice")

# Get a single memory by ID (the docs paste a literal id here)
memory_id = all_memories["results"][0]["id"]
specific_memory = m.get(memory_id)

related_memories = m.search(query="What do you know about me?", user_id="alice")

result = m.update(memory_id=memory_id, data="I love India, it is my favorite country.")

history = m.history(memory_id=memory_id)

m.delete(memory_id=memory_id)
m.delete_all(user_id="alice")
m.reset()
"""


def _run_quickstart(source: str, monkeypatch, tmp_path: Path, llm_server) -> dict[str, Any]:
    monkeypatch.setenv("MEMQ_DB", str(tmp_path / "quickstart.db"))
    monkeypatch.setenv("MEMQ_LLM", f"openai:replay-model@{llm_server.url}")
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    changed = source.replace("from mem0 import Memory", "from memq.compat.mem0 import Memory")
    assert changed.count("\n") == source.count("\n") and changed != source  # only the import differs
    namespace: dict[str, Any] = {}
    exec(compile(changed, "quickstart", "exec"), namespace)
    return namespace


def test_mem0_v2_quickstart_runs_unchanged_but_the_import(
    monkeypatch, tmp_path: Path, llm_server, capsys
) -> None:
    llm_server.script(answer({"status": "facts", "facts": ["Name is Alex", "Loves basketball and gaming"]}))
    ns = _run_quickstart(QUICKSTART_V2, monkeypatch, tmp_path, llm_server)
    memories = [r["memory"] for r in ns["results"]["results"]]
    assert set(memories) == {"Name is Alex", "Loves basketball and gaming"}
    assert all(r["user_id"] == "alex" for r in ns["results"]["results"])
    assert "Loves basketball and gaming" in capsys.readouterr().out
    assert "user: Hi, I'm Alex" in llm_server.requests[0].prompt_text  # the conversation went to the LLM


def test_mem0_v1_quickstart_runs_unchanged_but_the_import(monkeypatch, tmp_path: Path, llm_server) -> None:
    llm_server.script(
        answer({"status": "facts", "facts": ["Loves sci-fi movies, not thrillers"]}),
        answer({"status": "facts", "facts": ["Prefers sci-fi recommendations"]}),
    )
    ns = _run_quickstart(QUICKSTART_V1, monkeypatch, tmp_path, llm_server)
    # two inferred facts (the second add's scope names an agent and a run: nothing stored there yet,
    # so no reconcile call) + four raw messages; all are alice's
    assert len(llm_server.requests) == 2 and len(ns["all_memories"]["results"]) == 6
    by_text = {r["memory"]: r for r in ns["all_memories"]["results"]}
    assert by_text["Prefers sci-fi recommendations"]["agent_id"] == "movie-assistant"
    assert by_text["Prefers sci-fi recommendations"]["run_id"] == "session-001"
    assert ns["specific_memory"]["memory"] == "Loves sci-fi movies, not thrillers"
    assert ns["specific_memory"]["metadata"] == {"category": "movie_recommendations"}
    # a vague query: MiniLM's cosines stay under mem0's default threshold (0.1), so this returns what
    # mem0 returns with the same embedder; the shape is mem0's (plus the retrieval id)
    assert set(ns["related_memories"]) == {"results", "retrieval_id"}
    assert all(r["user_id"] == "alice" for r in ns["related_memories"]["results"])
    assert [h["event"] for h in ns["history"]] == ["ADD", "UPDATE"]
    assert ns["history"][1]["new_memory"] == "I love India, it is my favorite country."
    assert ns["m"].get_all(user_id="alice") == {"results": []}
    assert ns["result"] == {"message": "Memory updated successfully!"}


def test_infer_true_maps_reconcile_decisions_to_mem0_events(tmp_path: Path, embedder, llm_server) -> None:
    mem = Memory(tmp_path / "infer.db", embedder=embedder, llm=llm_server.llm())
    llm_server.script(answer({"status": "facts", "facts": ["Alice lives in Berlin"]}))
    first = mem.add("I'm Alice and I live in Berlin", user_id="alice")["results"]
    assert [(r["event"], r["memory"]) for r in first] == [("ADD", "Alice lives in Berlin")]

    def decide(request: Recorded) -> dict:
        (number,) = re.findall(
            r'^\[(\d+)\] "Alice lives in Berlin"', request.messages[-1]["content"], re.MULTILINE
        )
        return {"decisions": [{"fact": 0, "op": "DELETE", "id": int(number), "reason": "moved"}]}

    llm_server.script(answer({"status": "facts", "facts": ["Alice lives in Munich"]}))
    llm_server.respond_with(decide)
    second = mem.add("I moved to Munich", user_id="alice")["results"]
    assert [r["event"] for r in second] == ["DELETE", "ADD"] and second[0]["id"] == first[0]["id"]
    assert [r["memory"] for r in mem.get_all(user_id="alice")["results"]] == ["Alice lives in Munich"]
    kept = mem.get_all(user_id="alice", show_expired=True)["results"]  # invalidated, not lost
    assert [r["memory"] for r in kept] == ["Alice lives in Berlin", "Alice lives in Munich"]
    assert [h["event"] for h in mem.history(first[0]["id"])] == ["ADD", "INVALIDATE"]


def test_infer_true_without_an_llm_is_a_clear_error(quick: Memory) -> None:
    with pytest.raises(InvalidInputError, match="infer=True needs an LLM"):
        quick.add("I live in Berlin", user_id="alice")
    assert quick.get_all(user_id="alice") == {"results": []}


def test_search_forms_filters_and_feedback(ours: Memory) -> None:
    ours.add(
        "Alice plays tennis on weekends",
        user_id="alice",
        metadata={"topic": "sport", "level": 3},
        infer=False,
    )
    ours.add(
        "Alice plays chess online", user_id="alice", metadata={"topic": "games", "level": 5}, infer=False
    )
    ours.add("Bob plays tennis too", user_id="bob", metadata={"topic": "sport", "level": 1}, infer=False)

    def found(**kwargs: Any) -> list[str]:
        return [r["memory"] for r in ours.search("plays tennis", threshold=0.0, **kwargs)["results"]]

    assert found(user_id="alice", limit=1) == ["Alice plays tennis on weekends"]  # mem0 1.x form
    assert found(filters={"user_id": "alice"}, top_k=1) == ["Alice plays tennis on weekends"]
    assert set(found(filters={"user_id": "alice", "level": {"gte": 4}})) == {"Alice plays chess online"}
    assert set(found(filters={"user_id": "alice", "topic": {"in": ["games"]}})) == {
        "Alice plays chess online"
    }
    assert len(found(filters={"user_id": "alice", "topic": "*"})) == 2
    either = {"OR": [{"topic": "games"}, {"level": 3}]}
    assert len(found(filters={"user_id": "alice", **either})) == 2
    assert set(found(filters={"user_id": "alice", "NOT": [{"topic": "games"}]})) == {
        "Alice plays tennis on weekends"
    }
    assert len(found(filters={"agent_id": "*", "OR": [{"user_id": "alice"}, {"user_id": "bob"}]})) == 0
    assert (
        len(found(filters={"user_id": "*", "topic": "sport"})) == 2
    )  # any user (an entity filter is needed)
    with pytest.raises(FilterError, match="icontains"):
        ours.search("x", filters={"user_id": "alice", "topic": {"icontains": "SPORT"}})
    explained = ours.search("plays tennis", user_id="alice", explain=True)["results"][0]
    assert set(explained["score_details"]) >= {"dense", "lexical", "fused"}
    # feedback on a search: memq's addition
    result = ours.search("plays tennis", user_id="alice")
    best = result["results"][0]["id"]
    fb = ours.feedback(result["retrieval_id"], 1.0, used=[best])
    assert fb.credits == {best: 1.0}
    assert ours.memory.get(best).utility.n_used == 1


def test_expiration_dates(quick: Memory) -> None:
    quick.add("old promo code SPRING", user_id="u", expiration_date="2020-01-01", infer=False)
    kept = quick.add("promo code WINTER", user_id="u", expiration_date="2999-12-31", infer=False)["results"][
        0
    ]
    assert [r["memory"] for r in quick.get_all(user_id="u")["results"]] == ["promo code WINTER"]
    assert len(quick.get_all(user_id="u", show_expired=True)["results"]) == 2
    assert quick.get(kept["id"])["expiration_date"] == "2999-12-31"
    assert [r["memory"] for r in quick.search("promo code", user_id="u", threshold=0)["results"]] == [
        "promo code WINTER"
    ]
    quick.update(kept["id"], expiration_date="2021-06-01")
    assert quick.get_all(user_id="u")["results"] == []
    quick.update(kept["id"], expiration_date=None)
    assert "expiration_date" not in quick.get(kept["id"])
    with pytest.raises(InvalidInputError, match="YYYY-MM-DD"):
        quick.add("x", user_id="u", expiration_date="next week", infer=False)


def test_identity_keys_in_metadata_are_dropped(quick: Memory) -> None:
    (item,) = quick.add(
        "x marks the spot", user_id="u", metadata={"user_id": "mallory", "k": 1}, infer=False
    )["results"]
    got = quick.get(item["id"])
    assert got["user_id"] == "u" and got["metadata"] == {"k": 1}
    quick.update(item["id"], metadata={"agent_id": "evil", "k": 2})
    assert quick.get(item["id"])["metadata"] == {"k": 2} and "agent_id" not in quick.get(item["id"])


def test_reset_erases_the_tenant_only(tmp_path: Path) -> None:
    db = tmp_path / "reset.db"
    a = Memory(db, tenant="a", embedder=HashingEmbedder(dim=64))
    b = Memory(memory=MemqMemory(db, embedder=HashingEmbedder(dim=64), scope="b"), tenant="b")
    kept = a.add("tenant a keeps this", user_id="u", infer=False)["results"][0]["id"]
    gone = b.add("tenant b forgets this", user_id="u", infer=False)["results"][0]["id"]
    b.delete(b.add("deleted before the reset", user_id="u", infer=False)["results"][0]["id"])
    b.search("forgets", user_id="u")
    b.reset()
    assert b.get(gone) is None and b.history(gone) == []  # purged: no history either
    assert b.memory.stats().versions == 0
    assert a.get(kept)["memory"] == "tenant a keeps this"


def test_from_config_and_construction(tmp_path: Path, llm_server) -> None:
    mem = Memory.from_config(
        {
            "db": str(tmp_path / "cfg.db"),
            "tenant": "acme",
            "embedder": "hashing",
            "llm": {
                "provider": "openai",
                "config": {"model": "replay-model", "openai_base_url": llm_server.url, "api_key": "k"},
            },
        }
    )
    assert mem.tenant == "acme" and mem.memory.llm is not None
    llm_server.script(answer({"status": "facts", "facts": ["Dana likes tea"]}))
    assert [r["event"] for r in mem.add("I'm Dana, I like tea", user_id="dana")["results"]] == ["ADD"]
    with pytest.raises(InvalidInputError, match="vector_store"):
        Memory.from_config({"vector_store": {"provider": "qdrant"}})
    with pytest.raises(InvalidInputError, match="provider"):
        Memory.from_config({"llm": {"provider": "anthropic"}})
    with pytest.raises(InvalidInputError, match="either memory="):
        Memory(tmp_path / "x.db", memory=mem.memory)
    with pytest.raises(ScopeError):
        Memory(tmp_path / "y.db", tenant="", embedder=HashingEmbedder(dim=64))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.add(42, user_id="u", infer=False), "messages must be"),
        (lambda m: m.add([{"content": "no role"}], user_id="u", infer=False), "role"),
        (lambda m: m.add("x", user_id="u", memory_type="procedural_memory"), "procedural"),
        (lambda m: m.add("x", user_id="u", timestamp=1700000000), "platform"),
        (
            lambda m: m.add("x", user_id="u", metadata=["not", "a", "dict"], infer=False),
            "metadata must be a dict",
        ),
        (lambda m: m.search("   ", user_id="u"), "query"),
        (lambda m: m.search("x", filters="user_id=u"), "filters must be a dict"),
        (lambda m: m.search("x", filters={"user_id": "u", "OR": "x"}), "non-empty list"),
        (lambda m: m.search("x", user_id="u", reference_date="2024-01-01"), "platform"),
    ],
)
def test_bad_input_is_a_clear_error(quick: Memory, call, match) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call(quick)
    assert json.dumps(quick.get_all(user_id="u")) == '{"results": []}'  # nothing written


def test_not_found_error_is_both_value_and_memq_error(quick: Memory) -> None:
    with pytest.raises(Mem0NotFoundError) as info:
        quick.update(UNKNOWN, text="x")
    assert isinstance(info.value, ValueError) and isinstance(info.value, NotFoundError)
    assert info.value.code == "not_found"


def test_rerank_is_accepted_and_changes_nothing(quick: Memory) -> None:
    for text in ("Alice plays tennis", "Alice plays chess"):
        quick.add(text, user_id="alice", infer=False)
    plain = quick.search("tennis", user_id="alice", threshold=0)["results"]
    reranked = quick.search("tennis", user_id="alice", threshold=0, rerank=True)["results"]
    assert [r["id"] for r in reranked] == [r["id"] for r in plain]  # as mem0 without a reranker configured
    assert [r["memory"] for r in quick.get_all(user_id="alice", limit=1)["results"]] == ["Alice plays tennis"]


async def test_async_memory_has_the_same_calls(tmp_path: Path) -> None:
    amem = AsyncMemory(tmp_path / "async.db", embedder=HashingEmbedder(dim=64))
    added = await amem.add("Alice plays the oboe", user_id="alice", infer=False)
    found = await amem.search("oboe", filters={"user_id": "alice"})
    assert found["results"][0]["id"] == added["results"][0]["id"]
    await amem.feedback(found["retrieval_id"], 1.0)
    assert await amem.update(added["results"][0]["id"], text="Alice plays the bassoon") == {
        "message": "Memory updated successfully!"
    }
    assert [h["event"] for h in await amem.history(added["results"][0]["id"])] == ["ADD", "UPDATE"]
    assert (await amem.get_all(user_id="alice"))["results"][0]["memory"] == "Alice plays the bassoon"
    with pytest.raises(ValueError, match="user_id"):
        await amem.search("x")
    await amem.delete_all(user_id="alice")
    assert await amem.get(added["results"][0]["id"]) is None
    assert AsyncMemory.add.__doc__ == Memory.add.__doc__
    amem.close()


def test_threshold_cuts_on_cosine_similarity(ours: Memory) -> None:
    ours.add("Alice plays tennis every weekend", user_id="alice", infer=False)
    ours.add("The electricity invoice is due on Friday", user_id="alice", infer=False)
    loose = ours.search("a tennis match", user_id="alice", threshold=0.0, explain=True)["results"]
    assert len(loose) == 2 and loose[1]["score_details"]["dense"] < 0.3 < loose[0]["score_details"]["dense"]
    strict = ours.search("a tennis match", user_id="alice", threshold=0.3)["results"]
    assert [r["memory"] for r in strict] == ["Alice plays tennis every weekend"]


def test_context_manager_closes(tmp_path: Path) -> None:
    with Memory(tmp_path / "cm.db", embedder=HashingEmbedder(dim=64)) as m:
        m.add("inside the block", user_id="u", infer=False)
    with Memory(tmp_path / "cm.db", embedder=HashingEmbedder(dim=64)) as again:
        assert [r["memory"] for r in again.get_all(user_id="u")["results"]] == ["inside the block"]
