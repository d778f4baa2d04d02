"""An embedder for any OpenAI-compatible ``POST /embeddings`` endpoint.

Works with OpenAI itself and with the many servers that copy its API (vLLM, Ollama, LiteLLM,
text-embeddings-inference, LM Studio, ...). Inputs are sent in batches; 408/429/5xx responses and
connection errors are retried with exponential backoff; every response is validated (count,
``index`` order, vector length) before it is normalised to unit length.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from memq._closing import Closing
from memq.embed.hashing import check_texts, l2_normalize_rows
from memq.errors import EmbeddingError, InvalidInputError

_RETRY_STATUS = frozenset({408, 409, 429})  # plus every 5xx
_EXCERPT_CHARS = 300


class OpenAICompatibleEmbedder(Closing):
    """Embeddings from an OpenAI-compatible HTTP API.

    ``dim`` must be the model's output length (it is checked on every response). With
    ``request_dimensions=True`` the request also carries ``"dimensions": dim``, for models that
    can shorten their output (OpenAI text-embedding-3-*). ``api_key`` falls back to the
    ``OPENAI_API_KEY`` environment variable; without either, no Authorization header is sent
    (fine for local servers). ``max_retries`` counts retries, so a request is tried at most
    ``max_retries + 1`` times; the delay before retry ``k`` (0-based) is about
    ``backoff * 2**k`` seconds, capped at ``max_backoff``, or the server's ``Retry-After``.
    """

    def __init__(
        self,
        model: str,
        dim: int,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        batch_size: int = 128,
        timeout: float = 30,
        max_retries: int = 3,
        *,
        request_dimensions: bool = False,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if not model:
            raise InvalidInputError("model must be a non-empty string")
        if dim < 1:
            raise InvalidInputError(f"dim must be >= 1, got {dim}")
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise InvalidInputError(f"timeout must be > 0, got {timeout}")
        if backoff < 0 or max_backoff < 0:
            raise InvalidInputError("backoff and max_backoff must be >= 0")
        self.model = model
        self.dim = dim
        self.model_id = f"openai-compat:{model}"
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/embeddings"
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self.request_dimensions = request_dimensions
        self.backoff = backoff
        self.max_backoff = max_backoff
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._api_key = key or None
        request_headers = {"Content-Type": "application/json", **(headers or {})}
        if self._api_key:
            request_headers["Authorization"] = f"Bearer {self._api_key}"
        self._client = httpx.Client(timeout=timeout, headers=request_headers)
        self._closed = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAICompatibleEmbedder(model={self.model!r}, dim={self.dim}, base_url={self.base_url!r})"

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._client.close()
                self._closed = True

    # -- Embedder --------------------------------------------------------------------------------

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        items = check_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [
            self._embed_batch(items[start : start + self.batch_size])
            for start in range(0, len(items), self.batch_size)
        ]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise InvalidInputError(f"query must be a str, got {type(text).__name__}")
        return self._embed_batch([text])[0]

    # -- internals -------------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _excerpt(self, response: httpx.Response) -> str:
        try:
            body = response.text
        except Exception:  # undecodable body
            body = repr(response.content[:_EXCERPT_CHARS])
        body = " ".join(body.split())
        if len(body) > _EXCERPT_CHARS:
            body = body[:_EXCERPT_CHARS] + "..."
        return self._redact(body) or "<empty body>"

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = response.headers.get("Retry-After")
            if retry_after:
                try:
                    return min(max(float(retry_after), 0.0), self.max_backoff)
                except ValueError:
                    pass
        base = min(self.backoff * (2**attempt), self.max_backoff)
        return base * random.uniform(0.75, 1.0)

    def _post(self, payload: dict[str, Any]) -> httpx.Response:
        if self._closed:
            raise EmbeddingError("this OpenAICompatibleEmbedder has been closed")
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            response: httpx.Response | None = None
            try:
                response = self._client.post(self.url, json=payload)
            except httpx.TransportError as exc:  # connect/read timeouts, refused, reset, ...
                last_problem = self._redact(f"{type(exc).__name__}: {exc}")
            else:
                status = response.status_code
                if status < 400:
                    return response
                last_problem = f"HTTP {status}: {self._excerpt(response)}"
                if status not in _RETRY_STATUS and status < 500:
                    hint = " (check the API key)" if status in (401, 403) else ""
                    raise EmbeddingError(f"embedding request to {self.url} failed{hint}: {last_problem}")
            if attempt < self.max_retries:
                time.sleep(self._delay(attempt, response))
        raise EmbeddingError(
            f"embedding request to {self.url} failed after {self.max_retries + 1} attempt(s): {last_problem}"
        )

    def _embed_batch(self, batch: list[str]) -> np.ndarray:
        payload: dict[str, Any] = {"model": self.model, "input": batch}
        if self.request_dimensions:
            payload["dimensions"] = self.dim
        response = self._post(payload)
        try:
            body = response.json()
        except ValueError:
            raise EmbeddingError(
                f"embedding response from {self.url} is not JSON: {self._excerpt(response)}"
            ) from None
        return self._parse(body, len(batch))

    def _parse(self, body: Any, expected: int) -> np.ndarray:
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            shown = self._redact(" ".join(str(body).split()))[:_EXCERPT_CHARS]
            raise EmbeddingError(f"embedding response from {self.url} has no 'data' list: {shown}")
        if len(data) != expected:
            raise EmbeddingError(
                f"embedding response from {self.url} has {len(data)} embeddings for {expected} inputs "
                f"(model {self.model!r})"
            )
        if not all(isinstance(item, dict) and "embedding" in item for item in data):
            raise EmbeddingError(f"embedding response from {self.url} has items without an 'embedding'")
        if all("index" in item for item in data):
            indices = [item["index"] for item in data]
            if not all(type(i) is int for i in indices) or sorted(indices) != list(range(expected)):
                raise EmbeddingError(
                    f"embedding response from {self.url} has indices {indices[:20]!r}, "
                    f"expected each of 0..{expected - 1} once"
                )
            data = sorted(data, key=lambda item: item["index"])
        elif any("index" in item for item in data):
            raise EmbeddingError(f"embedding response from {self.url} has 'index' on some items only")
        # else: no indices at all (some servers omit them); trust the order.
        rows: list[list[float]] = []
        for position, item in enumerate(data):
            vector = item["embedding"]
            if isinstance(vector, str):
                raise EmbeddingError(
                    f"embedding {position} from {self.url} is a string (base64?); expected a list of floats"
                )
            if not isinstance(vector, list) or len(vector) != self.dim:
                got = f"length {len(vector)}" if isinstance(vector, list) else type(vector).__name__
                hint = "" if self.request_dimensions else " (or pass request_dimensions=True)"
                raise EmbeddingError(
                    f"embedding {position} from model {self.model!r} has {got}, expected {self.dim}; "
                    f"set dim to the model's output size{hint}"
                )
            rows.append(vector)
        try:
            matrix = np.asarray(rows, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(
                f"embedding response from {self.url} has non-numeric values: {exc}"
            ) from None
        return l2_normalize_rows(matrix, source=f"model {self.model!r} at {self.url}")
