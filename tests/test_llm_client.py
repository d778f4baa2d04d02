"""OpenAICompatLLM over real HTTP (the replay server) with the real openai SDK."""

from __future__ import annotations

import json
import threading

import pytest
from pydantic import BaseModel, Field

from llm_replay import (
    ReplayServer,
    Reply,
    answer,
    count_tokens,
    empty,
    http_error,
    malformed,
    slow,
    truncated,
)
from memq.errors import LLMError, LLMOutputError, LLMTimeoutError
from memq.llm.base import LLM
from memq.llm.client import OpenAICompatLLM
from memq.llm.structured import json_schema_of


class Facts(BaseModel):
    facts: list[str] = Field(min_length=1)


class Decision(BaseModel):
    event: str
    id: int


MSGS = [
    {"role": "system", "content": "Extract facts."},
    {"role": "user", "content": "Alice moved to Berlin in 2021."},
]


def test_success_returns_validated_instance_and_sends_json_schema(llm_server: ReplayServer) -> None:
    llm_server.script(answer({"facts": ["Alice moved to Berlin in 2021"]}))
    llm = llm_server.llm()
    assert isinstance(llm, LLM)
    out = llm.structured(MSGS, Facts, operation="extract", max_tokens=64)
    assert out == Facts(facts=["Alice moved to Berlin in 2021"])
    (req,) = llm_server.requests
    fmt = req.response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Facts"
    assert fmt["json_schema"]["schema"] == json_schema_of(Facts)
    assert fmt["json_schema"]["schema"]["properties"]["facts"]["minItems"] == 1
    assert req.max_tokens == 64
    assert req.messages == MSGS  # the schema is not repeated in the prompt in json_schema mode
    assert req.headers["authorization"] == "Bearer test-key"


def test_code_fence_around_json_is_accepted(llm_server: ReplayServer) -> None:
    llm_server.script(answer('```json\n{"facts": ["a fact"]}\n```'))
    assert llm_server.llm().structured(MSGS, Facts, operation="extract").facts == ["a fact"]


def test_raw_control_characters_inside_strings_are_accepted(llm_server: ReplayServer) -> None:
    # llama.cpp's JSON grammar lets a model put a raw newline/tab inside a string; strict json.loads refuses it
    llm_server.script(answer('{"facts": ["line one\nline two\tend"]}'))
    assert llm_server.llm().structured(MSGS, Facts, operation="extract").facts == ["line one\nline two\tend"]
    assert len(llm_server.requests) == 1  # accepted first time, no retry


@pytest.mark.parametrize("fmt", ["json_object", "none"])
def test_schema_goes_into_the_prompt_without_json_schema_mode(llm_server: ReplayServer, fmt: str) -> None:
    llm_server.script(answer({"facts": ["x"]}))
    llm_server.llm(response_format=fmt).structured(MSGS, Facts, operation="extract")
    (req,) = llm_server.requests
    if fmt == "json_object":
        assert req.response_format == {"type": "json_object"}
    else:
        assert req.response_format is None
    system = req.messages[0]
    assert system["role"] == "system" and system["content"].startswith("Extract facts.")
    assert json.dumps(json_schema_of(Facts), separators=(",", ":")) in system["content"]
    assert len(req.messages) == len(MSGS)


def test_auto_steps_down_when_server_rejects_json_schema(llm_server: ReplayServer) -> None:
    llm_server.script(
        http_error(400, "response_format json_schema is not supported by this model"),
        answer({"facts": ["x"]}),
        answer({"facts": ["y"]}),
    )
    llm = llm_server.llm()
    assert llm.structured(MSGS, Facts, operation="extract").facts == ["x"]
    assert llm.effective_format == "json_object"
    llm.structured(MSGS, Facts, operation="extract")  # remembered: no second rejected request
    assert [r.response_format["type"] for r in llm_server.requests] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert llm.usage.snapshot().total.calls == 3


def test_other_400_is_not_retried(llm_server: ReplayServer) -> None:
    llm_server.script(http_error(400, "context length exceeded"), answer({"facts": ["x"]}))
    with pytest.raises(LLMError, match="HTTP 400: context length exceeded"):
        llm_server.llm().structured(MSGS, Facts, operation="extract")
    assert len(llm_server.requests) == 1 and llm_server.pending == 1


