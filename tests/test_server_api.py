"""The REST API over a real uvicorn server on 127.0.0.1, with the real MiniLM embedder.

One server per session on a SQLite file; the main flow runs once more on PostgreSQL (pgserver).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from live_server import live_server  # noqa: E402
from memq.memory import Memory  # noqa: E402
from memq.server.app import create_app  # noqa: E402
from memq.server.keys import open_key_store  # noqa: E402
from memq.server.settings import ServerSettings  # noqa: E402

PROBLEM = "application/problem+json"


@dataclass
class Keys:
    acme: str  # read, write
    acme_read: str  # read only
    acme_admin: str
    globex: str  # read, write (another tenant)
    revoked: str
    revoked_id: str


def _make_keys(db: str) -> Keys:
    ks = open_key_store(db)
    try:
        acme = ks.create("acme", ["read", "write"], name="agent")[1]
        acme_read = ks.create("acme", ["read"])[1]
        acme_admin = ks.create("acme", ["admin"])[1]
        globex = ks.create("globex", ["read", "write"])[1]
        gone, revoked = ks.create("acme", ["read", "write"])
        ks.revoke(gone.id)
    finally:
        ks.close()
    return Keys(acme, acme_read, acme_admin, globex, revoked, gone.id)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Served:
    url: str
    keys: Keys
    db: str


@pytest.fixture(scope="session")
def served(embedder: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = str(tmp_path_factory.mktemp("server") / "memq.db")
    keys = _make_keys(db)
    memory = Memory(db, embedder=embedder)  # type: ignore[arg-type]
    app = create_app(ServerSettings(db=db, rate_per_s=0), memory=memory, mount_optional=False)
    with live_server(app) as url:
        yield Served(url, keys, db)
    memory.close()


def assert_problem(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM), r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"urn:memq:problem:{code}" and body["detail"]
    return body


def run_main_flow(url: str, keys: Keys) -> None:
    """add (one and batch) → search (explain) → feedback → get → list pages → update → history →
    invalidate → delete → export → purge, checking the other tenant sees none of it."""
    a, b = bearer(keys.acme), bearer(keys.globex)
    with httpx.Client(base_url=url, timeout=30) as c:
        r = c.post(
            "/v1/memories",
            json={"text": "Alice moved to Berlin in 2021", "metadata": {"topic": "travel"}},
            headers=a,
        )
        assert r.status_code == 201, r.text
        alice = r.json()
        assert alice["scope"]["tenant"] == "acme" and alice["version"] == 1 and alice["embedding"] is None
        r = c.post(
            "/v1/memories/batch",
            json={
                "items": [
                    {"text": "Bob is allergic to peanuts"},
                    {
                        "text": "Carol adopted a dog named Max",
                        "metadata": {"topic": "pets"},
                        "scope": {"user": "carol"},
                    },
                    {"text": "The quarterly report is due on Friday", "kind": "note"},
                ]
            },
            headers=a,
        )
        assert r.status_code == 201, r.text
        batch = r.json()["records"]
        assert [x["scope"].get("user") for x in batch] == [None, "carol", None]
        assert (
            c.post("/v1/memories", json={"text": "Globex moved its office to Berlin"}, headers=b).status_code
            == 201
        )

        r = c.post("/v1/search", json={"query": "where does Alice live?", "k": 3, "explain": True}, headers=a)
        assert r.status_code == 200, r.text
        found = r.json()
        assert found["hits"][0]["record"]["id"] == alice["id"]
        assert found["hits"][0]["signals"]["dense"] is not None
        assert all(h["record"]["scope"]["tenant"] == "acme" for h in found["hits"])
        r = c.post("/v1/search", json={"query": "dog", "filters": {"metadata.topic": "pets"}}, headers=a)
        assert [h["record"]["text"] for h in r.json()["hits"]] == ["Carol adopted a dog named Max"]
        r = c.post("/v1/search", json={"query": "who moved to Berlin?", "k": 10}, headers=b)
        assert {h["record"]["scope"]["tenant"] for h in r.json()["hits"]} == {"globex"}

        r = c.post(
            f"/v1/retrievals/{found['id']}/feedback", json={"reward": 1.0, "used": [alice["id"]]}, headers=a
        )
        assert r.status_code == 200, r.text
        assert r.json()["credits"] == {alice["id"]: 1.0}
        assert c.get(f"/v1/memories/{alice['id']}", headers=a).json()["utility"]["n_used"] == 1
        assert_problem(
            c.post(f"/v1/retrievals/{found['id']}/feedback", json={"reward": 1.0}, headers=b),
            404,
            "not_found",
        )
        assert_problem(
            c.post(f"/v1/retrievals/{found['id']}/feedback", json={"reward": 1.0}, headers=a), 409, "conflict"
        )
        logged = c.get(f"/v1/retrievals/{found['id']}", headers=a).json()
        assert logged["feedback"]["reward"] == 1.0 and logged["query_vector"] is None

        ids, cursor = [], None
        while True:
            r = c.get(
                "/v1/memories", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=a
            )
            assert r.status_code == 200, r.text
            ids += [x["id"] for x in r.json()["records"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        assert sorted(ids) == sorted([alice["id"]] + [x["id"] for x in batch]) and len(ids) == 4
        r = c.get("/v1/memories", params={"user": "carol"}, headers=a)
        assert [x["text"] for x in r.json()["records"]] == ["Carol adopted a dog named Max"]
        r = c.get("/v1/memories", params={"filters": '{"kind": "note"}'}, headers=a)
        assert [x["kind"] for x in r.json()["records"]] == ["note"]

        assert_problem(c.get(f"/v1/memories/{alice['id']}", headers=b), 404, "not_found")
        assert_problem(
            c.patch(f"/v1/memories/{alice['id']}", json={"text": "hijacked"}, headers=b), 404, "not_found"
        )
        r = c.patch(
            f"/v1/memories/{alice['id']}",
            json={"text": "Alice moved to Munich in 2024", "reason": "moved"},
            headers=a,
        )
        assert r.status_code == 200 and r.json()["version"] == 2
        events = c.get(f"/v1/memories/{alice['id']}/history", headers=a).json()
        assert [(e["op"], e["version"]) for e in events] == [("add", 1), ("update", 2)]
        assert events[1]["reason"] == "moved"
        r = c.post("/v1/search", json={"query": "Munich", "k": 1, "mode": "lexical"}, headers=a)
        assert r.json()["hits"][0]["record"]["text"] == "Alice moved to Munich in 2024"

        r = c.post(f"/v1/memories/{batch[2]['id']}/invalidate", json={"reason": "done"}, headers=a)
        assert r.status_code == 200 and r.json()["valid_to"] is not None
        listed = {x["id"] for x in c.get("/v1/memories", headers=a).json()["records"]}
        assert batch[2]["id"] not in listed
        assert_problem(c.delete(f"/v1/memories/{batch[0]['id']}", headers=b), 404, "not_found")
        assert (
            c.delete(f"/v1/memories/{batch[0]['id']}", params={"reason": "wrong"}, headers=a).status_code
            == 204
        )
        assert_problem(c.get(f"/v1/memories/{batch[0]['id']}", headers=a), 404, "not_found")
        assert c.get(f"/v1/memories/{batch[0]['id']}", params={"include_deleted": True}, headers=a).json()[
            "deleted"
        ]

        r = c.get("/v1/export", headers=a)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
        lines = [httpx.Response(200, content=line).json() for line in r.content.splitlines()]
        assert lines[0]["type"] == "memq-export"
        tenants = {x["record"]["scope"]["tenant"] for x in lines if x["type"] == "record"}
        assert tenants == {"acme"}
        st = c.get("/v1/stats", headers=a).json()
        assert (st["deleted"], st["invalidated"]) == (1, 1) and "location" not in st and "tenants" not in st

        assert_problem(c.post("/v1/purge", json={"ids": [alice["id"]]}, headers=a), 403, "forbidden")
        assert c.post("/v1/purge", json={"ids": [alice["id"]]}, headers=bearer(keys.acme_admin)).json() == {
            "purged": 1
        }
        assert_problem(c.get(f"/v1/memories/{alice['id']}/history", headers=a), 404, "not_found")


def test_main_flow_sqlite(served: Served) -> None:
    run_main_flow(served.url, served.keys)


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_main_flow_postgres(db_url: str, embedder: object) -> None:
    keys = _make_keys(db_url)
    memory = Memory(db_url, embedder=embedder)  # type: ignore[arg-type]
    app = create_app(ServerSettings(db=db_url, rate_per_s=0), memory=memory, mount_optional=False)
    try:
        with live_server(app) as url:
            with httpx.Client(base_url=url) as c:
                assert c.get("/readyz").json() == {"status": "ready", "backend": "postgres"}
            run_main_flow(url, keys)
    finally:
        memory.close()


def test_health_and_openapi(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json() == {"status": "ready", "backend": "sqlite"}
        spec = c.get("/openapi.json").json()
        assert spec["openapi"].startswith("3.1")
        for path in (
            "/v1/memories",
            "/v1/memories/batch",
            "/v1/search",
            "/v1/retrievals/{retrieval_id}/feedback",
            "/v1/export",
            "/v1/purge",
        ):
            assert path in spec["paths"], path
        # request bodies refuse unknown fields and have no tenant anywhere
        search = spec["components"]["schemas"]["SearchIn"]
        assert search["additionalProperties"] is False and "tenant" not in search["properties"]
        assert "tenant" not in spec["components"]["schemas"]["ScopeIn"]["properties"]


def test_keys_are_hashed_at_rest(served: Served) -> None:
    con = sqlite3.connect(served.db)
    try:
        rows = con.execute("SELECT id, key_hash FROM memq_api_keys").fetchall()
    finally:
        con.close()
    assert len(rows) >= 5  # the keys _make_keys created (a later test adds more)
    stored = {h for _, h in rows}
    assert hashlib.sha256(served.keys.acme.encode()).hexdigest() in stored
    raw = b"".join(p.read_bytes() for p in Path(served.db).parent.iterdir() if p.is_file())  # db, WAL, index
    for secret in (served.keys.acme, served.keys.globex, served.keys.acme_admin):
        assert secret.split("_", 2)[2].encode() not in raw  # the random part is nowhere in the file


def test_key_rules(served: Served) -> None:
    with httpx.Client(base_url=served.url) as c:
        r = assert_problem(c.get("/v1/memories"), 401, "unauthorized")
        assert r["detail"].startswith("an API key is required")
        assert c.get("/v1/memories").headers["www-authenticate"].startswith("Bearer")
        assert_problem(c.get("/v1/memories", headers=bearer(served.keys.revoked)), 401, "unauthorized")
        assert_problem(
            c.get("/v1/memories", headers=bearer("memq_0123456789abcdef_" + "x" * 43)), 401, "unauthorized"
        )
        tampered = served.keys.acme[:-1] + ("A" if served.keys.acme[-1] != "A" else "B")
        assert_problem(c.get("/v1/memories", headers=bearer(tampered)), 401, "unauthorized")
        assert c.get("/v1/memories", headers={"X-API-Key": served.keys.acme}).status_code == 200
        ro = bearer(served.keys.acme_read)
        assert c.get("/v1/memories", headers=ro).status_code == 200
        assert_problem(
            c.post("/v1/memories", json={"text": "read keys cannot write"}, headers=ro), 403, "forbidden"
        )
        assert_problem(c.post("/v1/retrievals/x/feedback", json={"reward": 1}, headers=ro), 403, "forbidden")
        assert_problem(c.delete("/v1/memories/x", headers=ro), 403, "forbidden")
        admin = bearer(served.keys.acme_admin)
        assert c.post("/v1/memories", json={"text": "admin implies write"}, headers=admin).status_code == 201
        me = c.get("/v1/whoami", headers=ro).json()
        assert me["tenant"] == "acme" and me["scopes"] == ["read"] and len(me["key_id"]) == 16


def test_revocation_takes_effect_at_once(served: Served) -> None:
    ks = open_key_store(served.db)
    try:
        key, secret = ks.create("acme", ["read"])
        with httpx.Client(base_url=served.url) as c:
            assert c.get("/v1/whoami", headers=bearer(secret)).json()["key_id"] == key.id
            ks.revoke(key.id)
            assert_problem(c.get("/v1/whoami", headers=bearer(secret)), 401, "unauthorized")
    finally:
        ks.close()


def test_tenant_in_body_is_rejected(served: Served) -> None:
    a = bearer(served.keys.acme)
    with httpx.Client(base_url=served.url) as c:
        body = assert_problem(
            c.post("/v1/memories", json={"text": "x", "tenant": "globex"}, headers=a), 422, "invalid_request"
        )
        assert body["errors"][0]["loc"] == ["body", "tenant"]
        assert_problem(
            c.post("/v1/search", json={"query": "x", "scope": {"tenant": "globex"}}, headers=a),
            422,
            "invalid_request",
        )
        assert_problem(
            c.post(
                "/v1/memories/batch",
                json={"items": [{"text": "x", "scope": {"tenant": "globex"}}]},
                headers=a,
            ),
            422,
            "invalid_request",
        )
