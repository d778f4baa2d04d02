"""Tenant isolation, property-based: random sequences of API calls by 3 tenants (≥ 10,000 in total).

A hypothesis state machine drives the REST API in-process (the ASGI app, real SQLite, the hashing
embedder to keep it fast) and keeps the ground truth: which tenant owns each record and retrieval.
Every call may name any id — its own tenant's, another tenant's or an unknown one — and every
answer is checked: a read, search, list, history, feedback, update or delete never returns, changes
or credits a record of another tenant (those calls get 404 and the owner still sees the record as it was).
"""

from __future__ import annotations

import json as _json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

pytest.importorskip("fastapi")
from anyio.from_thread import BlockingPortal, start_blocking_portal

from memq.embed import HashingEmbedder
from memq.memory import Memory
from memq.server.app import create_app
from memq.server.keys import open_key_store
from memq.server.settings import ServerSettings
from memq.types import MemoryRecord, Utility

TENANTS = ("t0", "t1", "t2")
USERS = (None, "u1", "u2")
# one shared vocabulary: a search by one tenant matches other tenants' texts unless the store filters them
WORDS = ("berlin", "coffee", "invoice", "dog", "meeting", "peanut", "flight", "report", "alice", "budget")
MIN_OPERATIONS = 10_000

# phrases of 1-5 of the shared words, drawn once: one hypothesis choice per text keeps generation cheap
_rng = random.Random(7)
PHRASES = sorted({" ".join(_rng.choices(WORDS, k=_rng.randint(1, 5))) for _ in range(400)})
texts = st.sampled_from(PHRASES)
tenants = st.integers(0, len(TENANTS) - 1)
picks = st.integers(0, 2**31)


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return _json.loads(self.text)


class AsgiClient:
    """The smallest HTTP/1.1 client of an ASGI app: what httpx's ASGITransport does, without its
    URL and header machinery (a third of the CPU of each call here)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        json: Any = None,
        params: dict[str, object] | None = None,
    ) -> Reply:
        body = b"" if json is None else _json.dumps(json).encode()
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        raw += [(b"host", b"memq.test"), (b"content-length", str(len(body)).encode())]
        if json is not None:
            raw.append((b"content-type", b"application/json"))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(params or {}).encode(),
            "root_path": "",
            "headers": raw,
            "client": ("127.0.0.1", 50000),
            "server": ("memq.test", 80),
        }
        sent = False
        status, out_headers, chunks = 0, {}, []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                out_headers.update({k.decode().lower(): v.decode() for k, v in message.get("headers", [])})
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return Reply(status, out_headers, b"".join(chunks).decode())


@dataclass
class World:
    """Ground truth across the whole run (the database persists between state machine runs)."""

    client: AsgiClient
    portal: BlockingPortal
    memory: Memory  # the server's own Memory: the owner's view, read directly (no HTTP) for the checks
    headers: list[dict[str, str]]
    owner: dict[str, int] = field(default_factory=dict)  # record id -> tenant index
    text: dict[str, str] = field(default_factory=dict)  # record id -> its current text
    alive: dict[str, bool] = field(default_factory=dict)
    retrievals: dict[str, int] = field(default_factory=dict)  # retrieval id -> tenant index
    operations: int = 0  # API calls made
    foreign_attempts: int = 0  # calls naming another tenant's record or retrieval

    def call(self, method: str, url: str, t: int, **kwargs: Any) -> Reply:
        self.operations += 1
        r = self.portal.call(lambda: self.client.request(method, url, headers=self.headers[t], **kwargs))
        assert r.status_code < 500, r.text
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
        return r

    def pick_record(self, pick: int) -> str:
        ids = list(self.owner)
        # one call in ten names an id no tenant has
        if not ids or pick % 10 == 0:
            return f"01900000-0000-7000-8000-{pick % 10**12:012d}"
        return ids[pick % len(ids)]

    def as_owner(self, rid: str) -> MemoryRecord:
        """The record as its owner's tenant holds it, read from the store directly."""
        return self.memory.get(rid, scope=TENANTS[self.owner[rid]], include_deleted=True)

    def assert_unchanged_for_owner(self, rid: str) -> None:
        """After another tenant named ``rid``: its owner still has it exactly as before."""
        if rid in self.owner:
            record = self.as_owner(rid)
            assert record.text == self.text[rid] and record.deleted is (not self.alive[rid])


