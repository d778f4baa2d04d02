"""A managed ``add`` is one transaction: a plan that fails at the store half-way writes nothing.

``reconcile`` runs over the replay LLM server (real HTTP). While its decision call is in flight, a
second writer (another Memory on the same store: its own connection) updates or deletes the
record the decision is about. The plan's first part (the new fact) would write fine; its last part
(the version of the changed record) is refused by the store inside the same transaction, so the
new fact is rolled back with it. Run on SQLite and PostgreSQL, through Memory and AsyncMemory.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Callable

import pytest

from llm_replay import Recorded, answer
from memq import AsyncMemory, Memory
from memq.errors import ConflictError, NotFoundError

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)

MEMORY_LINE = re.compile(r'^\[(\d+)\] "(.*)"', re.MULTILINE)


def numbered(request: Recorded) -> dict[str, int]:
    """memory text -> the number the reconcile prompt gave it."""
    block = request.messages[-1]["content"].split("<memories>")[1].split("</memories>")[0]
    return {json.loads(f'"{m[1]}"'): int(m[0]) for m in MEMORY_LINE.findall(block)}


def snapshot(mem: Memory) -> tuple[str, dict]:
    out = io.StringIO()
    mem.export(out, all_tenants=True)
    return out.getvalue(), mem.stats().model_dump(exclude={"bytes"})  # bytes: pages, dead tuples


def script_race(llm_server, other: Memory, target: str, race: str, taken: list) -> None:
    """Extraction finds two facts; while the decision call is in flight ``other`` changes ``target``
    (``race``: update or delete), and the decision then is "fact 0 UPDATE/DELETE target, fact 1 ADD"."""
    llm_server.script(answer({"status": "facts", "facts": ["Alice likes jazz and blues", "Alice has a cat"]}))

    def decide(request: Recorded) -> dict:
        number = numbered(request)["Alice likes jazz"]
        if race == "update":
            other.update(target, text="Alice likes free jazz")  # a concurrent writer wins the record
        else:
            other.delete(target)
        taken.append(snapshot(other))  # the store as the add must leave it
        op = {"op": "UPDATE", "text": "Alice likes jazz and blues"} if race == "update" else {"op": "DELETE"}
        return {
            "decisions": [
                {"fact": 0, "id": number, "reason": "newer", **op},
                {"fact": 1, "op": "ADD", "reason": "new"},
            ]
        }

    llm_server.respond_with(decide)


ERRORS: dict[str, type[Exception]] = {"update": ConflictError, "delete": NotFoundError}


@pytest.mark.parametrize("race", ["update", "delete"])
def test_reconcile_against_a_record_changed_meanwhile_writes_nothing(
    db_url: str, embedder, llm_server, race: str
) -> None:
    mem = Memory(db_url, embedder=embedder, scope="acme", llm=llm_server.llm())
    other = Memory(db_url, embedder=embedder, scope="acme")
    try:
        jazz = mem.add("Alice likes jazz")
        taken: list = []
        script_race(llm_server, other, jazz.id, race, taken)
        with pytest.raises(ERRORS[race]):
            mem.add("I like blues too, and I got a cat", manager="reconcile")
        assert len(llm_server.requests) == 2  # the plan was made (both calls): the store refused it
        assert snapshot(mem) == taken[0]  # not the new fact, not the decision's version
        assert "Alice has a cat" not in {r.text for r in mem.iter()}
        history = mem.history(jazz.id)
        assert not any((e.actor or "").startswith("manager:") for e in history)
        assert mem.store.verify_index()
        # the store goes on: the same add, planned again on the record as it is now, lands whole
        if race == "update":
            llm_server.script(
                answer({"status": "facts", "facts": ["Alice has a cat"]}),
                answer({"decisions": [{"fact": 0, "op": "ADD", "reason": "new"}]}),
            )
            result = mem.add("I got a cat", manager="reconcile")
            assert [d.op for d in result.decisions] == ["ADD"]
            assert "Alice has a cat" in {r.text for r in mem.iter()}
            assert mem.store.verify_index()
    finally:
        other.close()
        mem.close()


async def _async_add(db_url: str, embedder, llm, check: Callable[[AsyncMemory], object]) -> None:
    async with await AsyncMemory.open(db_url, embedder=embedder, scope="acme", llm=llm) as mem:
        await check(mem)  # type: ignore[misc]


def test_async_reconcile_against_a_record_updated_meanwhile_writes_nothing(
    db_url: str, embedder, llm_server
) -> None:
    seed = Memory(db_url, embedder=embedder, scope="acme")
    other = Memory(db_url, embedder=embedder, scope="acme")
    try:
        jazz = seed.add("Alice likes jazz")
        seed.close()
        taken: list = []
        script_race(llm_server, other, jazz.id, "update", taken)

        async def check(mem: AsyncMemory) -> None:
            with pytest.raises(ConflictError):
                await mem.add("I like blues too, and I got a cat", manager="reconcile")
            out = io.StringIO()
            await mem.export(out, all_tenants=True)
            assert out.getvalue() == taken[0][0]
            assert (await mem.stats()).model_dump(exclude={"bytes"}) == taken[0][1]

        asyncio.run(_async_add(db_url, embedder, llm_server.llm(), check))
        assert [r.text for r in other.iter()] == ["Alice likes free jazz"]
    finally:
        other.close()
