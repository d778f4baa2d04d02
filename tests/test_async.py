"""AsyncMemory on both backends: the same behaviour as Memory, and real concurrency on one loop."""

from __future__ import annotations

import asyncio
import io

import pytest

from memq import AsyncMemory, HistoryOp, NotFoundError, Scope

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


async def test_async_round_trip(db_url: str, embedder) -> None:
    mem = await AsyncMemory.open(db_url, embedder=embedder, scope="acme")
    try:
        first = await mem.add("Alice moved to Berlin in 2021", metadata={"topic": "travel"})
        await mem.add(["Bob is allergic to peanuts", "Carol adopted a dog named Max"])
        result = await mem.search("who has a pet?", k=1, explain=True)
        assert result.hits[0].record.text.startswith("Carol")
        updated = await mem.update(first.id, text="Alice moved to Munich", reason="moved")
        assert updated.version == 2
        assert [e.op for e in await mem.history(first.id)] == [HistoryOp.ADD, HistoryOp.UPDATE]
        page = await mem.list(limit=2)
        assert len(page.records) == 2 and page.next_cursor
        await mem.invalidate(first.id)
        assert first.id not in (await mem.search("Alice", k=5)).ids
        await mem.delete(first.id)
        with pytest.raises(NotFoundError):
            await mem.get(first.id)
        buf = io.StringIO()
        assert await mem.export(buf) > 0
        assert (await mem.stats()).records == 3
        assert await mem.purge(first.id) == 1
    finally:
        await mem.close()


async def test_concurrent_adds_and_searches_on_one_loop(db_url: str, embedder) -> None:
    async with await AsyncMemory.open(db_url, embedder=embedder) as mem:
        scopes = [Scope(tenant="t", user=f"u{i}") for i in range(4)]
        await asyncio.gather(
            *(mem.add([f"user {i} note {j}" for j in range(10)], scope=s) for i, s in enumerate(scopes))
        )
        results = await asyncio.gather(*(mem.search("note", k=20, scope=s) for s in scopes))
        for i, r in enumerate(results):
            assert len(r.hits) == 10 and all(h.record.scope.user == f"u{i}" for h in r.hits)


async def test_async_experiences_replay_evaluate_and_prune(db_url: str, embedder) -> None:
    async with await AsyncMemory.open(db_url, embedder=embedder, scope="acme") as mem:
        first = await mem.remember_experience("Block my stolen card", "lost_or_stolen_card", "success", 1.0)
        same = await mem.remember_experience("Block my stolen card.", "lost_or_stolen_card", "success", 1.0)
        assert same.payload["task_key"] == first.id
        assert (await mem.get(first.id)).utility.stats["agree_total"] > 0
        result = await mem.search("card stolen", k=2, policy="memrl")
        await mem.feedback(result.id, 1.0)
        assert await mem.replay("memq") == 1
        estimate = await mem.evaluate("memrl")
        assert estimate.retrievals == 1 and estimate.items == 2
        assert await mem.prune_log(0) >= 1


@pytest.mark.parametrize("name", ["similarity", "memrl", "memento_q", "memq"])
async def test_every_learner_searches_replays_and_evaluates_sync_and_async(
    db_url: str, embedder, name: str
) -> None:
    """search(policy=…), feedback, replay and evaluate for each learner, on the async and the sync facade."""
    from memq import Memory

    texts = ["Block my stolen card", "My card was stolen, freeze it", "Order a new card", "Change my PIN"]
    async with await AsyncMemory.open(db_url, embedder=embedder, scope="acme") as mem:
        await mem.add(texts)
        first = await mem.search("card stolen", k=2, policy=name)
        assert len(first.hits) == 2 and first.learner == name
        await mem.feedback(first.id, 1.0, used=[first.hits[0].record.id])
        assert await mem.replay(name) == 1
        estimate = await mem.evaluate(name)
        assert estimate.retrievals == 1 and estimate.items == 2
    with Memory(db_url, embedder=embedder, scope="acme") as sync:
        again = sync.search("card stolen", k=2, policy=name)
        assert again.learner == name and len(again.hits) == 2
        sync.feedback(again.id, 0.0)
        assert sync.replay(name) == 2
        assert sync.evaluate(name).retrievals == 2
