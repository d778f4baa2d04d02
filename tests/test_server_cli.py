"""``memq keys`` and ``memq serve`` as a user runs them: the CLI, and real server processes
(one worker on SQLite in dev mode; two uvicorn workers sharing one PostgreSQL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

pytest.importorskip("fastapi")

from memq.cli import app
from memq.server.keys import open_key_store

runner = CliRunner()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    db = str(tmp_path / "memq.db")
    r = runner.invoke(
        app,
        [
            "--db",
            db,
            "--json",
            "keys",
            "create",
            "--tenant",
            "acme",
            "--scopes",
            "read,write",
            "--name",
            "ci",
        ],
    )
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    assert (
        created["tenant"] == "acme"
        and created["scopes"] == ["read", "write"]
        and created["key"].startswith("memq_")
    )
    r = runner.invoke(app, ["--db", db, "keys", "create", "--tenant", "acme", "--scopes", "read"])
    assert r.exit_code == 0 and "shown only now" in r.stdout

    listed = json.loads(runner.invoke(app, ["--db", db, "--json", "keys", "list"]).stdout)
    assert listed[0]["id"] == created["id"] and len(listed) == 2
    assert created["key"] not in runner.invoke(app, ["--db", db, "keys", "list"]).stdout  # never the secret

    ks = open_key_store(db)
    try:
        assert ks.verify(created["key"]).tenant == "acme"  # type: ignore[union-attr]
        r = runner.invoke(app, ["--db", db, "keys", "revoke", created["id"]])
        assert r.exit_code == 0 and "revoked" in r.stdout
        assert ks.verify(created["key"]) is None
    finally:
        ks.close()
    listed = json.loads(runner.invoke(app, ["--db", db, "--json", "keys", "list", "--tenant", "acme"]).stdout)
    assert listed[0]["revoked_at"] is not None and listed[1]["revoked_at"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--tenant", "acme", "--scopes", "root"], "unknown scopes"),
        (["keys", "create", "--tenant", " ", "--scopes", "read"], "needs a tenant"),
        (["keys", "revoke", "0123456789abcdef"], "no API key"),
        (["serve", "--no-auth", "--host", "0.0.0.0"], "loopback"),
        (["serve", "--workers", "2"], "need PostgreSQL"),
        (["serve", "--dsn", "memq.db"], "postgresql://"),
    ],
)
def test_cli_refusals(tmp_path: Path, args: list[str], message: str) -> None:
    r = runner.invoke(app, ["--db", str(tmp_path / "memq.db"), *args])
    assert r.exit_code == 2, r.output
    assert message in r.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(args: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``memq ... serve ...`` as a subprocess; yield its URL once /readyz answers."""
    port = _free_port()
    cmd = [sys.executable, "-m", "memq", *args, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(
        cmd, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"memq serve exited: {proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("memq serve did not become ready in 90 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_serve_dev_mode_sqlite(tmp_path: Path) -> None:
    db = str(tmp_path / "memq.db")
    with serving(["--db", db, "--embedder", "hashing", "--tenant", "dev", "serve", "--no-auth"]) as url:
        r = httpx.post(url + "/v1/memories", json={"text": "Alice moved to Berlin"})
        assert r.status_code == 201 and r.json()["scope"]["tenant"] == "dev"
        hits = httpx.post(url + "/v1/search", json={"query": "Berlin", "mode": "lexical"}).json()["hits"]
        assert hits[0]["record"]["text"] == "Alice moved to Berlin"
        assert httpx.get(url + "/openapi.json").json()["info"]["title"] == "memq"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_serve_two_workers_share_postgres(db_url: str) -> None:
    ks = open_key_store(db_url)
    try:
        key = ks.create("acme", ["read", "write"])[1]
        other = ks.create("globex", ["read", "write"])[1]
    finally:
        ks.close()
    args = ["--embedder", "hashing", "serve", "--dsn", db_url, "--workers", "2"]
    with serving(args) as url:
        h = {"Authorization": f"Bearer {key}"}

        def add(i: int) -> str:
            with httpx.Client(base_url=url, headers=h, timeout=30) as c:  # a new connection: any worker
                r = c.post("/v1/memories", json={"text": f"note number {i} about coffee"})
                assert r.status_code == 201, r.text
                return r.json()["id"]

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(add, range(40)))
        listed = httpx.get(url + "/v1/memories", params={"limit": 100}, headers=h).json()["records"]
        assert sorted(r["id"] for r in listed) == sorted(ids)
        found = httpx.post(url + "/v1/search", json={"query": "coffee", "k": 5}, headers=h).json()
        fb = httpx.post(url + f"/v1/retrievals/{found['id']}/feedback", json={"reward": 1.0}, headers=h)
        assert fb.status_code == 200, fb.text
        g = {"Authorization": f"Bearer {other}"}
        assert httpx.get(url + "/v1/memories", headers=g).json()["records"] == []
        assert httpx.get(url + f"/v1/memories/{ids[0]}", headers=g).status_code == 404


def test_serve_caps_blas_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """memq serve's process (and each worker, through the environment) runs numpy's BLAS on one thread
    by default; 0 leaves BLAS as it is."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from memq.server.app import app_from_env
    from memq.server.settings import ServerSettings, limit_blas

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    assert ServerSettings().blas_threads == 1
    assert ServerSettings.from_env(ServerSettings(blas_threads=3).to_env()).blas_threads == 3
    with threadpool_limits(limits=2, user_api="blas"):  # this process's own limits come back after
        limit_blas(0)
        assert blas() == {2}
        limit_blas(1)
        assert blas() == {1}
        threadpool_limits(limits=2, user_api="blas")
        env = ServerSettings(db=str(tmp_path / "m.db"), embedder="hashing", auth=False).to_env()
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        app = app_from_env()
        assert blas() == {1}
        for close in app.state.closers:
            close()
