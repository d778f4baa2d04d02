"""Build an LLM from a one-line spec or from the environment.

Specs::

    openai:gpt-4o-mini                         # OpenAI (or $OPENAI_BASE_URL)
    openai:llama3.2:3b@http://localhost:11434/v1   # any OpenAI-compatible server (Ollama here)
    openai:Qwen/Qwen2.5-7B-Instruct@http://gpu:8000/v1?format=json_schema&timeout=30
    local                                      # the embedded Gemma 3 270M
    local:gemma3-270m
    local:/models/other-chat-model.gguf?n_threads=2

Query options (``?key=value&...``): for ``openai`` — ``format`` (auto | json_schema | json_object |
none), ``timeout``, ``retries``, ``transport_retries``, ``concurrency``, ``max_tokens``; for ``local``
— ``n_threads``, ``n_ctx``, ``retries``, ``max_tokens``.

Environment (:func:`llm_from_env`): ``MEMQ_LLM`` (a spec), ``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
and ``MEMQ_LLM_FORMAT`` / ``MEMQ_LLM_TIMEOUT`` / ``MEMQ_LLM_CONCURRENCY`` as defaults for options the
spec does not set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from memq.errors import InvalidInputError
from memq.llm.base import LLM

_OPENAI_OPTS = {
    "format": ("response_format", str),
    "timeout": ("timeout", float),
    "retries": ("retries", int),
    "transport_retries": ("transport_retries", int),
    "concurrency": ("max_concurrency", int),
    "max_tokens": ("default_max_tokens", int),
}
_LOCAL_OPTS = {
    "n_threads": ("n_threads", int),
    "n_ctx": ("n_ctx", int),
    "retries": ("retries", int),
    "max_tokens": ("default_max_tokens", int),
}
_ENV_DEFAULTS = {
    "format": "MEMQ_LLM_FORMAT",
    "timeout": "MEMQ_LLM_TIMEOUT",
    "concurrency": "MEMQ_LLM_CONCURRENCY",
}


def _options(query: str, allowed: Mapping[str, tuple[str, type]], spec: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise InvalidInputError(f"unknown option {key!r} in LLM spec {spec!r}; known: {sorted(allowed)}")
        name, cast = allowed[key]
        try:
            out[name] = cast(raw)
        except ValueError as exc:
            raise InvalidInputError(
                f"option {key}={raw!r} in LLM spec {spec!r} is not a valid {cast.__name__}"
            ) from exc
    return out


def llm_from_spec(spec: str, *, env: Mapping[str, str] | None = None, **overrides: Any) -> LLM:
    """An LLM for ``spec`` (see the module doc); ``overrides`` are constructor keyword arguments."""
    env = os.environ if env is None else env
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidInputError(
            "an LLM spec must be a non-empty string such as 'openai:gpt-4o-mini' or 'local'"
        )
    spec = spec.strip()
    match = re.match(r"([A-Za-z]+)(?::|(?=\?)|$)(.*)", spec, re.DOTALL)
    provider, rest = (match.group(1).lower(), match.group(2)) if match else (spec, "")
    if provider == "local":
        from memq.llm.local import DEFAULT_MODEL, LocalLLM

        target, _, query = rest.partition("?")
        kwargs = _options(query, _LOCAL_OPTS, spec)
        kwargs.update(overrides)
        return LocalLLM(target or DEFAULT_MODEL, **kwargs)
    if provider == "openai":
        body, _, query = rest.partition("?")
        model, base_url = body, None
        at = body.rfind("@")
        if at > 0 and body[at + 1 :].startswith(("http://", "https://")):
            model, base_url = body[:at], body[at + 1 :]
        if not model:
            raise InvalidInputError(f"LLM spec {spec!r} names no model: use 'openai:MODEL[@BASE_URL]'")
        opts = dict(parse_qsl(query, keep_blank_values=True))
        for key, var in _ENV_DEFAULTS.items():
            if key not in opts and env.get(var):
                opts[key] = env[var]
        kwargs = _options("&".join(f"{k}={v}" for k, v in opts.items()), _OPENAI_OPTS, spec)
        kwargs.update(overrides)
        from memq.llm.client import FORMATS, OpenAICompatLLM

        if kwargs.get("response_format", "auto") not in FORMATS:
            raise InvalidInputError(f"format must be one of {FORMATS} in LLM spec {spec!r}")
        kwargs.setdefault("base_url", base_url or env.get("OPENAI_BASE_URL") or None)
        kwargs.setdefault("api_key", env.get("OPENAI_API_KEY") or None)
        return OpenAICompatLLM(model, **kwargs)
    raise InvalidInputError(
        f"unknown LLM provider {provider!r} in {spec!r}: use 'openai:MODEL[@BASE_URL]' or 'local[:MODEL]'"
    )


def llm_from_env(env: Mapping[str, str] | None = None, **overrides: Any) -> LLM | None:
    """The LLM ``$MEMQ_LLM`` names, or ``None`` when it is unset."""
    env = os.environ if env is None else env
    spec = (env.get("MEMQ_LLM") or "").strip()
    return llm_from_spec(spec, env=env, **overrides) if spec else None
