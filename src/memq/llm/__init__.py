"""memq's LLM layer: structured calls that validate or fail loudly, with per-operation accounting.

* :class:`memq.llm.client.OpenAICompatLLM` — any OpenAI-compatible endpoint (needs ``openai``);
* :class:`memq.llm.local.LocalLLM` — embedded Gemma 3 270M via llama.cpp (needs the ``llm`` extra);
* :func:`llm_from_spec` / :func:`llm_from_env` — build either from ``"openai:MODEL@URL"`` / ``"local"``;
* :func:`injection_flags` / :func:`quote_memories` — prompt-injection safety for memory in prompts.

The backends import their heavy dependencies lazily, so importing this package is cheap.
"""

from typing import Any

from memq.llm.base import LLM, CallStats, Message, Usage, UsageMeter
from memq.llm.safety import FLAGS_KEY, injection_flags, quote_memories
from memq.llm.spec import llm_from_env, llm_from_spec

__all__ = [
    "FLAGS_KEY",
    "LLM",
    "CallStats",
    "LocalLLM",
    "Message",
    "OpenAICompatLLM",
    "Usage",
    "UsageMeter",
    "injection_flags",
    "llm_from_env",
    "llm_from_spec",
    "quote_memories",
]


def __getattr__(name: str) -> Any:  # the backends load their dependencies only when asked for
    if name == "OpenAICompatLLM":
        from memq.llm.client import OpenAICompatLLM

        return OpenAICompatLLM
    if name == "LocalLLM":
        from memq.llm.local import LocalLLM

        return LocalLLM
    raise AttributeError(f"module 'memq.llm' has no attribute {name!r}")
