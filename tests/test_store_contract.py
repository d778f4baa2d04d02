"""The contract every backend meets: the same cases, run on SQLite and on PostgreSQL.

They drive the public :class:`memq.Memory` API with the real MiniLM embedder.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from memq import (
    ConflictError,
    DimensionMismatchError,
    EmptyTextError,
    FilterError,
    HistoryOp,
    InvalidInputError,
    Memory,
    MemoryConfig,
    NewRecord,
    NotFoundError,
    Scope,
    ScopeError,
    TextTooLongError,
)
from memq.embed import HashingEmbedder
from memq.ids import id_timestamp_ms

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)

FACTS = [
    (
        "Alice moved to Berlin in 2021 for a new job",
        {"topic": "travel", "year": 2021, "tags": ["move", "job"]},
    ),
    ("Bob is allergic to peanuts", {"topic": "health", "year": 2019, "tags": ["allergy"]}),
    ("Carol adopted a golden retriever named Max", {"topic": "pets", "year": 2022, "tags": ["dog"]}),
    ("Dave runs a marathon every spring", {"topic": "sport", "year": 2020, "tags": ["running"]}),
    ("The team offsite will be in Lisbon", {"topic": "travel", "year": 2023, "tags": ["work", "trip"]}),
]


@pytest.fixture
def mem(db_url: str, embedder) -> Memory:
    m = Memory(db_url, embedder=embedder, scope="acme")
    yield m
    m.close()


def _seed(mem: Memory) -> list:
    return mem.add([{"text": t, "metadata": md} for t, md in FACTS])


def test_add_get_and_ids_sort_by_creation(mem: Memory) -> None:
    records = _seed(mem)
    assert [r.text for r in records] == [t for t, _ in FACTS]
    ids = [r.id for r in records]
    assert ids == sorted(ids), "UUIDv7 ids sort in creation order"
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids
    )
    assert abs(id_timestamp_ms(ids[0]) / 1000 - datetime.now(UTC).timestamp()) < 120
    got = mem.get(ids[1])
    assert got.text == FACTS[1][0]
    assert got.metadata == FACTS[1][1]
    assert got.version == 1 and got.scope == Scope(tenant="acme")
    assert got.embedding_model == mem.embedder.model_id


def test_hybrid_search_ranks_relevant_first_and_explains(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("who has a dog?", k=3, explain=True)
    assert result.id and result.policy == "hybrid-weighted"  # the default fusion
    assert result.hits[0].record.text.startswith("Carol")
    signals = result.hits[0].signals
    assert signals is not None and signals.dense is not None and signals.dense_rank == 1
    assert signals.fused > 0
    lexical = mem.search("peanuts", k=2, mode="lexical", explain=True)
    assert lexical.hits[0].record.text.startswith("Bob")
    assert lexical.hits[0].signals.dense is None and lexical.hits[0].signals.lexical > 0
    dense = mem.search("canine companion", k=1, mode="dense")
    assert dense.hits[0].record.text.startswith("Carol")
    assert [h.rank for h in result.hits] == [1, 2, 3]
    assert all(h.record.embedding is None for h in result.hits)


def test_weighted_fusion_and_signal_weights(mem: Memory) -> None:
    _seed(mem)
    result = mem.search("marathon running", k=2, fusion="weighted", weights={"dense": 0.3, "lexical": 0.7})
    assert result.hits[0].record.text.startswith("Dave")
    with pytest.raises(InvalidInputError):
        mem.search("x", weights={"sparkle": 1.0})


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"metadata.topic": "travel"}, {"Alice", "The"}),
        ({"metadata.topic": {"in": ["pets", "sport"]}}, {"Carol", "Dave"}),
        ({"metadata.year": {"gte": 2021, "lt": 2023}}, {"Alice", "Carol"}),
        ({"metadata.tags": {"contains": "job"}}, {"Alice"}),
        ({"metadata.topic": {"contains": "trav"}}, {"Alice", "The"}),
        ({"or": [{"metadata.topic": "health"}, {"metadata.year": 2020}]}, {"Bob", "Dave"}),
        ({"and": [{"metadata.topic": "travel"}, {"not": {"metadata.year": 2023}}]}, {"Alice"}),
        ({"metadata.topic": {"ne": "travel"}, "metadata.year": {"lte": 2020}}, {"Bob", "Dave"}),
        ({"metadata.missing": {"exists": False}, "metadata.year": {"gt": 2022}}, {"The"}),
        ({"metadata.topic": {"nin": ["travel", "health"]}}, {"Carol", "Dave"}),
    ],
)
def test_metadata_filters(mem: Memory, filters: dict, expected: set[str]) -> None:
    _seed(mem)
    hits = mem.search("anything about people", k=10, filters=filters).hits
    assert {h.record.text.split()[0] for h in hits} == expected
    listed = mem.list(filters=filters).records
    assert {r.text.split()[0] for r in listed} == expected


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_a_pool_whose_first_hits_are_hidden_still_fills_from_the_visible_rows(mem: Memory, mode: str) -> None:
    """Most of the best-matching rows are filtered out or old versions: the search reaches past them
    (a store that checks only a first batch of index hits must fall back to a longer search)."""
    added = mem.add(
        [{"text": f"apple pie recipe card {i}", "metadata": {"keep": i % 8 == 0}} for i in range(40)]
    )
    for _ in range(6):  # old versions of a kept record crowd the index too
        mem.update(added[0].id, text="apple pie recipe card 0, revised")
    hits = mem.search(
        "apple pie recipe card", k=5, candidates=5, mode=mode, filters={"metadata.keep": True}
    ).hits
    assert sorted(h.record.id for h in hits) == sorted(r.id for r in added[::8])
    assert len({h.record.id for h in hits}) == 5


def test_bad_filters_are_typed_errors(mem: Memory) -> None:
    _seed(mem)
    for bad in (
        {"metadata.x": {"near": 1}},
        {"nosuch": 1},
        {"and": []},
        {"metadata.y": {"gt": True}},
        {"metadata.z": {"in": "notalist"}},
        {"metadata.a b": 1},
        {"recorded_at": "yesterday"},
    ):
        with pytest.raises(FilterError):
            mem.search("x", filters=bad)


def test_scope_kind_and_tenant_isolation(mem: Memory) -> None:
    mem.add("Alice prefers window seats", scope=Scope(tenant="acme", user="alice"))
    mem.add("Bob prefers aisle seats", scope=Scope(tenant="acme", user="bob"), kind="preference")
    mem.add("Globex secret: aisle seats are cheaper", scope="globex")
    alice = mem.search("seat preference", scope=Scope(tenant="acme", user="alice")).records
    assert [r.text for r in alice] == ["Alice prefers window seats"]
    acme = mem.search("seat preference", scope="acme").records
    assert {r.text.split()[0] for r in acme} == {"Alice", "Bob"}
    assert [r.text for r in mem.search("seats", kinds=["preference"]).records] == ["Bob prefers aisle seats"]
    globex_id = mem.list(scope="globex").records[0].id
    with pytest.raises(NotFoundError):
        mem.get(globex_id)  # the default scope is acme: another tenant's id is unknown here
    with pytest.raises(NotFoundError):
        mem.delete(globex_id)
    with pytest.raises(NotFoundError):
        mem.update(globex_id, text="overwritten")
    assert mem.purge([globex_id]) == 0
    assert mem.get(globex_id, scope="globex").text.startswith("Globex")


def test_update_writes_a_version_and_as_of_sees_the_past(mem: Memory) -> None:
    rec = mem.add("Alice lives in Berlin", metadata={"city": "Berlin"})
    before = datetime.now(UTC)
    new = mem.update(rec.id, text="Alice lives in Munich", metadata={"city": "Munich"}, reason="moved")
    assert new.id == rec.id and new.version == 2
    assert mem.get(rec.id).text == "Alice lives in Munich"
    history = mem.history(rec.id)
    assert [(e.op, e.version) for e in history] == [(HistoryOp.ADD, 1), (HistoryOp.UPDATE, 2)]
    assert history[0].record.text == "Alice lives in Berlin" and history[0].record.expired_at is not None
    assert history[1].reason == "moved"
    now_hits = mem.search("where does Alice live", k=1).records
    assert now_hits[0].text == "Alice lives in Munich"
    past = mem.search("where does Alice live", k=1, as_of=before).records
    assert past[0].text == "Alice lives in Berlin" and past[0].version == 1
    assert mem.list(as_of=before).records[0].metadata == {"city": "Berlin"}
    # only the newest version is current: the old text is not found any more
    assert all(r.version == 2 for r in mem.search("Berlin", k=5).records)


def test_update_of_metadata_only_keeps_the_vector(mem: Memory) -> None:
    rec = mem.add("Carol adopted a golden retriever")
    mem.update(rec.id, metadata={"verified": True})
    hit = mem.search("dog", k=1, mode="dense").hits[0]
    assert hit.record.id == rec.id and hit.record.metadata == {"verified": True}


def test_invalidate_ends_world_time_without_deleting(mem: Memory) -> None:
    rec = mem.add("Bob works at Initech", valid_from=datetime(2019, 1, 1, tzinfo=UTC))
    mem.invalidate(rec.id, at=datetime(2024, 6, 1, tzinfo=UTC), reason="left the company")
    assert mem.search("where does Bob work").hits == []
    assert mem.search("where does Bob work", include_invalidated=True).records[0].id == rec.id
    assert (
        mem.search("where does Bob work", valid_at=datetime(2022, 1, 1, tzinfo=UTC)).records[0].id == rec.id
    )
    assert mem.search("where does Bob work", valid_at=datetime(2018, 1, 1, tzinfo=UTC)).hits == []
    current = mem.get(rec.id)
    assert current.valid_to == datetime(2024, 6, 1, tzinfo=UTC) and current.version == 2
    assert [e.op for e in mem.history(rec.id)] == [HistoryOp.ADD, HistoryOp.INVALIDATE]
    with pytest.raises(InvalidInputError):
        mem.invalidate(rec.id, at=datetime(2010, 1, 1, tzinfo=UTC))


def test_soft_delete_hides_but_keeps_history(mem: Memory) -> None:
    rec = mem.add("Dave's locker code is 1234")
    before = datetime.now(UTC)
    mem.delete(rec.id, reason="user asked")
    with pytest.raises(NotFoundError):
        mem.get(rec.id)
    assert mem.get(rec.id, include_deleted=True).deleted
    assert mem.search("locker code").hits == []
    assert mem.list().records == []
    assert mem.search("locker code", as_of=before).records[0].id == rec.id
    assert [e.op for e in mem.history(rec.id)] == [HistoryOp.ADD, HistoryOp.DELETE]
    with pytest.raises(NotFoundError):
        mem.delete(rec.id)
    with pytest.raises(NotFoundError):
        mem.update(rec.id, text="x")


def test_purge_erases_everything(mem: Memory) -> None:
    keep = mem.add("Eve likes jazz")
    rec = mem.add("Frank's passport number is X123", metadata={"pii": True})
    mem.update(rec.id, text="Frank's passport number is Y456")
    assert mem.purge(rec.id) == 1
    with pytest.raises(NotFoundError):
        mem.get(rec.id, include_deleted=True)
    with pytest.raises(NotFoundError):
        mem.history(rec.id)
    assert all(h.record.id != rec.id for h in mem.search("passport number", include_invalidated=True).hits)
    assert mem.search("passport", mode="lexical").hits == []
    exported = io.StringIO()
    mem.export(exported)
    assert "passport" not in exported.getvalue()
    assert mem.get(keep.id).text == "Eve likes jazz"
    assert mem.purge([rec.id, "unknown-id"]) == 0


def test_list_pages_with_cursor_and_no_silent_cap(db_url: str, embedder) -> None:
    mem = Memory(db_url, embedder=embedder, scope="acme", config=MemoryConfig(max_page=20))
    try:
        added = mem.add([f"note number {i}" for i in range(25)])
        seen, cursor, pages = [], None, 0
        while True:
            page = mem.list(limit=10, cursor=cursor)
            seen += [r.id for r in page.records]
            pages += 1
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert pages == 3 and seen == [r.id for r in added]
        assert [r.id for r in mem.iter(limit=7)] == seen
        with pytest.raises(InvalidInputError):
            mem.list(limit=21)
        with pytest.raises(InvalidInputError):
            mem.list(limit=0)
    finally:
        mem.close()


def test_bad_input_is_rejected_with_typed_errors_and_writes_nothing(db_url: str, embedder) -> None:
    mem = Memory(db_url, embedder=embedder, config=MemoryConfig(max_text_chars=100))
    try:
        with pytest.raises(ScopeError):
            mem.add("no scope given")
        with pytest.raises(ScopeError):
            mem.add("empty tenant", scope={"user": "alice"})
        with pytest.raises(EmptyTextError):
            mem.add("   ", scope="t")
        with pytest.raises(TextTooLongError):
            mem.add("x" * 101, scope="t")
        with pytest.raises(InvalidInputError):
            mem.add("nul \x00 byte", scope="t")
        with pytest.raises(InvalidInputError):
            mem.add("bad metadata", scope="t", metadata={"x": object()})
        with pytest.raises(InvalidInputError):
            mem.add([], scope="t")
        with pytest.raises(InvalidInputError):
            mem.search("q", scope="t", k=0)
        with pytest.raises(NotFoundError):
            mem.update("0190f0f0-0000-7000-8000-000000000000", scope="t", text="x")
        # one bad item fails the whole batch
        with pytest.raises(EmptyTextError, match="item 2"):
            mem.add(["fine one", "fine two", ""], scope="t")
        assert mem.stats(scope="t").records == 0
        # a clash inside the store (duplicate id) also rolls the whole batch back
        first = mem.add("original", scope="t")
        with pytest.raises(ConflictError):
            mem.add([NewRecord(text="new one"), NewRecord(text="dupe", id=first.id)], scope="t")
        assert mem.stats(scope="t").records == 1
    finally:
        mem.close()


def test_recency_and_mmr(mem: Memory) -> None:
    old = mem.add("Team lunch is on Friday", valid_from=datetime.now(UTC) - timedelta(days=365))
    new = mem.add("Team lunch is on Thursday", valid_from=datetime.now(UTC))
    plain = mem.search("when is team lunch", k=2, mode="lexical").records
    assert {r.id for r in plain} == {old.id, new.id}
    recent = mem.search("when is team lunch", k=2, recency_half_life_days=7, recency_weight=0.9, explain=True)
    assert (
        recent.hits[0].record.id == new.id and recent.hits[0].signals.recency > recent.hits[1].signals.recency
    )
    mem.add(
        [
            "The cafe opens at 8am",
            "The cafe opens at 8 am.",
            "The cafe opens at eight in the morning",
            "Parking is free on weekends",
        ]
    )
    diverse = mem.search("cafe opening time", k=2, mmr_lambda=0.3, explain=True).records
    assert sum("cafe" in r.text for r in diverse) == 1, "MMR keeps near-duplicates from filling the top k"
    assert mem.search("cafe opening time", k=2).records[1].text.startswith("The cafe")


def test_export_import_round_trip_is_exact(mem: Memory, make_url, embedder) -> None:
    recs = _seed(mem)
    mem.update(recs[0].id, text="Alice moved to Munich in 2024", reason="update")
    mem.invalidate(recs[1].id, reason="cured")
    mem.delete(recs[2].id)
    first = io.StringIO()
    lines = mem.export(first)
    assert lines == 7 + 8  # 7 versions (5 adds, an update, an invalidation) + 8 events
    for backend in ("sqlite", "postgres"):
        other = Memory(make_url(backend), embedder=embedder, scope="acme")
        try:
            assert other.import_(io.StringIO(first.getvalue())) == 7
            second = io.StringIO()
            other.export(second)
            assert second.getvalue() == first.getvalue(), backend
            assert (
                recs[2].id not in other.search("dog", include_invalidated=True, k=10).ids
            )  # deleted stays so
            assert other.history(recs[0].id)[1].reason == "update"
            with pytest.raises(ConflictError):
                other.import_(io.StringIO(first.getvalue()))  # ids clash: nothing half-imported
            assert other.stats().versions == 7
        finally:
            other.close()
    with pytest.raises(InvalidInputError):
        mem.import_(io.StringIO('{"type": "not-memq"}\n'))


def test_embedder_switch_is_refused_unless_reembedded(db_url: str, embedder) -> None:
    mem = Memory(db_url, embedder=embedder, scope="acme")
    _seed(mem)
    mem.close()
    other = Memory(db_url, embedder=HashingEmbedder(dim=64), scope="acme")
    try:
        with pytest.raises(DimensionMismatchError, match="reembed"):
            other.search("dog")
        with pytest.raises(DimensionMismatchError):
            other.add("new text")
        assert other.reembed(HashingEmbedder(dim=64)) == 5
        assert other.store.embedding_space() == (HashingEmbedder(dim=64).model_id, 64)
        assert other.search("golden retriever", mode="dense", k=1).records[0].text.startswith("Carol")
        other.add("added after the switch")
    finally:
        other.close()
    back = Memory(db_url, embedder=embedder, scope="acme")
    try:
        with pytest.raises(DimensionMismatchError):
            back.search("dog")
    finally:
        back.close()


def test_links_provenance_and_retrieval_log(mem: Memory) -> None:
    a = mem.add("Alice met Bob at the conference", metadata={})
    b = mem.add(
        {
            "text": "Alice and Bob started a company",
            "provenance": {"source": "chat", "source_message_ids": ["m1", "m2"], "parent_ids": [a.id]},
            "links": [{"target": a.id, "type": "follows"}],
        }
    )
    got = mem.get(b.id)
    assert got.provenance.source == "chat" and got.provenance.source_message_ids == ["m1", "m2"]
    assert [(link.target, link.type) for link in got.links] == [(a.id, "follows")]
    assert mem.list(filters={"source": "chat"}).records[0].id == b.id
    updated = mem.update(b.id, text="Alice and Bob founded a startup")
    assert [(link.target, link.type) for link in updated.links] == [(a.id, "follows")]
    r = mem.search("company founders", k=2)
    assert len(r.ids) == 2 and len(r) == 2


# -- apply_writes: a whole write plan in one transaction ------------------------------------------------


def _fresh(mem: Memory, texts: list[str]) -> list:
    """Version-1 records with vectors, not yet written (as a manager's plan makes them)."""
    from memq.validate import build_records

    records = build_records(
        [NewRecord(text=t) for t in texts], scope=Scope(tenant="acme"), config=mem.config, defaults={}
    )
    for record, vector in zip(records, mem.embedder.embed_documents(texts), strict=True):
        record.embedding = [float(x) for x in vector]
        record.embedding_model = mem.embedder.model_id
    return records


def _next(mem: Memory, record_id: str, op: HistoryOp, reason: str, **changes):
    """The next version of a stored record as a VersionChange (built from what is current now)."""
    from memq.store import VersionChange
    from memq.validate import next_version

    current = mem.store.get("acme", [record_id], with_embedding=True)[0]
    new = next_version(current, changes, mem.config)
    if new.text != current.text:
        new.embedding = [float(x) for x in mem.embedder.embed_documents([new.text])[0]]
    return VersionChange("acme", record_id, new, op, actor="manager:test", reason=reason)


def _state(mem: Memory, ids: list[str]) -> tuple:
    out = io.StringIO()
    mem.export(out, all_tenants=True)
    # ``bytes`` is the file/relation size: rolled-back rows may leave it changed (pages, dead tuples)
    stats = mem.stats().model_dump(exclude={"bytes"})
    return out.getvalue(), stats, [_history(mem, i) for i in ids]


def _history(mem: Memory, record_id: str) -> list | None:
    try:
        return mem.history(record_id)
    except NotFoundError:
        return None  # never written


def test_apply_writes_is_one_transaction_that_writes_every_part(mem: Memory) -> None:
    from memq.store import InsertGroup, WriteBatch

    recs = _seed(mem)
    new = _fresh(mem, ["Erin keeps bees on her roof", "Frank learns the cello", "Gina sails to Crete"])
    first = _next(mem, recs[0].id, HistoryOp.UPDATE, "more detail", text="Alice moved to Munich in 2024")
    second = first.new.model_copy(update={"version": first.new.version + 1})  # then the same text again
    batch = WriteBatch(
        "acme",
        inserts=[
            InsertGroup(new[:2], HistoryOp.ADD, "manager:test", "fact A"),
            InsertGroup(new[2:], HistoryOp.ADD, "manager:test", "fact B"),
        ],
        versions=[
            first,
            type(first)("acme", recs[0].id, second, HistoryOp.UPDATE, "manager:test", "decision: NOOP"),
            _next(mem, recs[1].id, HistoryOp.INVALIDATE, "cured", valid_to=datetime.now(UTC)),
        ],
        stats={new[0].id: {"agree": 1.0}, recs[2].id: {"agree": 0.5, "agree_total": 1.0}},
    )
    written = mem.store.apply_writes(batch)
    assert [(w.id, w.version) for w in written] == [(recs[0].id, 2), (recs[0].id, 3), (recs[1].id, 2)]
    assert mem.stats().records == 8 and mem.stats().versions == 11
    assert [(e.op, e.reason) for e in mem.history(new[2].id)] == [(HistoryOp.ADD, "fact B")]
    assert [(e.version, e.reason) for e in mem.history(recs[0].id)][1:] == [
        (2, "more detail"),
        (3, "decision: NOOP"),
    ]
    assert mem.get(recs[0].id).text == "Alice moved to Munich in 2024"
    assert mem.get(recs[1].id).valid_to is not None
    assert mem.get(new[0].id).utility.stats == {"agree": 1.0}
    assert mem.get(recs[2].id).utility.stats == {"agree": 0.5, "agree_total": 1.0}
    assert mem.search("who keeps bees?", k=1).records[0].id == new[0].id  # vectors and lexical index
    assert mem.store.verify_index()
    assert mem.store.apply_writes(WriteBatch("acme")) == []


@pytest.mark.parametrize("failure", ["stale version", "deleted record", "id clash"])
def test_apply_writes_whose_last_part_fails_writes_nothing(mem: Memory, failure: str) -> None:
    from memq.store import InsertGroup, WriteBatch

    recs = _seed(mem)
    new = _fresh(mem, ["Erin keeps bees on her roof", "Frank learns the cello"])
    versions = [_next(mem, recs[0].id, HistoryOp.UPDATE, "detail", text="Alice moved to Munich in 2024")]
    if failure == "stale version":
        last = _next(mem, recs[3].id, HistoryOp.UPDATE, "decision", metadata={"x": 1})
        mem.update(recs[3].id, text="Dave runs two marathons every spring")  # a concurrent writer wins
        versions.append(last)
        expected: type[Exception] = ConflictError
    elif failure == "deleted record":
        last = _next(mem, recs[3].id, HistoryOp.INVALIDATE, "contradicted", valid_to=datetime.now(UTC))
        mem.delete(recs[3].id)
        versions.append(last)
        expected = NotFoundError
    else:
        new.append(recs[4].model_copy())  # an id that exists: the last insert group clashes
        expected = ConflictError
    inserts = [
        InsertGroup(new[:1], HistoryOp.ADD, "manager:test", "a"),
        InsertGroup(new[1:], HistoryOp.ADD, "manager:test", "b"),
    ]
    if failure == "id clash":
        versions, inserts = [], [*inserts, InsertGroup([recs[0].model_copy()], HistoryOp.ADD, None, "c")]
    batch = WriteBatch("acme", inserts=inserts, versions=versions, stats={recs[2].id: {"agree": 1.0}})
    ids = [r.id for r in recs] + [r.id for r in new]
    before = _state(mem, ids)
    with pytest.raises(expected):
        mem.store.apply_writes(batch)
    assert _state(mem, ids) == before  # export, stats and every history: not one part was written
    assert mem.get(recs[2].id).utility.stats == {}
    assert mem.store.verify_index()
    # the store goes on: a later write lands whole, and search finds it (the index caught up)
    later = mem.add("Hugo collects vintage maps")
    assert mem.search("who collects maps?", k=1).records[0].id == later.id
    assert mem.store.verify_index()


def test_apply_writes_rejects_a_batch_naming_another_tenant(mem: Memory) -> None:
    from memq.store import InsertGroup, WriteBatch

    record = _fresh(mem, ["Erin keeps bees"])[0]
    with pytest.raises(InvalidInputError):
        WriteBatch("other", inserts=[InsertGroup([record])])


def test_async_apply_writes_is_one_transaction(db_url: str, embedder) -> None:
    """The async stores (native PostgreSQL, SQLite on its worker thread) keep the same contract."""
    import asyncio

    from memq import AsyncMemory
    from memq.store import InsertGroup, WriteBatch

    sync = Memory(db_url, embedder=embedder, scope="acme")
    try:
        recs = _seed(sync)
        new = _fresh(sync, ["Erin keeps bees on her roof"])
        stale = _next(sync, recs[0].id, HistoryOp.UPDATE, "decision", metadata={"x": 1})
        good = _next(sync, recs[1].id, HistoryOp.UPDATE, "decision", metadata={"y": 2})
        sync.update(recs[0].id, text="Alice moved to Munich in 2024")
    finally:
        sync.close()

    async def run() -> None:
        mem = await AsyncMemory.open(db_url, embedder=embedder, scope="acme")
        try:
            before = await mem.export(out := io.StringIO(), all_tenants=True), out.getvalue()
            bad = WriteBatch("acme", inserts=[InsertGroup(new)], versions=[good, stale])
            with pytest.raises(ConflictError):
                await mem.store.apply_writes(bad)
            after = await mem.export(out := io.StringIO(), all_tenants=True), out.getvalue()
            assert after == before
            written = await mem.store.apply_writes(
                WriteBatch("acme", inserts=[InsertGroup(new)], versions=[good])
            )
            assert [(w.id, w.version) for w in written] == [(recs[1].id, 2)]
            assert (await mem.get(new[0].id)).text == new[0].text
            assert (await mem.stats()).versions == 5 + 1 + 1 + 1
        finally:
            await mem.close()

    asyncio.run(run())


def test_insert_keeps_each_records_links_and_utility_across_tenants(mem: Memory) -> None:
    """One ``insert`` of records of two tenants, some with links and learned utility, some without:
    each comes back with exactly its own (a default utility writes no row)."""
    from memq.types import Link, MemoryRecord, Utility

    def record(tenant: str, text: str, links: list[Link], utility: Utility) -> MemoryRecord:
        return MemoryRecord(scope=Scope(tenant=tenant), text=text, links=links, utility=utility)

    a1 = record("acme", "plain", [], Utility())
    a2 = record("acme", "linked", [Link(target=a1.id, type="cites")], Utility(q=0.9, n_shown=3, n_used=2))
    b1 = record(
        "beta", "other tenant", [Link(target="elsewhere")], Utility(q=0.1, n_shown=1, stats={"s": 1.0})
    )
    # links made together come back in target order, whatever order they were given in
    a3 = record("acme", "two links", [Link(target="zz", type="cites"), Link(target="aa")], Utility())
    mem.store.insert([a1, a2, b1, a3])
    got = {r.id: r for r in mem.store.get("acme", [a1.id, a2.id, a3.id]) + mem.store.get("beta", [b1.id])}
    for want in (a1, a2, b1):
        assert got[want.id].links == want.links
        assert got[want.id].utility.model_dump() == want.utility.model_dump()
    assert got[a3.id].links == [Link(target="aa"), Link(target="zz", type="cites")]
    assert mem.store.get("acme", [b1.id]) == [] and mem.store.get("beta", [a2.id]) == []
