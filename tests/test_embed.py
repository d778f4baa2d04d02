"""Tests for memq.embed: the real MiniLM model (the ONNX default, and sentence-transformers on torch),
a real local HTTP server, and the cache. ONNX-specific checks (agreement with torch, int8, threads,
missing extras): tests/test_embed_onnx.py.

No mocks: the OpenAI-compatible client talks to a ThreadingHTTPServer on 127.0.0.1 that this module
starts, and the cache wraps real embedders (counted by a thin wrapper or the server's request log).
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memq.embed import (
    CachedEmbedder,
    Embedder,
    HashingEmbedder,
    OnnxMiniLMEmbedder,
    OpenAICompatibleEmbedder,
    SentenceTransformerEmbedder,
    default_embedder,
)
from memq.embed.minilm import default_model_path
from memq.errors import EmbeddingError, InvalidInputError

# ---------------------------------------------------------------------------------------------
# MiniLM (real weights, loaded once per module): the default (ONNX fp32) and the torch one
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_minilm() -> Embedder:
    return default_embedder()


@pytest.fixture(scope="module")
def torch_minilm() -> Embedder:
    return SentenceTransformerEmbedder()


@pytest.fixture(params=["onnx", "torch"])
def minilm(request: pytest.FixtureRequest) -> Embedder:
    """Each generic MiniLM test runs on both runtimes."""
    return request.getfixturevalue(f"{request.param}_minilm")


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_minilm_dim_known_without_loading() -> None:
    onnx = OnnxMiniLMEmbedder()
    assert (onnx.dim, onnx.model_id) == (384, "sentence-transformers/all-MiniLM-L6-v2")
    assert not onnx.loaded and isinstance(onnx, Embedder)
    fresh = SentenceTransformerEmbedder()
    assert fresh.dim == 384
    assert fresh.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert not fresh.loaded
    # A custom path: the dimension is read from the folder's config, still without loading.
    custom = SentenceTransformerEmbedder(model_path=default_model_path(), model_id="my-minilm")
    assert custom.dim == 384 and custom.model_id == "my-minilm"
    assert not custom.loaded
    assert isinstance(fresh, Embedder)


def test_minilm_bad_arguments() -> None:
    with pytest.raises(InvalidInputError):
        SentenceTransformerEmbedder(batch_size=0)
    with pytest.raises(InvalidInputError):
        SentenceTransformerEmbedder(threads=0)


def test_minilm_missing_model_path_is_embedding_error(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="could not load"):
        SentenceTransformerEmbedder(model_path=str(tmp_path / "nope"))


def test_default_embedder_is_shared(onnx_minilm: Embedder) -> None:
    assert default_embedder() is onnx_minilm
    assert isinstance(onnx_minilm, OnnxMiniLMEmbedder)
    assert onnx_minilm.precision == "fp32" and onnx_minilm.threads == 1


def test_minilm_query_unit_norm_float32(minilm: Embedder) -> None:
    vec = minilm.embed_query("Where does the user live?")
    assert vec.shape == (384,)
    assert vec.dtype == np.float32
    assert abs(float(np.linalg.norm(vec)) - 1.0) < 1e-5
    docs = minilm.embed_documents(["one", "two words", "a somewhat longer third document"])
    assert docs.shape == (3, 384) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)


def test_minilm_semantics(minilm: Embedder) -> None:
    cat, kitten, tax = minilm.embed_documents(
        [
            "The cat is sleeping on the sofa.",
            "A kitten naps on the couch.",
            "Corporate tax returns are due at the end of the quarter.",
        ]
    )
    assert _cos(cat, kitten) > _cos(cat, tax) + 0.2
    query = minilm.embed_query("what pet does the user have?")
    pet, weather = minilm.embed_documents(["The user owns a golden retriever.", "It rained in Oslo today."])
    assert _cos(query, pet) > _cos(query, weather)


def test_minilm_batch_equals_one_by_one(minilm: Embedder) -> None:
    texts = [
        "short",
        "a much longer sentence about the weather in Paris during the spring of 2021, with more words",
        "medium length text here",
        "",
        "unicode: café, naïve, 日本語",
    ]
    batch = minilm.embed_documents(texts)
    single = np.stack([minilm.embed_documents([t])[0] for t in texts])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    # No prefixes configured: a query embeds like a one-document batch.
    np.testing.assert_allclose(minilm.embed_query(texts[0]), batch[0], atol=1e-5)


def test_minilm_empty_and_bad_input(minilm: Embedder) -> None:
    empty = minilm.embed_documents([])
    assert empty.shape == (0, 384) and empty.dtype == np.float32
    with pytest.raises(InvalidInputError):
        minilm.embed_documents("a bare string")
    with pytest.raises(InvalidInputError):
        minilm.embed_documents(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError):
        minilm.embed_query(None)  # type: ignore[arg-type]


def test_minilm_thread_safe(minilm: Embedder) -> None:
    texts = [f"memory number {i} about project deadlines" for i in range(16)]
    expected = minilm.embed_documents(texts)
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = minilm.embed_query(texts[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_allclose(np.stack([results[i] for i in range(len(texts))]), expected, atol=1e-5)


def test_minilm_prefixes_change_the_vector() -> None:
    plain = SentenceTransformerEmbedder()
    prefixed = SentenceTransformerEmbedder(query_prefix="query: ", document_prefix="passage: ")
    text = "favourite programming language"
    np.testing.assert_allclose(prefixed.embed_query(text), plain.embed_query("query: " + text), atol=1e-5)
    np.testing.assert_allclose(
        prefixed.embed_documents([text])[0], plain.embed_documents(["passage: " + text])[0], atol=1e-5
    )


# ---------------------------------------------------------------------------------------------
# A real OpenAI-compatible HTTP server
# ---------------------------------------------------------------------------------------------

SERVER_DIM = 16
SECRET = "sk-test-SECRET-do-not-leak-123"


def expected_vectors(texts: Sequence[str], dim: int = SERVER_DIM) -> np.ndarray:
    """What the server's vectors look like after the client normalises them."""
    return HashingEmbedder(dim).embed_documents(list(texts))


