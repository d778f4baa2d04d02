"""The MCP server, driven by the official SDK's own client over both transports.

* stdio: ``memq mcp`` spawned as a subprocess by the SDK's stdio client;
* streamable HTTP: ``/mcp`` of the memq app on a real uvicorn server on 127.0.0.1, with API keys
  (the key's tenant is used, scopes are checked, a missing or wrong key is refused).

The embedder is the model-free HashingEmbedder: these tests check wiring and tenancy, not ranking.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2  # the HTTP client of the mcp SDK
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from live_server import live_server
from memq import Memory
from memq.embed import HashingEmbedder
from memq.server.app import create_app
from memq.server.settings import ServerSettings

TOOLS = {"remember", "recall", "feedback", "forget", "list"}


def http_client(base: str, key: str | None, *, header: str = "Authorization") -> Client:
    """The SDK's client over streamable HTTP, presenting ``key`` as a bearer token or in X-API-Key."""
    headers = None if not key else {header: f"Bearer {key}" if header == "Authorization" else key}
    return Client(
        streamable_http_client(base + "/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60))
    )


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, args)
    assert not result.is_error, result.content
    return result.structured_content


async def call_error(client: Client, tool: str, **args: Any) -> str:
    result = await client.call_tool(tool, args)
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


# -- stdio ---------------------------------------------------------------------------------------------
async def test_stdio_tools_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "stdio.db"
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memq", "--embedder", "hashing", "mcp", "--db", str(db), "--tenant", "acme"],
        env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    async with Client(params) as client:
        tools = await client.list_tools()
        assert {t.name for t in tools.tools} == TOOLS
        berlin = await call(
            client, "remember", text="Alice moved to Berlin in 2021", metadata={"topic": "travel"}
        )
        dog = await call(client, "remember", text="Carol adopted a dog named Max", user="carol")
        assert berlin["version"] == 1 and dog["user"] == "carol"

        found = await call(client, "recall", query="Alice moved to Berlin", k=2)
        assert found["hits"][0]["id"] == berlin["id"]
        fb = await call(
            client, "feedback", retrieval_id=found["retrieval_id"], reward=1.0, used=[berlin["id"]]
        )
        assert fb["credits"] == {berlin["id"]: 1.0}

        listed = await call(client, "list", user="carol")
        assert [r["id"] for r in listed["records"]] == [dog["id"]]
        gone = await call(client, "forget", record_id=dog["id"])
        assert gone["mode"] == "delete"
        assert (await call(client, "list"))["records"][0]["id"] == berlin["id"]
        assert len((await call(client, "list"))["records"]) == 1
        missing = await call_error(client, "forget", record_id=dog["id"], mode="invalidate")
        assert "not_found" in missing

    # what the tools did is in the store, in tenant acme only, with the feedback learned
    with Memory(db, embedder=HashingEmbedder()) as mem:
        stored = mem.get(berlin["id"], scope="acme")
        assert stored.utility.n_shown == 1 and stored.utility.q is not None
        assert mem.list(scope="default").records == []
        assert mem.get(dog["id"], scope="acme", include_deleted=True).deleted


async def test_stdio_read_only_refuses_writes(tmp_path: Path) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "memq", "--embedder", "hashing", "mcp", "--db", str(tmp_path / "ro.db"), "--read-only"],
        env={"HF_HUB_OFFLINE": "1"},
    )
    async with Client(params) as client:
        assert "forbidden" in await call_error(client, "remember", text="not allowed")
        assert (await call(client, "list"))["records"] == []


# -- streamable HTTP -----------------------------------------------------------------------------------
@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    settings = ServerSettings(db=str(tmp_path / "http.db"), embedder="hashing", rate_per_s=0)
    app = create_app(settings)
    keys = app.state.keys
    secrets = {
        "acme": keys.create("acme", ["read", "write"], name="acme-rw")[1],
        "acme-ro": keys.create("acme", ["read"], name="acme-ro")[1],
        "globex": keys.create("globex", ["read", "write"], name="globex-rw")[1],
    }
    revoked, secrets["revoked"] = keys.create("acme", ["read", "write"], name="old")
    keys.revoke(revoked.id)
    with live_server(app) as base:
        yield base, secrets


