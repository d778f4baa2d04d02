"""Shared fixtures: the real MiniLM embedder, and real SQLite / PostgreSQL stores.

PostgreSQL 16 + pgvector come from the ``pgserver`` package, started once per test session in a
temporary directory; every test gets a fresh database in it.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# the `llm_server` fixture: an OpenAI-compatible replay server on loopback (tests/llm_replay.py)
pytest_plugins = ["llm_replay"]

BACKENDS = ["sqlite", "postgres"]
_db_counter = itertools.count()


@pytest.fixture(scope="session")
def embedder():
    from memq.embed import default_embedder

    emb = default_embedder()
    emb.embed_query("warm up")  # load the weights once per session
    return emb


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    import pgserver

    root = Path(tempfile.mkdtemp(prefix="memq-pg-"))
    # "delete": the data directory (~1.6 GB after a full run) goes with the server, not left in /tmp
    server = pgserver.get_server(root, cleanup_mode="delete")
    server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    yield server
    server.cleanup()


def _fresh_pg_url(server: object) -> str:
    import psycopg

    base = server.get_uri()  # type: ignore[attr-defined]
    name = f"memq_test_{os.getpid()}_{next(_db_counter)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    # pgserver's URI keeps the socket directory in the query (?host=/tmp/...): swap only the path
    return urlunsplit(urlsplit(base)._replace(path="/" + name))


@pytest.fixture
def pg_url(pg_server: object) -> str:
    """A URL of a new, empty PostgreSQL database."""
    return _fresh_pg_url(pg_server)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store location for the backend named by the test's ``backend`` parameter."""
    backend = request.param if hasattr(request, "param") else "sqlite"
    if backend == "sqlite":
        return str(tmp_path / "memq.db")
    return _fresh_pg_url(request.getfixturevalue("pg_server"))


@pytest.fixture
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], str]:
    """A function giving a fresh location for a backend name (for tests that need several)."""
    counter = itertools.count()

    def make(backend: str) -> str:
        if backend == "sqlite":
            return str(tmp_path / f"memq-{next(counter)}.db")
        return _fresh_pg_url(request.getfixturevalue("pg_server"))

    return make


def unit(vec: list[float] | np.ndarray) -> list[float]:
    v = np.asarray(vec, dtype=np.float32)
    return (v / np.linalg.norm(v)).tolist()