class Isolation(RuleBasedStateMachine):
    world: World

    @initialize()
    def start(self) -> None:
        self.mine: list[str] = []  # ids added in this run (for cheap picks of own records)

    @rule(t=tenants, text=texts, user=st.sampled_from(USERS))
    def add(self, t: int, text: str, user: str | None) -> None:
        w = self.world
        body: dict[str, object] = {"text": text}
        if user:
            body["scope"] = {"user": user}
        r = w.call("POST", "/v1/memories", t, json=body)
        assert r.status_code == 201, r.text
        rec = r.json()
        assert rec["scope"]["tenant"] == TENANTS[t] and rec["scope"]["user"] == user
        w.owner[rec["id"]], w.text[rec["id"]], w.alive[rec["id"]] = t, text, True
        self.mine.append(rec["id"])

    @rule(t=tenants, items=st.lists(texts, min_size=2, max_size=5))
    def add_batch(self, t: int, items: list[str]) -> None:
        w = self.world
        r = w.call("POST", "/v1/memories/batch", t, json={"items": [{"text": x} for x in items]})
        assert r.status_code == 201, r.text
        for rec, text in zip(r.json()["records"], items, strict=True):
            assert rec["scope"]["tenant"] == TENANTS[t]
            w.owner[rec["id"]], w.text[rec["id"]], w.alive[rec["id"]] = t, text, True

    @rule(t=tenants, pick=picks)
    def get(self, t: int, pick: int) -> None:
        w = self.world
        rid = w.pick_record(pick)
        r = w.call("GET", f"/v1/memories/{rid}", t)
        if w.owner.get(rid) == t and w.alive[rid]:
            assert r.status_code == 200, r.text
            assert r.json()["scope"]["tenant"] == TENANTS[t] and r.json()["text"] == w.text[rid]
        else:
            assert r.status_code == 404, r.text
            w.foreign_attempts += rid in w.owner and w.owner[rid] != t

    @rule(
        t=tenants,
        query=texts,
        k=st.integers(1, 30),
        user=st.sampled_from(USERS),
        mode=st.sampled_from([None, "lexical", "dense"]),
    )
    def search(self, t: int, query: str, k: int, user: str | None, mode: str | None) -> None:
        w = self.world
        body: dict[str, object] = {"query": query, "k": k}
        if user:
            body["scope"] = {"user": user}
        if mode:
            body["mode"] = mode
        r = w.call("POST", "/v1/search", t, json=body)
        assert r.status_code == 200, r.text
        found = r.json()
        assert found["scope"]["tenant"] == TENANTS[t]
        for hit in found["hits"]:
            rid = hit["record"]["id"]
            assert w.owner[rid] == t and hit["record"]["scope"]["tenant"] == TENANTS[t], hit
            assert w.alive[rid] and hit["record"]["text"] == w.text[rid]
            if user:
                assert hit["record"]["scope"]["user"] == user
        w.retrievals[found["id"]] = t

    @rule(t=tenants, pick=picks, reward=st.floats(-1, 1), with_used=st.booleans(), used_pick=picks)
    def feedback(self, t: int, pick: int, reward: float, with_used: bool, used_pick: int) -> None:
        w = self.world
        if not w.retrievals:
            return
        ids = list(w.retrievals)
        ret = ids[pick % len(ids)]
        body: dict[str, object] = {"reward": reward, "accumulate": True}
        used = w.pick_record(used_pick) if with_used else None
        if used is not None:
            body["used"] = [used]
        before = None if used is None or used not in w.owner else self._utility(used)
        r = w.call("POST", f"/v1/retrievals/{ret}/feedback", t, json=body)
        if w.retrievals[ret] != t:
            assert r.status_code == 404, r.text
            w.foreign_attempts += 1
        elif r.status_code == 200:
            assert all(w.owner[rid] == t for rid in r.json()["credits"]), r.json()
        else:
            assert r.status_code in (400, 404), r.text  # e.g. a used id that was not shown
        if used is not None and used in w.owner and w.owner[used] != t:
            assert self._utility(used) == before  # another tenant's record earned nothing

    def _utility(self, rid: str) -> Utility:
        return self.world.as_owner(rid).utility

    @rule(t=tenants, pick=picks, text=texts)
    def update(self, t: int, pick: int, text: str) -> None:
        w = self.world
        rid = w.pick_record(pick)
        r = w.call("PATCH", f"/v1/memories/{rid}", t, json={"text": text, "reason": "hypothesis"})
        if w.owner.get(rid) == t and w.alive[rid]:
            assert r.status_code == 200, r.text
            assert r.json()["scope"]["tenant"] == TENANTS[t]
            w.text[rid] = text
        else:
            assert r.status_code == 404, r.text
            if rid in w.owner and w.owner[rid] != t:
                w.foreign_attempts += 1
                w.assert_unchanged_for_owner(rid)

    @rule(t=tenants, pick=picks)
    def delete(self, t: int, pick: int) -> None:
        w = self.world
        rid = w.pick_record(pick)
        r = w.call("DELETE", f"/v1/memories/{rid}", t)
        if w.owner.get(rid) == t and w.alive[rid]:
            assert r.status_code == 204, r.text
            w.alive[rid] = False
        else:
            assert r.status_code == 404, r.text
            if rid in w.owner and w.owner[rid] != t:
                w.foreign_attempts += 1
                w.assert_unchanged_for_owner(rid)

    @rule(t=tenants, pick=picks)
    def history(self, t: int, pick: int) -> None:
        w = self.world
        rid = w.pick_record(pick)
        r = w.call("GET", f"/v1/memories/{rid}/history", t)
        if w.owner.get(rid) == t:
            assert r.status_code == 200, r.text
            events = r.json()
            assert events and all(e["record_id"] == rid for e in events)
            assert all(e["record"] is None or e["record"]["scope"]["tenant"] == TENANTS[t] for e in events)
        else:
            assert r.status_code == 404, r.text
            w.foreign_attempts += rid in w.owner

    @rule(t=tenants, user=st.sampled_from(USERS), limit=st.integers(1, 200))
    def list_page(self, t: int, user: str | None, limit: int) -> None:
        w = self.world
        params: dict[str, object] = {"limit": limit}
        if user:
            params["user"] = user
        r = w.call("GET", "/v1/memories", t, params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        assert len(page["records"]) <= limit
        for rec in page["records"]:
            assert w.owner[rec["id"]] == t and rec["scope"]["tenant"] == TENANTS[t] and w.alive[rec["id"]]

    @rule(t=tenants, other=tenants)
    def name_another_tenant(self, t: int, other: int) -> None:
        """A body that names a tenant is refused, whichever tenant it names."""
        w = self.world
        r = w.call("POST", "/v1/memories", t, json={"text": "x", "scope": {"tenant": TENANTS[other]}})
        assert r.status_code == 422 and r.json()["code"] == "invalid_request", r.text

    @invariant()
    def counted(self) -> None:
        assert self.world.operations >= 0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    db = str(Path(tmp_path_factory.mktemp("isolation")) / "memq.db")
    ks = open_key_store(db)
    headers = [{"Authorization": f"Bearer {ks.create(t, ['read', 'write'])[1]}"} for t in TENANTS]
    memory = Memory(db, embedder=HashingEmbedder())
    app = create_app(ServerSettings(db=db, rate_per_s=0), memory=memory, key_store=ks, mount_optional=False)
    # one event loop for the whole run (in a portal thread), so the threadpool's workers are reused
    with start_blocking_portal() as portal:
        yield World(client=AsgiClient(app), portal=portal, memory=memory, headers=headers)
    memory.close()
    ks.close()


def test_tenants_never_see_each_other(world: World) -> None:
    Isolation.world = world
    runs = 0
    while world.operations < MIN_OPERATIONS:
        run_state_machine_as_test(
            Isolation,
            settings=settings(
                max_examples=10,
                stateful_step_count=100,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            ),
        )
        runs += 1
        assert runs < 50, "the state machine is not making progress"
    assert world.operations >= MIN_OPERATIONS
    assert world.foreign_attempts > 500, world.foreign_attempts  # the check really was exercised
    assert len({world.owner[r] for r in world.owner}) == len(TENANTS)