async def test_http_tools_use_the_keys_tenant(served: tuple[str, dict[str, str]]) -> None:
    base, keys = served
    async with http_client(base, keys["acme"]) as acme:
        assert {t.name for t in (await acme.list_tools()).tools} == TOOLS
        rec = await call(acme, "remember", text="The deploy key rotates every Monday", kind="note")
        found = await call(acme, "recall", query="deploy key rotation", k=3)
        assert [h["id"] for h in found["hits"]] == [rec["id"]]
        fb = await call(acme, "feedback", retrieval_id=found["retrieval_id"], reward=1.0)
        assert fb["credit"] == "shown" and fb["credits"] == {rec["id"]: 1.0}

    async with http_client(base, keys["globex"], header="X-API-Key") as globex:
        # another tenant sees nothing of acme's, and cannot touch its records or retrievals
        assert (await call(globex, "recall", query="deploy key rotation", k=3))["hits"] == []
        assert (await call(globex, "list"))["records"] == []
        assert "not_found" in await call_error(globex, "forget", record_id=rec["id"])
        assert "not_found" in await call_error(
            globex, "feedback", retrieval_id=found["retrieval_id"], reward=0.0
        )

    async with http_client(base, keys["acme-ro"]) as reader:
        assert [r["id"] for r in (await call(reader, "list"))["records"]] == [rec["id"]]
        assert "forbidden" in await call_error(reader, "remember", text="read-only keys cannot write")
        assert "forbidden" in await call_error(reader, "forget", record_id=rec["id"])

    async with http_client(base, keys["acme"]) as acme:  # the refused calls changed nothing
        listed = await call(acme, "list")
        assert [(r["id"], r["n_shown"]) for r in listed["records"]] == [(rec["id"], 1)]


@pytest.mark.parametrize("key", [None, "memq_wrong_key", "revoked"])
async def test_http_refuses_missing_wrong_or_revoked_key(
    served: tuple[str, dict[str, str]], key: str | None
) -> None:
    base, keys = served
    secret = keys.get(key, key) if key else None
    with pytest.raises((MCPError, BaseExceptionGroup)) as caught:
        async with http_client(base, secret) as client:
            await client.list_tools()
    assert any(isinstance(e, MCPError) for e in _leaves(caught.value))
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = httpx.post(base + "/mcp", json=body, headers=headers)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "unauthorized"


async def test_http_dev_mode_needs_no_key_but_a_loopback_host(tmp_path: Path) -> None:
    app = create_app(
        ServerSettings(db=str(tmp_path / "dev.db"), embedder="hashing", auth=False, dev_tenant="me")
    )
    with live_server(app) as base:
        async with http_client(base, None) as client:
            rec = await call(client, "remember", text="dev mode works without a key")
            assert (await call(client, "list"))["records"][0]["id"] == rec["id"]
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        # a web page reaching 127.0.0.1 through DNS rebinding sends its own host name: refused
        rebound = httpx.post(base + "/mcp", json=body, headers={**headers, "Host": "evil.example"})
        assert rebound.status_code == 421
        cross = httpx.post(base + "/mcp", json=body, headers={**headers, "Origin": "http://evil.example"})
        assert cross.status_code == 403
    with Memory(tmp_path / "dev.db", embedder=HashingEmbedder()) as mem:
        assert [r.id for r in mem.list(scope="me").records] == [rec["id"]]


async def test_http_applies_the_keys_rate_limit(tmp_path: Path) -> None:
    app = create_app(
        ServerSettings(db=str(tmp_path / "rate.db"), embedder="hashing", rate_per_s=0.01, rate_burst=3)
    )
    _, key = app.state.keys.create("acme", ["read", "write"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {key}",
    }
    with live_server(app) as base:
        got = [httpx.post(base + "/mcp", json=body, headers=headers) for _ in range(4)]
    assert [r.status_code for r in got[:3]] == [200, 200, 200]  # the burst
    assert {t["name"] for t in got[0].json()["result"]["tools"]} == TOOLS
    assert got[3].status_code == 429 and got[3].json()["code"] == "rate_limited"
    assert int(got[3].headers["Retry-After"]) >= 1


def test_http_endpoint_follows_the_apps_lifespan(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from memq.server.keys import open_key_store

    db = str(tmp_path / "life.db")
    mem, keys = (
        Memory(db, embedder=HashingEmbedder()),
        open_key_store(db),
    )  # owned here: open across lifespans
    app = create_app(ServerSettings(db=db, embedder="hashing", rate_per_s=0), memory=mem, key_store=keys)
    _, key = keys.create("acme", ["read"])
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {key}"}
    outside = TestClient(app).post("/mcp", json=body, headers=headers)  # no lifespan: no session manager
    assert outside.status_code == 503 and outside.json()["code"] == "service_unavailable"
    for _ in range(2):  # each lifespan runs its own session manager (one can run only once)
        with TestClient(app, client=("127.0.0.1", 5000)) as client:
            got = client.post("/mcp", json=body, headers=headers)
            assert got.status_code == 200 and {t["name"] for t in got.json()["result"]["tools"]} == TOOLS
    mem.close()
    keys.close()
