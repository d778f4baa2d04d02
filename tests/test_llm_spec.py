"""llm_from_spec / llm_from_env: specs and environment variables to a configured LLM."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from llm_replay import ReplayServer, answer
from memq.errors import InvalidInputError
from memq.llm import llm_from_env, llm_from_spec
from memq.llm.client import OpenAICompatLLM
from memq.llm.local import LocalLLM


class Ok(BaseModel):
    ok: bool


def test_openai_spec_with_base_url_and_options(llm_server: ReplayServer) -> None:
    llm = llm_from_spec(f"openai:llama3.2:3b@{llm_server.url}?format=json_object&timeout=5&retries=1", env={})
    assert isinstance(llm, OpenAICompatLLM)
    assert llm.model == "llama3.2:3b"
    assert llm.base_url == llm_server.url
    assert (llm.effective_format, llm.timeout, llm.retries) == ("json_object", 5.0, 1)
    llm_server.script(answer({"ok": True}))
    assert llm.structured([{"role": "user", "content": "hi"}], Ok, operation="t").ok is True
    assert llm_server.requests[0].body["model"] == "llama3.2:3b"
    assert llm_server.requests[0].response_format == {"type": "json_object"}


def test_env_supplies_key_base_url_and_defaults(llm_server: ReplayServer) -> None:
    env = {
        "MEMQ_LLM": "openai:gpt-test",
        "OPENAI_BASE_URL": llm_server.url,
        "OPENAI_API_KEY": "sk-env",
        "MEMQ_LLM_FORMAT": "none",
        "MEMQ_LLM_CONCURRENCY": "3",
    }
    llm = llm_from_env(env)
    assert isinstance(llm, OpenAICompatLLM)
    assert (llm.base_url, llm.effective_format, llm.max_concurrency) == (llm_server.url, "none", 3)
    llm_server.script(answer({"ok": False}))
    llm.structured([{"role": "user", "content": "hi"}], Ok, operation="t")
    assert llm_server.requests[0].headers["authorization"] == "Bearer sk-env"
    assert llm_from_env({}) is None


def test_local_spec_builds_without_loading_the_model() -> None:
    llm = llm_from_spec("local", env={})
    assert isinstance(llm, LocalLLM) and llm.model_id == "local:gemma3-270m"
    other = llm_from_spec("local:/models/x.gguf?n_threads=1&max_tokens=64", env={})
    assert isinstance(other, LocalLLM)
    assert (other.model, other.n_threads, other.default_max_tokens) == ("/models/x.gguf", 1, 64)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "non-empty"),
        ("claude:x", "unknown LLM provider"),
        ("openai:", "names no model"),
        ("openai:m@http://h/v1?colour=red", "unknown option 'colour'"),
        ("openai:m@http://h/v1?timeout=soon", "is not a valid float"),
        ("openai:m@http://h/v1?format=xml", "format must be one of"),
        ("local?n_threads=many", "is not a valid int"),
    ],
)
def test_bad_specs_raise_invalid_input(spec: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        llm_from_spec(spec, env={})


def test_importing_memq_llm_loads_no_backend() -> None:
    import subprocess
    import sys

    code = (
        "import sys, memq.llm as m; "
        "assert 'openai' not in sys.modules and 'llama_cpp' not in sys.modules, 'backend imported'; "
        "assert m.OpenAICompatLLM.__name__ == 'OpenAICompatLLM' and m.LocalLLM.__name__ == 'LocalLLM'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
