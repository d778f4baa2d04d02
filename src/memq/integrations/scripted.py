"""Scripted model turns with tool calls, for the replay server (:mod:`memq.llm.replay`).

Agent frameworks that speak the OpenAI chat-completions API (the OpenAI Agents SDK, LangChain's
``ChatOpenAI``, ...) run offline against :class:`~memq.llm.replay.ReplayServer` when its replies
are scripted model turns: a tool call, or a final answer. The examples and the integration tests
use these helpers (and :func:`offline`, which turns the frameworks' telemetry and trace export off);
nothing else in memq does.

    with ReplayServer() as server:
        server.script(tool_call("recall", {"query": "Alice"}))
        server.respond_with(lambda req: final(f"recalled: {last_tool_output(req)}"))
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from memq.llm.replay import Recorded, Reply

__all__ = ["OFFLINE_ENV", "final", "last_tool_output", "offline", "tool_call", "tool_outputs"]

# what the frameworks read to stay off the network: no trace export, no telemetry, no hub downloads
OFFLINE_ENV = {
    "OPENAI_AGENTS_DISABLE_TRACING": "1",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    "MEM0_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def tool_call(name: str, arguments: Mapping[str, Any], *more: tuple[str, Mapping[str, Any]]) -> Reply:
    """A model turn that calls tool ``name`` with ``arguments`` (and any ``(name, arguments)`` in ``more``)."""
    calls = [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": n, "arguments": json.dumps(dict(a))},
        }
        for n, a in [(name, arguments), *more]
    ]
    return Reply(
        raw_body={
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "replay-model",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {"role": "assistant", "content": None, "tool_calls": calls},
                    "logprobs": None,
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


def final(text: str) -> Reply:
    """A model turn that answers ``text`` (no tool call)."""
    return Reply(content=text)


def tool_outputs(request: Recorded) -> list[str]:
    """The contents of the ``tool`` messages at the end of a request (the results the model sees)."""
    out: list[str] = []
    for message in reversed(request.messages):
        if message.get("role") != "tool":
            break
        content = message.get("content")
        if isinstance(content, list):  # content parts
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        out.append(str(content))
    return list(reversed(out))


def last_tool_output(request: Recorded) -> str:
    """The content of the last tool result the model was shown (``""`` when there is none)."""
    outputs = tool_outputs(request)
    return outputs[-1] if outputs else ""


def offline() -> None:
    """Set :data:`OFFLINE_ENV` (before the frameworks are imported, which is when some read it)."""
    os.environ.update(OFFLINE_ENV)
