"""Every script in examples/ runs offline and prints what was remembered, recalled and learned.

They run in this process (the frameworks are imported once for the whole suite); the environment
variables an example sets (telemetry off, mem0's MEMQ_DB / MEMQ_LLM) are restored afterwards.
"""

from __future__ import annotations

import os
import runpy
from collections.abc import Iterator
from pathlib import Path

import pytest

# LlamaIndex's workflow runtime inspects pydantic members (pydantic's deprecation warnings, not memq's)
pytestmark = [
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211"),
]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXPECTED = {
    "langgraph_store.py": ["used=1 reward=1.0  Alice prefers window seats", "agent: Booked a window seat"],
    "langchain_agent.py": [
        "chain answer:   Ben has a FritzBox 7590.",
        "used=1 reward=1.0  Ben's internet contract",
    ],
    "openai_agents_session.py": [
        "run 2: You are having dinner tonight",
        "used=1 reward=1.0  Carla is allergic",
    ],
    "llamaindex_memory.py": [
        "agent: Booked seat 14C",
        "session=booking-1  user: Book my usual seat",
        "used=1",
    ],
    "mem0_compat.py": [
        "('DELETE', 'Does not like thrillers')",
        "learned: 'Loves sci-fi movies' shown=1 used=1",
    ],
}


@pytest.fixture
def restored_env() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_offline(name: str, restored_env: None, capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the examples' temporary stores go under tmp_path
    monkeypatch.setattr("tempfile.tempdir", None)
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    out = capsys.readouterr().out
    for line in EXPECTED[name]:
        assert line in out, f"{name}: {line!r} not in output:\n{out}"
    assert "remembered" in out and "recalled" in out and "learned" in out