@dataclass
class ServerState:
    script: list[str] = field(default_factory=list)  # one action per request; then "ok"
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.script.clear()
            self.requests.clear()


class FakeEmbeddingsHandler(BaseHTTPRequestHandler):
    state: ServerState  # set on a per-server subclass

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        payload = json.loads(self.rfile.read(length))
        state = self.state
        with state.lock:
            state.requests.append(
                {"path": self.path, "json": payload, "auth": self.headers.get("Authorization")}
            )
            action = state.script.pop(0) if state.script else "ok"
        if self.path != "/v1/embeddings":
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        if action == "500":
            self._send(500, {"error": {"message": "internal boom"}})
            return
        if action == "503":
            self._send(503, "upstream unavailable")
            return
        if action == "429":
            self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"})
            return
        if action == "401":  # echo the credentials back, as some proxies do
            self._send(401, {"error": {"message": f"invalid key {self.headers.get('Authorization')}"}})
            return
        if action == "400":
            self._send(400, {"error": {"message": "bad input"}})
            return
        if action == "notjson":
            self._send(200, "<html>gateway</html>")
            return
        texts: list[str] = payload["input"]
        dim = int(payload.get("dimensions", SERVER_DIM))
        if action == "wrong_dim":
            dim += 1
        vectors = HashingEmbedder(dim).embed_documents(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) * 3.0 for x in vec]}
            for i, vec in enumerate(vectors)
        ]
        if action == "wrong_count":
            data = data[:-1]
        random.Random(len(texts)).shuffle(data)  # the API does not promise order
        self._send(200, {"object": "list", "data": data, "model": payload["model"]})


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    handler = type("Handler", (FakeEmbeddingsHandler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host}:{port}/v1", state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def api(server: tuple[str, ServerState]) -> Iterator[tuple[OpenAICompatibleEmbedder, ServerState]]:
    base_url, state = server
    state.reset()
    embedder = OpenAICompatibleEmbedder(
        "fake-embed", SERVER_DIM, base_url=base_url, api_key=SECRET, backoff=0.0, timeout=5
    )
    try:
        yield embedder, state
    finally:
        embedder.close()


def test_openai_basic_roundtrip_and_shuffled_indices(
    api: tuple[OpenAICompatibleEmbedder, ServerState],
) -> None:
    embedder, state = api
    assert embedder.model_id == "openai-compat:fake-embed" and embedder.dim == SERVER_DIM
    assert isinstance(embedder, Embedder)
    texts = [f"text number {i}" for i in range(7)]
    got = embedder.embed_documents(texts)
    assert got.shape == (7, SERVER_DIM) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected_vectors(texts), atol=1e-6)  # sorted back by index
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)  # server sent norm 3
    (request,) = state.requests
    assert request["json"] == {"model": "fake-embed", "input": texts}  # no "dimensions" by default
    assert request["auth"] == f"Bearer {SECRET}"
    query = embedder.embed_query("hello")
    assert query.shape == (SERVER_DIM,)
    np.testing.assert_allclose(query, expected_vectors(["hello"])[0], atol=1e-6)


