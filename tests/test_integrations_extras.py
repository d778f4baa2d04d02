"""Each integration imports its framework only when imported itself, and names its pip extra when
the framework is missing (simulated by blocking the framework's modules in ``sys.modules``)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

CASES = [
    ("memq.integrations.langgraph", "langgraph.store.base", "memq[langgraph]"),
    ("memq.integrations.langchain", "langchain_core.retrievers", "memq[langchain]"),
    ("memq.integrations.openai_agents", "agents", "memq[openai-agents]"),
    ("memq.integrations.llamaindex", "llama_index.core.memory.memory", "memq[llamaindex]"),
]
FRAMEWORKS = ("langgraph", "langchain_core", "langmem", "agents", "llama_index", "mem0")


@pytest.mark.parametrize(("module", "blocked", "extra"), CASES)
def test_a_missing_framework_names_the_extra(monkeypatch, module: str, blocked: str, extra: str) -> None:
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.setitem(sys.modules, blocked, None)  # "not installed"
    with pytest.raises(ImportError, match=rf"pip install '{extra}'".replace("[", r"\[").replace("]", r"\]")):
        importlib.import_module(module)


def test_memq_and_the_packages_import_no_framework() -> None:
    code = (
        "import sys, memq, memq.integrations, memq.compat, memq.compat.mem0, memq.integrations.scripted\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"
