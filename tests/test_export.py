"""Export reads the store a page at a time (both backends, both facades) and writes the same file as
one read would; a failed export to a path leaves no partial file."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from memq import AsyncMemory, Memory, StoreError
from memq.embed import HashingEmbedder
from memq.ops import transfer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


def _fill(mem: Memory) -> None:
    recs = mem.add([f"note number {i} about topic {i % 3}" for i in range(7)])
    mem.add("a note of another tenant", scope="other")
    mem.update(recs[0].id, text="note number 0, revised", reason="revised")
    mem.delete(recs[1].id)
    mem.invalidate(recs[2].id, reason="stale")


@pytest.fixture
def mem(db_url: str) -> Memory:
    m = Memory(db_url, embedder=HashingEmbedder(64), scope="acme")
    _fill(m)
    yield m
    m.close()


def _spy(mem: Memory, name: str, calls: list[tuple[int, int, int]]) -> None:
    """Record (after, limit, rows returned) of every call of a store method (on this instance)."""
    method = getattr(mem.store, name)

    def spied(tenant: str | None, after: int, limit: int) -> list[Any]:
        page = method(tenant, after, limit)
        calls.append((after, limit, len(page)))
        return page

    setattr(mem.store, name, spied)


def test_small_pages_write_the_same_export_and_no_page_is_larger(
    mem: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = io.StringIO()
    lines = mem.export(whole)
    assert lines == 9 + 10  # acme: 7 adds, an update, an invalidation; 10 events (the delete too)
    monkeypatch.setattr(transfer, "EXPORT_RECORDS_PAGE", 2)
    monkeypatch.setattr(transfer, "EXPORT_EVENTS_PAGE", 3)
    record_calls: list[tuple[int, int, int]] = []
    event_calls: list[tuple[int, int, int]] = []
    _spy(mem, "export_records", record_calls)
    _spy(mem, "export_events", event_calls)
    paged = io.StringIO()
    assert mem.export(paged) == lines
    assert paged.getvalue() == whole.getvalue()
    assert [n for _, _, n in record_calls] == [2, 2, 2, 2, 1, 0]
    assert [n for _, _, n in event_calls] == [3, 3, 3, 1, 0]
    assert {limit for _, limit, _ in record_calls + event_calls} == {2, 3}
    afters = [after for after, _, _ in record_calls]
    assert afters[0] == 0 and afters == sorted(set(afters))  # each page starts after the last one


def test_store_pages_match_export_rows(mem: Memory) -> None:
    store = mem.store
    for tenant in ("acme", None):
        paged: list[object] = []
        for page_of in (store.export_records, store.export_events):
            last = 0
            while page := page_of(tenant, last, 2):
                assert len(page) <= 2 and page[0][0] > last
                last = page[-1][0]
                paged += [item for _, item in page]
        assert paged == list(store.export_rows(tenant))
    assert store.export_records("acme", 0, 0) == [] and store.export_events("acme", 0, 0) == []
    assert store.export_records("nobody", 0, 10) == []


async def test_async_export_pages_the_same_file(
    mem: Memory, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = io.StringIO()
    mem.export(whole, all_tenants=True)
    monkeypatch.setattr(transfer, "EXPORT_RECORDS_PAGE", 2)
    monkeypatch.setattr(transfer, "EXPORT_EVENTS_PAGE", 3)
    async with await AsyncMemory.open(db_url, embedder=HashingEmbedder(64), scope="acme") as amem:
        paged = io.StringIO()
        assert await amem.export(paged, all_tenants=True) == 10 + 11
    assert paged.getvalue() == whole.getvalue()


def test_export_to_a_path_is_renamed_into_place(mem: Memory, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    dest = tmp_path / "out" / "dump.jsonl"
    dest.write_text("an older export\n")
    lines = mem.export(dest)
    text = dest.read_text(encoding="utf-8")
    assert len(text.splitlines()) == lines + 1 and text.startswith('{"type": "memq-export"')
    assert [p.name for p in dest.parent.iterdir()] == ["dump.jsonl"]  # no temporary file left


def test_a_failed_export_leaves_no_partial_file(
    mem: Memory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "EXPORT_RECORDS_PAGE", 2)

    def broken(tenant: str | None, after: int, limit: int) -> list[Any]:
        raise StoreError("the store went away")

    mem.store.export_events = broken  # type: ignore[method-assign]  # fails after every record page
    out = tmp_path / "out"
    out.mkdir()
    old = out / "old.jsonl"
    old.write_text("an older export\n")
    with pytest.raises(StoreError, match="went away"):
        mem.export(old)
    assert old.read_text() == "an older export\n"  # untouched
    with pytest.raises(StoreError):
        mem.export(out / "new.jsonl")
    assert sorted(p.name for p in out.iterdir()) == ["old.jsonl"]  # no partial or temporary file