def test_invalid_then_valid_retries_with_the_validation_error(llm_server: ReplayServer) -> None:
    llm_server.script(answer({"facts": []}), answer({"facts": ["Alice lives in Berlin"]}))
    llm = llm_server.llm()
    out = llm.structured(MSGS, Facts, operation="extract")
    assert out.facts == ["Alice lives in Berlin"]
    first, second = llm_server.requests
    assert second.messages[: len(MSGS)] == MSGS
    assistant, correction = second.messages[len(MSGS) :]
    assert assistant == {"role": "assistant", "content": '{"facts": []}'}
    assert correction["role"] == "user"
    assert "facts: List should have at least 1 item" in correction["content"]
    assert second.response_format == first.response_format
    stats = llm.usage.snapshot().by_operation["extract"]
    assert (stats.calls, stats.retries, stats.failures) == (2, 1, 0)


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (malformed('{"facts": ["Alice'), "not valid JSON"),
        (empty(), "empty"),
        (truncated('{"facts": ["Alice lives in'), "cut off at the token limit"),
        (answer({"facts": []}), "at least 1 item"),
        (answer('["a list"]'), "must be a JSON object"),
        (answer({"wrong": 1}), "facts: Field required"),
    ],
)
def test_bad_answers_fail_loudly_after_bounded_retries(
    llm_server: ReplayServer, bad: Reply, problem: str
) -> None:
    llm_server.script(*[Reply(**vars(bad)) for _ in range(3)], answer({"facts": ["never reached"]}))
    llm = llm_server.llm(retries=2)
    with pytest.raises(LLMOutputError, match=problem) as info:
        llm.structured(MSGS, Facts, operation="extract")
    assert info.value.raw == bad.content
    assert info.value.attempts == 3
    assert len(llm_server.requests) == 3 and llm_server.pending == 1
    usage = llm.usage.snapshot()
    stats = usage.by_operation["extract"]
    assert (stats.calls, stats.retries, stats.failures) == (3, 2, 1)
    # the failure is in the usage's failure log, with the model's last answer
    (failure,) = usage.failures
    assert (failure.operation, failure.code, failure.raw) == ("extract", "llm_invalid_output", bad.content)
    assert problem in failure.message
    # every retry tells the model what was wrong
    for req in llm_server.requests[1:]:
        assert problem in req.messages[-1]["content"]


def test_retries_zero_means_one_attempt(llm_server: ReplayServer) -> None:
    llm_server.script(empty(), answer({"facts": ["x"]}))
    with pytest.raises(LLMOutputError):
        llm_server.llm(retries=0).structured(MSGS, Facts, operation="extract")
    assert len(llm_server.requests) == 1


def test_http_500_is_retried_then_raises(llm_server: ReplayServer) -> None:
    llm_server.script(*(http_error(500) for _ in range(3)), answer({"facts": ["x"]}))
    llm = llm_server.llm(transport_retries=2)
    with pytest.raises(LLMError, match="HTTP 500") as info:
        llm.structured(MSGS, Facts, operation="extract")
    assert not isinstance(info.value, LLMOutputError | LLMTimeoutError)
    assert len(llm_server.requests) == 3
    usage = llm.usage.snapshot()
    stats = usage.by_operation["extract"]
    assert (stats.calls, stats.retries, stats.failures) == (3, 2, 1)
    assert [(f.operation, f.code) for f in usage.failures] == [("extract", "llm_error")]


def test_transient_503_then_success(llm_server: ReplayServer) -> None:
    llm_server.script(http_error(503), http_error(429, "rate limited"), answer({"facts": ["x"]}))
    llm = llm_server.llm(transport_retries=2)
    assert llm.structured(MSGS, Facts, operation="extract").facts == ["x"]
    assert llm.usage.snapshot().total.failures == 0


def test_timeout_raises_llm_timeout_error(llm_server: ReplayServer) -> None:
    llm_server.script(slow(5.0), slow(5.0))
    llm = llm_server.llm(timeout=0.3, transport_retries=1)
    with pytest.raises(LLMTimeoutError, match=r"within 0\.3 s"):
        llm.structured(MSGS, Facts, operation="extract")
    assert len(llm_server.requests) == 2
    stats = llm.usage.snapshot().by_operation["extract"]
    assert (stats.calls, stats.failures) == (2, 1)
    assert stats.latency_ms >= 600


def test_connection_refused_is_an_llm_error() -> None:
    server = ReplayServer().start()
    url = server.url
    server.close()
    llm = OpenAICompatLLM("m", base_url=url, api_key="k", transport_retries=1, backoff=0.01, timeout=2)
    with pytest.raises(LLMError, match="cannot reach the server"):
        llm.structured(MSGS, Facts, operation="extract")
    assert llm.usage.snapshot().total.calls == 2


