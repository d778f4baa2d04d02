"""Bad input, limits and HTTP-level rules of the REST API: every refusal is a clear 4xx problem+json.

In-process (FastAPI's TestClient) on a real SQLite file with the hashing embedder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient

from memq.embed import HashingEmbedder
from memq.memory import Memory
from memq.server.app import create_app
from memq.server.keys import open_key_store
from memq.server.settings import ServerSettings

PROBLEM = "application/problem+json"
MAX_BODY = 64 * 1024


def problem(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["code"] == code and body["status"] == status and body["detail"], body
    return body


class Api:
    def __init__(self, tmp: Path, **settings: object) -> None:
        self.db = str(tmp / "memq.db")
        self.keys = open_key_store(self.db)
        self.key = self.keys.create("acme", ["read", "write"])[1]
        self.other = self.keys.create("globex", ["read", "write"])[1]
        self.memory = Memory(self.db, embedder=HashingEmbedder())
        options = {"db": self.db, "rate_per_s": 0, "max_body_bytes": MAX_BODY, **settings}
        self.app = create_app(
            ServerSettings(**options), memory=self.memory, key_store=self.keys, mount_optional=False
        )
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def close(self) -> None:
        self.client.close()
        self.memory.close()
        self.keys.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    yield a
    a.close()


def test_oversized_body_by_content_length(api: Api) -> None:
    body = b'{"text": "' + b"x" * MAX_BODY + b'"}'
    r = api.client.post(
        "/v1/memories", content=body, headers={**api.headers, "content-type": "application/json"}
    )
    assert "65,536 bytes" in problem(r, 413, "payload_too_large")["detail"]
    assert api.memory.list(scope="acme").records == []


def test_oversized_chunked_body(api: Api) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}'

    r = api.client.post(
        "/v1/memories", content=chunks(), headers={**api.headers, "content-type": "application/json"}
    )
    problem(r, 413, "payload_too_large")
    assert api.memory.list(scope="acme").records == []


def test_bad_utf8_and_bad_json(api: Api) -> None:
    h = {**api.headers, "content-type": "application/json"}
    problem(
        api.client.post("/v1/memories", content=b'{"text": "\xff\xfe caf\xe9"}', headers=h),
        400,
        "invalid_body",
    )
    body = problem(api.client.post("/v1/memories", content=b'{"text": ', headers=h), 422, "invalid_request")
    assert body["errors"][0]["type"] == "json_invalid"
    problem(
        api.client.post("/v1/memories", content=b'["not", "an", "object"]', headers=h), 422, "invalid_request"
    )


def test_unknown_fields(api: Api) -> None:
    body = problem(
        api.client.post("/v1/memories", json={"text": "x", "colour": "red"}, headers=api.headers),
        422,
        "invalid_request",
    )
    assert body["errors"] == [
        {"loc": ["body", "colour"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    problem(
        api.client.post("/v1/search", json={"query": "x", "topk": 3}, headers=api.headers),
        422,
        "invalid_request",
    )
    problem(
        api.client.post("/v1/retrievals/x/feedback", json={"reward": 1, "bonus": 2}, headers=api.headers),
        422,
        "invalid_request",
    )


@pytest.mark.parametrize("k", [0, -1, 1001, 10**12])
def test_k_out_of_range(api: Api, k: int) -> None:
    body = problem(
        api.client.post("/v1/search", json={"query": "x", "k": k}, headers=api.headers),
        422,
        "invalid_request",
    )
    assert body["errors"][0]["loc"] == ["body", "k"]


@pytest.mark.parametrize("limit", ["-1", "0", "1001", "ten"])
def test_limit_out_of_range(api: Api, limit: str) -> None:
    body = problem(
        api.client.get("/v1/memories", params={"limit": limit}, headers=api.headers), 422, "invalid_request"
    )
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_no_coercion_of_json_types(api: Api) -> None:
    h = api.headers
    problem(api.client.post("/v1/memories", json={"text": 42}, headers=h), 422, "invalid_request")
    problem(
        api.client.post("/v1/memories", json={"text": "x", "valid_from": 0}, headers=h),
        422,
        "invalid_request",
    )
    problem(
        api.client.post("/v1/search", json={"query": "x", "explain": "yes"}, headers=h),
        422,
        "invalid_request",
    )
    problem(api.client.get("/v1/memories", params={"as_of": "0.5"}, headers=h), 422, "invalid_request")
    assert (
        api.client.get("/v1/memories", params={"as_of": "2024-01-01T00:00:00Z"}, headers=h).status_code == 200
    )


def test_text_rules(api: Api) -> None:
    h = api.headers
    problem(api.client.post("/v1/memories", json={"text": ""}, headers=h), 422, "invalid_request")
    problem(api.client.post("/v1/memories", json={"text": "   "}, headers=h), 400, "empty_text")
    problem(api.client.post("/v1/memories", json={"text": "a\u0000b"}, headers=h), 400, "invalid_input")
    problem(api.client.post("/v1/memories", json={"text": "x" * 32_001}, headers=h), 422, "invalid_request")
    problem(api.client.post("/v1/search", json={"query": "\n\t"}, headers=h), 400, "empty_text")
    r = api.client.post(
        "/v1/memories",
        json={"text": "x", "valid_from": "2024-02-01T00:00:00Z", "valid_to": "2024-01-01T00:00:00Z"},
        headers=h,
    )
    problem(r, 400, "invalid_input")
    assert api.memory.list(scope="acme").records == []


def test_nan_and_infinite_numbers(api: Api) -> None:
    h = {**api.headers, "content-type": "application/json"}
    problem(
        api.client.post("/v1/retrievals/x/feedback", content=b'{"reward": NaN}', headers=h),
        422,
        "invalid_request",
    )
    problem(
        api.client.post("/v1/retrievals/x/feedback", content=b'{"reward": Infinity}', headers=h),
        422,
        "invalid_request",
    )
    r = api.client.post("/v1/memories", content=b'{"text": "x", "metadata": {"score": NaN}}', headers=h)
    problem(r, 400, "invalid_input")


def test_a_batch_is_all_or_nothing(api: Api) -> None:
    r = api.client.post(
        "/v1/memories/batch", json={"items": [{"text": "fine"}, {"text": " "}]}, headers=api.headers
    )
    assert "item 1" in problem(r, 400, "empty_text")["detail"]
    assert api.memory.list(scope="acme").records == []
    problem(
        api.client.post("/v1/memories/batch", json={"items": []}, headers=api.headers), 422, "invalid_request"
    )
    many = {"items": [{"text": "a"}] * 1001}
    problem(api.client.post("/v1/memories/batch", json=many, headers=api.headers), 422, "invalid_request")


def test_bad_filters(api: Api) -> None:
    h = api.headers
    problem(api.client.get("/v1/memories", params={"filters": "{not json"}, headers=h), 400, "invalid_filter")
    problem(api.client.get("/v1/memories", params={"filters": "[1]"}, headers=h), 400, "invalid_filter")
    problem(
        api.client.post("/v1/search", json={"query": "x", "filters": {"colour": "red"}}, headers=h),
        400,
        "invalid_filter",
    )
    r = api.client.post(
        "/v1/search", json={"query": "x", "filters": {"metadata.n": {"between": [1, 2]}}}, headers=h
    )
    problem(r, 400, "invalid_filter")


def test_policy_rules(api: Api) -> None:
    h = api.headers
    problem(
        api.client.post("/v1/search", json={"query": "x", "policy": "oracle"}, headers=h),
        422,
        "invalid_request",
    )
    # a learner reranks whatever the recipe ranks: recipe options apply with a policy too
    r = api.client.post("/v1/search", json={"query": "x", "policy": "memrl", "mode": "lexical"}, headers=h)
    assert r.status_code == 200 and (r.json()["policy"], r.json()["learner"]) == ("lexical", "memrl")
    assert api.client.post("/v1/search", json={"query": "x", "policy": "memrl"}, headers=h).status_code == 200


def test_unknown_ids_and_routes(api: Api) -> None:
    h = api.headers
    problem(api.client.get("/v1/memories/" + "0" * 36, headers=h), 404, "not_found")
    problem(api.client.get("/v1/memories/" + "0" * 101, headers=h), 422, "invalid_request")
    problem(api.client.post("/v1/retrievals/nope/feedback", json={"reward": 1}, headers=h), 404, "not_found")
    problem(api.client.get("/v2/anything", headers=h), 404, "route_not_found")
    r = api.client.put("/v1/memories/abc", json={}, headers=h)
    problem(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "DELETE, GET, PATCH"
    problem(api.client.patch("/v1/memories/abc", json={"text": "y"}, headers=h), 404, "not_found")
    rid = api.client.post("/v1/memories", json={"text": "x"}, headers=h).json()["id"]
    problem(api.client.patch(f"/v1/memories/{rid}", json={}, headers=h), 400, "invalid_input")
    assert api.client.delete(f"/v1/memories/{rid}", headers=h).status_code == 204
    problem(api.client.patch(f"/v1/memories/{rid}", json={"text": "y"}, headers=h), 404, "not_found")


def test_feedback_rules(api: Api) -> None:
    h = api.headers
    api.client.post("/v1/memories", json={"text": "coffee in Berlin"}, headers=h)
    ret = api.client.post("/v1/search", json={"query": "coffee"}, headers=h).json()
    problem(
        api.client.post(
            f"/v1/retrievals/{ret['id']}/feedback", json={"reward": 1, "used": ["someone-else"]}, headers=h
        ),
        400,
        "invalid_input",
    )
    assert (
        api.client.post(f"/v1/retrievals/{ret['id']}/feedback", json={"reward": 1}, headers=h).status_code
        == 200
    )
    problem(
        api.client.post(f"/v1/retrievals/{ret['id']}/feedback", json={"reward": 1}, headers=h),
        409,
        "conflict",
    )
    r = api.client.post(
        f"/v1/retrievals/{ret['id']}/feedback", json={"reward": 0.5, "accumulate": True}, headers=h
    )
    assert r.status_code == 200 and r.json()["count"] == 2


def test_rate_limit(tmp_path: Path) -> None:
    api = Api(tmp_path, rate_per_s=0.5, rate_burst=3)
    try:
        for _ in range(3):
            assert api.client.get("/v1/whoami", headers=api.headers).status_code == 200
        r = api.client.get("/v1/whoami", headers=api.headers)
        problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) in (1, 2)
        # the bucket is per key: another key is not held back
        assert (
            api.client.get("/v1/whoami", headers={"Authorization": f"Bearer {api.other}"}).status_code == 200
        )
        # health checks are not rate limited
        assert api.client.get("/healthz").status_code == 200
    finally:
        api.close()


def test_cors_is_off_by_default(api: Api) -> None:
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    r = api.client.options("/v1/search", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = api.client.get("/v1/whoami", headers={**api.headers, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


def test_cors_when_enabled(tmp_path: Path) -> None:
    api = Api(tmp_path, cors_origins=["https://app.example"])
    try:
        ok = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        r = api.client.options("/v1/search", headers=ok)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://app.example"
        r = api.client.options("/v1/search", headers={**ok, "Origin": "https://evil.example"})
        assert r.headers.get("access-control-allow-origin") != "https://evil.example"
    finally:
        api.close()


def test_dev_mode_binds_one_tenant_for_loopback_only(tmp_path: Path) -> None:
    api = Api(tmp_path, auth=False, dev_tenant="dev")
    try:
        r = api.client.post("/v1/memories", json={"text": "no key needed"})
        assert r.status_code == 201 and r.json()["scope"]["tenant"] == "dev"
        assert api.client.get("/v1/whoami").json() == {
            "tenant": "dev",
            "scopes": ["admin", "read", "write"],
            "key_id": None,
        }
        # a key naming another tenant changes nothing in dev mode
        assert api.client.get("/v1/whoami", headers=api.headers).json()["tenant"] == "dev"
        remote = TestClient(api.app, client=("203.0.113.9", 40000))
        problem(remote.get("/v1/whoami"), 403, "forbidden")
        remote.close()
    finally:
        api.close()


def test_store_down_is_503_not_500(tmp_path: Path) -> None:
    api = Api(tmp_path)
    try:
        assert api.client.get("/readyz").status_code == 200
        api.memory.store.close()
        problem(api.client.get("/readyz"), 503, "store_error")
        r = api.client.get("/v1/memories", headers=api.headers)
        assert r.status_code >= 500 and r.headers["content-type"].startswith(PROBLEM)
    finally:
        api.client.close()
        api.keys.close()