def test_openai_request_dimensions_and_env_key(
    server: tuple[str, ServerState], monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url, state = server
    state.reset()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    with OpenAICompatibleEmbedder("m", 8, base_url=base_url + "/", request_dimensions=True) as embedder:
        got = embedder.embed_documents(["a", "b"])
    np.testing.assert_allclose(got, expected_vectors(["a", "b"], dim=8), atol=1e-6)
    assert state.requests[0]["json"]["dimensions"] == 8
    assert state.requests[0]["auth"] == "Bearer sk-from-env"
    monkeypatch.delenv("OPENAI_API_KEY")
    with OpenAICompatibleEmbedder("m", SERVER_DIM, base_url=base_url) as embedder:
        embedder.embed_query("x")
    assert state.requests[-1]["auth"] is None  # no key at all: no header


def test_openai_batches(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    texts = [f"document {i}" for i in range(300)]
    got = embedder.embed_documents(texts)
    assert len(state.requests) == 3
    assert [len(r["json"]["input"]) for r in state.requests] == [128, 128, 44]
    np.testing.assert_allclose(got, expected_vectors(texts), atol=1e-6)


def test_openai_empty_list_sends_nothing(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    assert embedder.embed_documents([]).shape == (0, SERVER_DIM)
    assert state.requests == []
    with pytest.raises(InvalidInputError):
        embedder.embed_documents("not a list")


@pytest.mark.parametrize("failure", ["500", "503", "429"])
def test_openai_retries_then_succeeds(
    api: tuple[OpenAICompatibleEmbedder, ServerState], failure: str
) -> None:
    embedder, state = api
    state.script.extend([failure])
    got = embedder.embed_documents(["retry me", "and me"])
    assert len(state.requests) == 2
    np.testing.assert_allclose(got, expected_vectors(["retry me", "and me"]), atol=1e-6)


def test_openai_gives_up_after_max_retries(server: tuple[str, ServerState]) -> None:
    base_url, state = server
    state.reset()
    state.script.extend(["503"] * 10)
    with (
        OpenAICompatibleEmbedder("m", SERVER_DIM, base_url=base_url, max_retries=2, backoff=0.0) as embedder,
        pytest.raises(EmbeddingError, match=r"after 3 attempt\(s\).*HTTP 503.*upstream unavailable"),
    ):
        embedder.embed_query("x")
    assert len(state.requests) == 3


def test_openai_wrong_dimension(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    state.script.append("wrong_dim")
    with pytest.raises(EmbeddingError, match=rf"length {SERVER_DIM + 1}, expected {SERVER_DIM}"):
        embedder.embed_documents(["a", "b"])
    assert len(state.requests) == 1  # a bad payload is not retried


def test_openai_wrong_count(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    state.script.append("wrong_count")
    with pytest.raises(EmbeddingError, match="2 embeddings for 3 inputs"):
        embedder.embed_documents(["a", "b", "c"])


def test_openai_401_does_not_leak_key(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    state.script.append("401")
    with pytest.raises(EmbeddingError) as info:
        embedder.embed_query("secret stuff")
    message = str(info.value)
    assert "401" in message and "API key" in message
    assert "invalid key" in message  # the body excerpt is there...
    assert SECRET not in message and SECRET not in repr(info.value)  # ...with the key redacted
    assert SECRET not in repr(embedder)
    assert len(state.requests) == 1  # 4xx (other than 408/409/429) is not retried


def test_openai_400_and_non_json(api: tuple[OpenAICompatibleEmbedder, ServerState]) -> None:
    embedder, state = api
    state.script.append("400")
    with pytest.raises(EmbeddingError, match=r"HTTP 400.*bad input"):
        embedder.embed_query("x")
    state.script.append("notjson")
    with pytest.raises(EmbeddingError, match=r"not JSON.*gateway"):
        embedder.embed_query("x")


def test_openai_connection_refused_is_embedding_error() -> None:
    with socket.socket() as sock:  # find a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    embedder = OpenAICompatibleEmbedder(
        "m", 4, base_url=f"http://127.0.0.1:{port}/v1", api_key=SECRET, max_retries=1, backoff=0.0, timeout=2
    )
    with embedder, pytest.raises(EmbeddingError, match=r"after 2 attempt\(s\): ConnectError") as info:
        embedder.embed_query("x")
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------------------------------------
# CachedEmbedder
# ---------------------------------------------------------------------------------------------


class CountingEmbedder:
    """A real embedder (feature hashing) that records every call it gets."""

    def __init__(self, dim: int = 32) -> None:
        self._inner = HashingEmbedder(dim)
        self.model_id = self._inner.model_id
        self.dim = dim
        self.doc_calls: list[list[str]] = []
        self.query_calls: list[str] = []

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.doc_calls.append(list(texts))
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        self.query_calls.append(text)
        return self._inner.embed_query(text)


def test_cache_hits_misses_and_duplicates() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner)
    assert cache.model_id == inner.model_id and cache.dim == inner.dim
    assert isinstance(cache, Embedder)

    got = cache.embed_documents(["a", "b", "a"])
    assert inner.doc_calls == [["a", "b"]]  # each distinct miss once, one batch
    assert (cache.misses, cache.hits) == (2, 1)
    np.testing.assert_array_equal(got, HashingEmbedder(32).embed_documents(["a", "b", "a"]))

    cache.embed_documents(["b", "c", "c", "a"])
    assert inner.doc_calls[-1] == ["c"]
    assert (cache.misses, cache.hits) == (3, 4)

    cache.embed_documents(["a", "b", "c"])
    assert len(inner.doc_calls) == 2  # all hits: the inner embedder is not called
    assert (cache.misses, cache.hits) == (3, 7)
    assert cache.embed_documents([]).shape == (0, 32)


def test_cache_preserves_order() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner)
    texts = [f"t{i}" for i in range(50)]
    cache.embed_documents(texts[::3])  # warm a third of them
    mixed = texts[:]
    random.Random(7).shuffle(mixed)
    mixed += mixed[:10]  # and duplicates
    np.testing.assert_array_equal(cache.embed_documents(mixed), HashingEmbedder(32).embed_documents(mixed))
    assert sorted(inner.doc_calls[-1]) == sorted(t for t in texts if t not in texts[::3])


def test_cache_queries_are_keyed_apart_from_documents() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner)
    cache.embed_documents(["hello"])
    q = cache.embed_query("hello")
    assert inner.query_calls == ["hello"]  # a doc vector is not reused for a query
    assert q.shape == (32,)
    cache.embed_query("hello")
    assert inner.query_calls == ["hello"] and cache.hits == 1


def test_cache_returns_copies() -> None:
    cache = CachedEmbedder(CountingEmbedder())
    first = cache.embed_documents(["x"])
    first[:] = 0.0
    q = cache.embed_query("y")
    q[:] = 0.0
    assert float(np.linalg.norm(cache.embed_documents(["x"])[0])) == pytest.approx(1.0, abs=1e-6)
    assert float(np.linalg.norm(cache.embed_query("y"))) == pytest.approx(1.0, abs=1e-6)


def test_cache_lru_eviction() -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, max_entries=2)
    cache.embed_documents(["a"])
    cache.embed_documents(["b"])
    cache.embed_documents(["a"])  # touch a: b is now the oldest
    cache.embed_documents(["c"])  # evicts b
    assert len(cache) == 2
    cache.embed_documents(["a"])
    assert inner.doc_calls == [["a"], ["b"], ["c"]]
    cache.embed_documents(["b"])
    assert inner.doc_calls[-1] == ["b"]


def test_cache_rejects_bad_inner_output() -> None:
    class Broken(CountingEmbedder):
        def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
            return super().embed_documents(texts)[:-1]

    with pytest.raises(EmbeddingError, match="shape"):
        CachedEmbedder(Broken()).embed_documents(["a", "b"])


def test_cache_persists_across_instances(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base_url, state = server
    state.reset()
    path = tmp_path / "sub" / "embeddings.sqlite"
    texts = [f"persistent text {i}" for i in range(20)]

    with (
        OpenAICompatibleEmbedder("fake-embed", SERVER_DIM, base_url=base_url, backoff=0.0) as inner,
        CachedEmbedder(inner, path=str(path)) as cache,
    ):
        first = cache.embed_documents(texts)
        first_query = cache.embed_query("a question")
    assert len(state.requests) == 2 and path.exists()

    state.reset()
    with (
        OpenAICompatibleEmbedder("fake-embed", SERVER_DIM, base_url=base_url, backoff=0.0) as inner,
        CachedEmbedder(inner, path=path) as cache,
    ):
        second = cache.embed_documents(texts)
        second_query = cache.embed_query("a question")
        assert (cache.hits, cache.misses) == (21, 0)
    assert state.requests == []  # zero calls to the inner embedder
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first_query, second_query)

    # Another model on the same file shares nothing with the first.
    with (
        OpenAICompatibleEmbedder("other-model", SERVER_DIM, base_url=base_url, backoff=0.0) as inner,
        CachedEmbedder(inner, path=path) as cache,
    ):
        cache.embed_documents(texts[:3])
        assert cache.misses == 3
    assert len(state.requests) == 1


def test_cache_persistent_without_memory(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    with CachedEmbedder(inner, max_entries=0, path=tmp_path / "c.sqlite") as cache:
        cache.embed_documents(["a", "b"])
        assert len(cache) == 0
        cache.embed_documents(["a", "b", "a"])  # served from disk
        assert inner.doc_calls == [["a", "b"]]
        assert (cache.hits, cache.misses) == (3, 2)


def test_cache_with_minilm(minilm: Embedder, tmp_path: Path) -> None:
    cache = CachedEmbedder(minilm, path=tmp_path / "minilm.sqlite")
    texts = ["the user likes green tea", "deploys happen on Fridays"]
    np.testing.assert_allclose(cache.embed_documents(texts), minilm.embed_documents(texts), atol=1e-6)
    np.testing.assert_allclose(cache.embed_query(texts[0]), minilm.embed_query(texts[0]), atol=1e-6)
    cache.close()
    again = CachedEmbedder(minilm, path=tmp_path / "minilm.sqlite")
    again.embed_documents(texts)
    assert (again.hits, again.misses) == (2, 0)


def test_hashing_embedder_is_deterministic_unit_norm() -> None:
    e = HashingEmbedder(64)
    vecs = e.embed_documents(["", "!!!", "same words", "same words"])
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(vecs[2], vecs[3])
    assert _cos(e.embed_query("green tea please"), e.embed_query("green tea")) > _cos(
        e.embed_query("green tea please"), e.embed_query("kernel panic")
    )
