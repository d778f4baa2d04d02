"""LlamaIndex on memq: a MemqMemoryBlock in the agent's chat memory, and memq's feedback tool.

    pip install 'memq[llamaindex]'
    python examples/llamaindex_memory.py

Runs offline: the LLM is LlamaIndex's ``MockFunctionCallingLLM`` with a scripted response generator
(it reads what the memory block put in the system prompt and decides the next turn). The block
recalls memq memories for each turn and shows them with their retrieval id; the "model" uses one and
reports the reward through the ``feedback`` tool. Messages that leave the chat memory's short-term
window are stored in memq by the block, so a later session can recall them.
"""

from __future__ import annotations

from memq.integrations.scripted import offline

offline()  # before the frameworks are imported

import asyncio  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

from llama_index.core.agent.workflow import FunctionAgent  # noqa: E402
from llama_index.core.base.llms.types import ToolCallBlock  # noqa: E402
from llama_index.core.llms import ChatMessage  # noqa: E402
from llama_index.core.llms.mock import MockFunctionCallingLLM  # noqa: E402
from llama_index.core.memory import Memory as ChatMemory  # noqa: E402

from memq import Memory, Scope  # noqa: E402
from memq.integrations.llamaindex import MemqMemoryBlock, memq_tools  # noqa: E402

# LlamaIndex's workflow runtime inspects pydantic members and trips pydantic's deprecation warnings
warnings.filterwarnings("ignore", module="pydantic")


SEEN: list[str] = []  # the system prompts the "model" was given


def scripted_model(messages: list[ChatMessage], **kwargs) -> ChatMessage:
    """Turn 1: report reward on the recalled seat preference; turn 2: answer."""
    system = "\n".join(m.content or "" for m in messages if m.role.value == "system")
    SEEN.append(system)
    if any(m.role.value == "tool" for m in messages):
        return ChatMessage(role="assistant", content="Booked seat 14C, your usual aisle seat.")
    retrieval_id = re.search(r"retrieval_id: (\S+)", system).group(1)
    seat = re.search(r"- \[(\S+)\] [^\n]*14C", system).group(1)
    args = {"retrieval_id": retrieval_id, "reward": 1.0, "used": [seat]}
    return ChatMessage(
        role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="feedback", tool_kwargs=args)]
    )


async def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="memq-llamaindex-"))
    memory = Memory(workdir / "memq.db", scope=Scope(tenant="airline", user="dev"))
    memory.add(["Dev's usual seat is 14C, an aisle seat", "Dev flies with a guitar as cabin luggage"])

    block = MemqMemoryBlock(memory=memory, k=2)
    chat_memory = ChatMemory.from_defaults(
        session_id="booking-1",
        token_limit=200,
        chat_history_token_ratio=0.5,
        token_flush_size=40,
        memory_blocks=[block],
    )
    agent = FunctionAgent(
        tools=memq_tools(memory), llm=MockFunctionCallingLLM(response_generator=scripted_model)
    )
    answer = await agent.run("Book my usual seat to Oslo.", memory=chat_memory)

    # more conversation than the short-term window holds: the oldest turns go to memq
    for i in range(8):
        await chat_memory.aput(
            ChatMessage(role="user", content=f"Also note detail number {i} about the trip.")
        )

    print(f"agent: {answer}")
    print("recalled by the memory block (the model's system prompt, first turn):")
    print("  " + SEEN[0].strip().replace("\n", "\n  "))
    print("remembered: chat messages flushed from the short-term window into memq:")
    for record in list(memory.iter(kinds=["message"]))[:4]:
        print(f"  session={record.scope.session}  {record.text}")
    print("learned (feedback tool -> memq utility):")
    for record in memory.iter(kinds=["fact"]):
        u = record.utility
        print(f"  shown={u.n_shown} used={u.n_used} reward={u.reward_sum}  {record.text}")


if __name__ == "__main__":
    asyncio.run(main())