def test_concurrency_limit_is_respected(llm_server: ReplayServer) -> None:
    llm_server.script(*(slow(0.25, answer({"facts": [str(i)]})) for i in range(6)))
    llm = llm_server.llm(max_concurrency=2)
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.extend(llm.structured(MSGS, Facts, operation="extract").facts)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [str(i) for i in range(6)]
    assert llm_server.peak_in_flight == 2


def test_usage_is_accounted_per_operation_from_response_usage(llm_server: ReplayServer) -> None:
    llm_server.script(
        answer({"facts": ["a"]}, prompt_tokens=120, completion_tokens=7),
        answer({"facts": []}, prompt_tokens=50, completion_tokens=3),
        answer({"facts": ["b"]}, prompt_tokens=80, completion_tokens=5),
        answer({"event": "ADD", "id": 0}, prompt_tokens=200, completion_tokens=9),
    )
    llm = llm_server.llm()
    llm.structured(MSGS, Facts, operation="extract")
    llm.structured(MSGS, Facts, operation="extract")
    llm.structured(MSGS, Decision, operation="reconcile")
    usage = llm.usage.snapshot()
    ext, rec = usage.by_operation["extract"], usage.by_operation["reconcile"]
    assert (ext.calls, ext.retries, ext.prompt_tokens, ext.completion_tokens) == (3, 1, 250, 15)
    assert (rec.calls, rec.retries, rec.prompt_tokens, rec.completion_tokens) == (1, 0, 200, 9)
    assert usage.total.calls == 4 and usage.total.prompt_tokens == 450
    assert ext.latency_ms > 0
    llm.usage.reset()
    assert llm.usage.snapshot().total.calls == 0


def test_estimated_usage_matches_what_the_server_reports(llm_server: ReplayServer) -> None:
    content = json.dumps({"facts": ["Alice lives in Berlin"]})
    llm_server.script(answer(content))
    llm = llm_server.llm(response_format="none")
    llm.structured(MSGS, Facts, operation="extract")
    (req,) = llm_server.requests
    stats = llm.usage.snapshot().total
    assert stats.completion_tokens == count_tokens(content)
    assert stats.prompt_tokens == sum(count_tokens(m["content"]) + 4 for m in req.messages)


def test_unexpected_extra_request_fails_loudly(llm_server: ReplayServer) -> None:
    with pytest.raises(LLMError, match="replay script exhausted"):
        llm_server.llm().structured(MSGS, Facts, operation="extract")


def test_responder_answers_dynamically(llm_server: ReplayServer) -> None:
    llm_server.respond_with(lambda req: {"facts": [req.messages[-1]["content"].upper()]})
    out = llm_server.llm().structured(MSGS, Facts, operation="extract")
    assert out.facts == ["ALICE MOVED TO BERLIN IN 2021."]


async def test_astructured(llm_server: ReplayServer) -> None:
    llm_server.script(answer({"facts": ["x"]}))
    out = await llm_server.llm().astructured(MSGS, Facts, operation="extract")
    assert out.facts == ["x"]


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="response_format"):
        OpenAICompatLLM("m", base_url="http://127.0.0.1:9/v1", response_format="xml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAICompatLLM("m", base_url="http://127.0.0.1:9/v1", max_concurrency=0)
    llm = OpenAICompatLLM("m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(TypeError, match="pydantic model"):
        llm.structured(MSGS, dict, operation="x")  # type: ignore[type-var]
    with pytest.raises(ValueError, match="operation"):
        llm.structured(MSGS, Facts, operation="")


def test_replies_recorded_as_jsonl_are_replayed(llm_server: ReplayServer, tmp_path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text(
        '{"status": 503}\n\n{"content": "{\\"facts\\": [\\"from the file\\"]}", "completion_tokens": 11}\n',
        encoding="utf-8",
    )
    llm_server.load(path)
    llm = llm_server.llm()
    assert llm.structured(MSGS, Facts, operation="extract").facts == ["from the file"]
    stats = llm.usage.snapshot().total
    assert (stats.calls, stats.retries, stats.completion_tokens) == (2, 1, 11)


def test_sent_schema_drops_titles_but_keeps_a_field_named_title() -> None:
    class Inner(BaseModel):
        title: str = Field(default="t", min_length=1)

    class Outer(BaseModel):
        items: list[Inner]
        title: str

    full = Outer.model_json_schema()
    sent = json_schema_of(Outer)
    assert "title" in full and "title" not in sent
    assert set(sent["properties"]) == {"items", "title"}
    assert sent["properties"]["title"] == {"type": "string"}
    assert sent["$defs"]["Inner"]["properties"]["title"] == {"default": "t", "minLength": 1, "type": "string"}
    assert sent["required"] == ["items", "title"]
