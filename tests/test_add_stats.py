"""Store.add_stats on both backends: increments accumulate, in one transaction, none lost."""

from __future__ import annotations

import io
import threading

import pytest

from memq import Memory, NotFoundError
from memq.types import Utility

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


@pytest.fixture
def mem(db_url: str, embedder) -> Memory:
    m = Memory(db_url, embedder=embedder, scope="acme")
    yield m
    m.close()


def test_new_row_created_with_default_counters(mem: Memory) -> None:
    rec = mem.add("Alice likes green tea")
    assert mem.get(rec.id).utility == Utility()
    mem.store.add_stats("acme", {rec.id: {"hits": 1.0, "alpha": 0.5}})
    u = mem.get(rec.id).utility
    assert u.stats == {"alpha": 0.5, "hits": 1.0}
    assert list(u.stats) == ["alpha", "hits"]  # sorted keys
    assert u.model_copy(update={"stats": {}}) == Utility()


def test_increments_accumulate(mem: Memory) -> None:
    a = mem.add("Bob runs every morning")
    b = mem.add("Carol plays the cello")
    mem.store.add_stats("acme", {a.id: {"hits": 1.0}, b.id: {"misses": 2.0}})
    mem.store.add_stats("acme", {a.id: {"hits": 2.5, "misses": -1.0}})
    mem.store.add_stats("acme", {})
    assert mem.get(a.id).utility.stats == {"hits": 3.5, "misses": -1.0}
    assert mem.get(b.id).utility.stats == {"misses": 2.0}


def test_unknown_purged_and_other_tenant_ids_are_ignored(mem: Memory) -> None:
    mine = mem.add("Dave owns a red bicycle")
    gone = mem.add("Eve's phone number is 555-0100")
    theirs = mem.add("Globex plans a merger", scope="globex")
    assert mem.purge(gone.id) == 1
    mem.store.add_stats(
        "acme",
        {
            mine.id: {"hits": 1.0},
            gone.id: {"hits": 1.0},
            theirs.id: {"hits": 1.0},
            "no-such-record": {"hits": 1.0},
        },
    )
    assert mem.get(mine.id).utility.stats == {"hits": 1.0}
    assert mem.get(theirs.id, scope="globex").utility == Utility()
    with pytest.raises(NotFoundError):
        mem.get(gone.id)


def test_concurrent_increments_are_not_lost(db_url: str, embedder, mem: Memory) -> None:
    rec = mem.add("Frank collects vinyl records")
    n = 200
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        m = Memory(db_url, embedder=embedder, scope="acme")
        try:
            start.wait(timeout=60)  # both connected before either writes: the calls overlap
            for _ in range(n):
                m.store.add_stats("acme", {rec.id: {"hits": 1.0, name: 1.0}})
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            m.close()

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert mem.get(rec.id).utility.stats == {"hits": 2.0 * n, "t1": float(n), "t2": float(n)}


def test_stats_survive_export_import(request: pytest.FixtureRequest, mem: Memory, make_url, embedder) -> None:
    rec = mem.add("Grace sails on weekends")
    # keys arrive out of order; the store writes them sorted
    mem.store.add_stats("acme", {rec.id: {"zeta": 1.0, "beta": 2.0}})
    mem.store.add_stats("acme", {rec.id: {"alpha": 3.0}})
    first = io.StringIO()
    mem.export(first)
    copy = Memory(make_url(request.node.callspec.params["db_url"]), embedder=embedder, scope="acme")
    try:
        copy.import_(io.StringIO(first.getvalue()))
        u = copy.get(rec.id).utility
        assert u.stats == {"alpha": 3.0, "beta": 2.0, "zeta": 1.0}
        assert list(u.stats) == ["alpha", "beta", "zeta"]
        second = io.StringIO()
        copy.export(second)
        assert second.getvalue() == first.getvalue()
    finally:
        copy.close()
