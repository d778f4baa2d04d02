"""The OpenAI Agents SDK on memq: a MemqSession for the conversation, memq tools for long-term memory.

    pip install 'memq[openai-agents]'
    python examples/openai_agents_session.py

Runs offline: the agent's model is an ``OpenAIChatCompletionsModel`` whose client talks to memq's
replay server (scripted model turns); tracing export is off. Two runs in one session: the second
sees the first's history (from memq). In between, the agent recalls a long-term fact, uses it, and
reports the reward with the ``feedback`` tool.
"""

from __future__ import annotations

from memq.integrations.scripted import final, last_tool_output, offline, tool_call

offline()  # before the frameworks are imported

import asyncio  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from agents import Agent, OpenAIChatCompletionsModel, Runner, set_tracing_disabled  # noqa: E402
from openai import AsyncOpenAI  # noqa: E402

from memq import Memory, Scope  # noqa: E402
from memq.integrations.openai_agents import MemqSession, memq_tools  # noqa: E402
from memq.llm.replay import ReplayServer  # noqa: E402


async def main() -> None:
    set_tracing_disabled(True)
    workdir = Path(tempfile.mkdtemp(prefix="memq-agents-"))
    memory = Memory(workdir / "memq.db", scope=Scope(tenant="travel", user="carla"))
    memory.add(["Carla is allergic to shellfish", "Carla's frequent flyer number is LH-99231"])

    with ReplayServer() as server:
        client = AsyncOpenAI(base_url=server.url, api_key="offline")
        agent = Agent(
            name="concierge",
            instructions="Recall what you know about the traveller before answering; report feedback.",
            model=OpenAIChatCompletionsModel(model="replay-model", openai_client=client),
            tools=memq_tools(memory, kinds=["fact"], k=2),  # facts only: the session history is separate
        )
        session = MemqSession("trip-to-lisbon", memory)

        def after_recall(request) -> object:
            recalled = json.loads(last_tool_output(request))
            allergy = next(m for m in recalled["memories"] if "shellfish" in m["text"])
            return tool_call(
                "feedback", {"retrieval_id": recalled["retrieval_id"], "reward": 1.0, "used": [allergy["id"]]}
            )

        server.script(tool_call("recall", {"query": "food allergy shellfish", "k": 2}))
        replies = iter(
            [after_recall, lambda r: final("Booked dinner at a place with no shellfish on the menu.")]
        )
        server.respond_with(lambda request: next(replies)(request))
        first = await Runner.run(agent, "Book me dinner in Lisbon tonight.", session=session)
        recalled = json.loads(last_tool_output(server.requests[1]))  # what the recall tool returned

        server.respond_with(None)
        server.script(final("You are having dinner tonight, shellfish-free."))
        second = await Runner.run(agent, "What did we plan?", session=session)
        history_sent = server.requests[-1].messages[1:-1]  # between the instructions and the new question

    print(f"run 1: {first.final_output}")
    print(
        f"run 2: {second.final_output}  (its request carried {len(history_sent)} messages of run 1, from memq)"
    )
    print(
        f"recalled (recall tool, retrieval {recalled['retrieval_id'][:8]}…): {[m['text'] for m in recalled['memories']]}"
    )
    print("remembered: the session history in memq (kind 'message', scope session 'trip-to-lisbon'):")
    for item in await session.get_items():
        print(f"  {json.dumps(item)[:100]}")
    print("long-term facts and what was learned:")
    for record in memory.iter(kinds=["fact"]):
        u = record.utility
        print(f"  shown={u.n_shown} used={u.n_used} reward={u.reward_sum}  {record.text}")


if __name__ == "__main__":
    asyncio.run(main())
