"""The ``llm_server`` fixture: a real OpenAI-compatible HTTP server on loopback replaying scripted
answers (:mod:`memq.llm.replay`), registered for every test by ``tests/conftest.py``.

    from llm_replay import answer, empty, http_error, malformed, slow, truncated

    def test_extract(llm_server):
        llm_server.script(
            malformed('{"facts": ["Alice'),                # 1st request: broken JSON
            answer({"facts": ["Alice lives in Berlin"]}),  # 2nd: the retry succeeds
        )
        llm = llm_server.llm()                      # an OpenAICompatLLM pointed at the server
        ...                                         # run the code under test with llm
        assert len(llm_server.requests) == 2
        assert "not valid JSON" in llm_server.requests[1].messages[-1]["content"]

See :mod:`memq.llm.replay` for the scripting helpers, ``respond_with`` and the recorded requests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from memq.llm.replay import (
    Recorded,
    ReplayServer,
    Reply,
    answer,
    count_tokens,
    empty,
    http_error,
    malformed,
    replies_from,
    slow,
    truncated,
)

__all__ = [
    "Recorded",
    "ReplayServer",
    "Reply",
    "answer",
    "count_tokens",
    "empty",
    "http_error",
    "llm_server",
    "malformed",
    "replies_from",
    "slow",
    "truncated",
]


@pytest.fixture
def llm_server() -> Iterator[ReplayServer]:
    """A started :class:`ReplayServer` on 127.0.0.1 (a free port), closed after the test."""
    server = ReplayServer().start()
    try:
        yield server
    finally:
        server.close()
