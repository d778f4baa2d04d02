"""The embedded model (Gemma 3 270M Q4_K_M via llama.cpp): grammar-constrained, validated, accounted.

A few short greedy generations on one module-scoped model; quality is not asserted (a 270M base
model proves the offline path, not good answers), shape, validation and accounting are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field

from memq.errors import LLMOutputError
from memq.llm.base import LLM
from memq.llm.local import LocalLLM, merge_roles


class City(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    country: str = Field(min_length=1, max_length=40)


class Tags(BaseModel):
    tags: list[str] = Field(min_length=1, max_length=3)


@pytest.fixture(scope="module")
def gemma() -> Iterator[LocalLLM]:
    llm = LocalLLM(retries=1, default_max_tokens=48)
    llm.llama  # load once for the module  # noqa: B018
    yield llm


def test_gemma_answers_a_schema_with_a_valid_instance(gemma: LocalLLM) -> None:
    assert isinstance(gemma, LLM)
    gemma.usage.reset()
    out = gemma.structured(
        [
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": "Alice moved to Berlin, Germany in 2021. Where does Alice live?"},
        ],
        City,
        operation="probe",
        max_tokens=40,
    )
    assert isinstance(out, City) and out.name.strip() and out.country.strip()
    stats = gemma.usage.snapshot().by_operation["probe"]
    assert stats.calls >= 1 and stats.failures == 0
    assert stats.prompt_tokens > 20 and 0 < stats.completion_tokens <= 40 * stats.calls
    assert stats.latency_ms > 0


def test_grammar_enforces_the_list_shape(gemma: LocalLLM) -> None:
    out = gemma.structured(
        [{"role": "user", "content": "Give one tag for: 'I bought a red bicycle yesterday.'"}],
        Tags,
        operation="tags",
        max_tokens=24,
    )
    assert 1 <= len(out.tags) <= 3


def test_truncated_local_answer_fails_loudly(gemma: LocalLLM) -> None:
    strict = LocalLLM(retries=0, schema_in_prompt=False)  # shares the loaded weights
    with pytest.raises(LLMOutputError, match="cut off at the token limit") as info:
        strict.structured(
            [{"role": "user", "content": "Where is Berlin?"}], City, operation="x", max_tokens=3
        )
    assert info.value.raw is not None
    stats = strict.usage.snapshot().by_operation["x"]
    assert (stats.calls, stats.failures, stats.completion_tokens) == (1, 1, 3)


def test_merge_roles_keeps_strict_alternation() -> None:
    merged = merge_roles(
        [
            {"role": "system", "content": "s"},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "assistant", "content": "c"},
        ]
    )
    assert [m["role"] for m in merged] == ["system", "user", "assistant"]
    assert merged[1]["content"] == "a\n\nb"
