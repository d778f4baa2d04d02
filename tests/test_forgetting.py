"""Budgeted forgetting: capacity, the keep score, the archive and restore, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import pytest

from memq import ConflictError, HistoryOp, Memory, MemoryConfig, NotFoundError, Scope
from memq.learn.forgetting import ForgettingPolicy, keep_score, select_evictions
from memq.types import MemoryRecord, Utility

BACKENDS = ["sqlite", "postgres"]

GOOD = ["Alice moved to Berlin in 2021", "Bob is allergic to peanuts"]
BAD = ["The cafeteria serves soup on Fridays", "The printer on floor two is broken"]
NEW = ["Carol adopted a golden retriever", "Dave runs a marathon every spring"]

# every candidate passes memrl's similarity gate, so a k=4 search shows all four records
MEMRL_ALL = {"memrl": {"delta": -1.0, "k1": 10}}


# -- the pure score ----------------------------------------------------------------------------------


def test_keep_score_hand_computed() -> None:
    now = datetime(2025, 1, 31, tzinfo=UTC)
    # n = n_used = 2; mean = 2.5 / 4; uncertainty = sqrt(0.625 * 0.375 / 5); one half-life old;
    # usage = log1p(2) / log1p(4)
    u = Utility(n_shown=4, n_used=2, reward_sum=1.5, last_feedback_at=now - timedelta(days=30))
    expected = 0.625 + 0.21650635 + 0.5 * 0.5 + 0.25 * (1.0986123 / 1.6094379)
    assert keep_score(u, now, max_used=4, now=now) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(1.2621579, abs=1e-6)
    # never shown, 60 days old: mean 0.5, uncertainty sqrt(0.25 / 3), recency 0.25, no usage
    fresh = Utility()
    assert keep_score(fresh, now - timedelta(days=60), max_used=0, now=now) == pytest.approx(
        0.5 + 0.28867513 + 0.5 * 0.25, abs=1e-6
    )
    # shown 3 times, never used (n falls back to n_shown = 3): mean 1/5, uncertainty sqrt(0.16 / 6)
    shown = Utility(n_shown=3)
    assert keep_score(shown, now, max_used=0, now=now) == pytest.approx(0.2 + 0.16329932 + 0.5, abs=1e-6)
    # the weights are the policy's
    policy = ForgettingPolicy(w_uncertainty=0.0, w_recency=0.0, w_usage=0.0)
    assert keep_score(shown, now, max_used=0, now=now, policy=policy) == pytest.approx(0.2)
    half = ForgettingPolicy(half_life_days=60.0)
    assert keep_score(fresh, now - timedelta(days=60), max_used=0, now=now, policy=half) == pytest.approx(
        0.5 + math.sqrt(0.25 / 3) + 0.5 * 0.5
    )


def test_select_evictions_lowest_first_ties_oldest_id() -> None:
    now = datetime(2025, 1, 31, tzinfo=UTC)
    scope = Scope(tenant="t")

    def rec(rid: str, u: Utility, days: float = 0.0) -> MemoryRecord:
        return MemoryRecord(id=rid, scope=scope, text=rid, recorded_at=now - timedelta(days=days), utility=u)

    records = [
        rec("c", Utility(n_shown=3)),  # 0.863
        rec("a", Utility()),  # 1.289, tied with b
        rec("b", Utility()),
        rec("d", Utility(n_shown=1, n_used=1, reward_sum=1.0, last_feedback_at=now)),  # 1.97
    ]
    assert select_evictions(records, 4, now=now) == []
    assert select_evictions(records, 3, now=now) == ["c"]
    assert select_evictions(records, 1, now=now) == ["c", "a", "b"]
    assert select_evictions(records, 0, now=now) == ["c", "a", "b", "d"]


# -- the store and the Memory API ----------------------------------------------------------------------


@pytest.fixture
def mem(db_url: str, embedder) -> Memory:
    m = Memory(db_url, embedder=embedder, scope="acme", config=MemoryConfig(learner_params=MEMRL_ALL))
    yield m
    m.close()


def _feedback(mem: Memory, query: str, ids: set[str], reward: float) -> None:
    result = mem.search(query, k=4, policy="memrl")
    assert set(result.ids) >= ids
    mem.feedback(result.id, reward, used=sorted(ids))


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_capacity_archives_exactly_the_excess(db_url: str, embedder) -> None:
    config = MemoryConfig(capacity=3)
    with Memory(db_url, embedder=embedder, scope="acme", config=config) as mem:
        other = mem.add("A record of another user", scope=Scope(tenant="acme", user="zed"))
        added = [mem.add(t, scope=Scope(tenant="acme", user="u1")) for t in GOOD + BAD + NEW[:1]]
        visible = mem.list(scope=Scope(tenant="acme", user="u1")).records
        assert len(visible) == 3
        archived = mem.archived(scope=Scope(tenant="acme", user="u1")).records
        # all untouched: the keep scores differ only by recency, so the oldest went first
        assert [r.id for r in archived] == [r.id for r in added[:2]]
        assert mem.get(other.id).text == other.text  # another scope is not trimmed
        assert mem.forget(3, scope=Scope(tenant="acme", user="u1")) == []
        assert len(mem.forget(1, scope=Scope(tenant="acme", user="u1"))) == 2
        assert len(mem.list(scope=Scope(tenant="acme", user="u1")).records) == 1


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_low_utility_records_are_evicted_new_ones_protected(mem: Memory) -> None:
    good = mem.add(GOOD)
    bad = mem.add(BAD)
    good_ids, bad_ids = {r.id for r in good}, {r.id for r in bad}
    for _ in range(3):
        _feedback(mem, "facts about people", good_ids, 1.0)
        _feedback(mem, "office facts", bad_ids, 0.0)
    new = mem.add(NEW)  # never shown: the uncertainty bonus protects them
    for r in mem.list().records:
        if r.id in good_ids | bad_ids:
            assert r.utility.n_used == 3
    # by the formula: good mean 4/5, bad mean 1/5 (n = 3 uses each), new mean 1/2 with the largest
    # uncertainty (n = 0); recency is ~1 for all and usage is 1 for good and bad, 0 for new:
    # bad ≈ 0.2 + 0.163 + 0.5 + 0.25 < new ≈ 0.5 + 0.289 + 0.5 < good ≈ 0.8 + 0.163 + 0.5 + 0.25
    archived = mem.forget(4)
    assert set(archived) == bad_ids
    remaining = {r.id for r in mem.list().records}
    assert remaining == good_ids | {r.id for r in new}
    # one more slot less: a new record goes before the good ones
    assert mem.forget(3)[0] in {r.id for r in new}


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_archive_hides_lists_and_restores(mem: Memory) -> None:
    records = mem.add(
        [{"text": t, "metadata": {"n": i, "topic": "x"}} for i, t in enumerate(GOOD + BAD)],
        kind="note",
    )
    target = records[0]
    before = mem.get(target.id)
    mem.update(records[1].id, text="Bob is allergic to peanuts and shellfish")
    mem.delete(records[3].id, reason="user asked")  # a user's delete is not an archive
    archived_ids = mem.forget(1)
    assert len(archived_ids) == 2 and records[3].id not in archived_ids
    # all untouched: the updated record is the most recent; the other two go, oldest first
    assert archived_ids == [records[0].id, records[2].id]
    evicted = set(archived_ids)
    kept = records[1].id
    # hidden from list and search
    assert {r.id for r in mem.list(include_invalidated=True).records} == {kept}
    for text in GOOD + BAD:
        assert not evicted & set(mem.search(text, k=10).ids)
    # listed by archived(), id order, paged
    page = mem.archived(limit=1)
    assert len(page.records) == 1 and page.next_cursor is not None
    rest = mem.archived(cursor=page.next_cursor, limit=1)
    assert rest.next_cursor is None
    assert [r.id for r in page.records + rest.records] == sorted(evicted)
    assert all(r.deleted for r in page.records + rest.records)
    assert records[3].id not in {r.id for r in mem.archived().records}
    # history shows the archive event
    assert mem.history(target.id)[-1].op == HistoryOp.ARCHIVE
    # restore: same text, metadata and vector; searchable again
    old = mem.store.get("acme", [target.id], include_deleted=True, with_embedding=True)[0]
    restored = mem.restore(target.id)
    assert restored.is_current and restored.version == old.version + 1
    assert (restored.text, restored.metadata, restored.kind) == (old.text, old.metadata, old.kind)
    again = mem.store.get("acme", [target.id], with_embedding=True)[0]
    assert again.embedding == old.embedding
    assert target.id in mem.search(old.text, k=3).ids
    assert target.id not in {r.id for r in mem.archived().records}
    ops = [e.op for e in mem.history(target.id)]
    assert ops[-2:] == [HistoryOp.ARCHIVE, HistoryOp.RESTORE]
    assert (again.text, again.metadata) == (before.text, before.metadata)
    # restoring what is not archived: conflict; unknown: not found
    with pytest.raises(ConflictError):
        mem.restore(target.id)
    with pytest.raises(ConflictError):
        mem.restore(kept)
    with pytest.raises(ConflictError):
        mem.restore(records[3].id)  # soft-deleted by the user
    with pytest.raises(NotFoundError):
        mem.restore("0190f000-0000-7000-8000-000000000000")
    # it can be archived again
    assert mem.store.archive("acme", [target.id], reason="again", actor="test") == 1
    assert mem.store.archive("acme", [target.id], reason="again", actor="test") == 0


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
def test_export_import_round_trip_with_archive_events(mem: Memory, make_url, embedder) -> None:
    records = mem.add(GOOD + BAD)
    archived = mem.forget(2)
    mem.restore(archived[0])
    first = io.StringIO()
    mem.export(first)
    for backend in BACKENDS:
        other = Memory(make_url(backend), embedder=embedder, scope="acme")
        try:
            other.import_(io.StringIO(first.getvalue()))
            second = io.StringIO()
            other.export(second)
            assert second.getvalue() == first.getvalue(), backend
            assert [r.id for r in other.archived().records] == [archived[1]]
            assert len(other.list().records) == 3
            restored = other.restore(archived[1])
            assert restored.text in {r.text for r in records}
        finally:
            other.close()


@pytest.mark.parametrize("db_url", BACKENDS, indirect=True)
async def test_async_forget_archived_restore(db_url: str, embedder) -> None:
    from memq import AsyncMemory

    mem = await AsyncMemory.open(db_url, embedder=embedder, scope="acme", config=MemoryConfig(capacity=2))
    try:
        await mem.add(GOOD + BAD)
        assert len((await mem.list()).records) == 2
        archived = (await mem.archived()).records
        assert len(archived) == 2
        restored = await mem.restore(archived[0].id)
        assert restored.text == archived[0].text
        assert len(await mem.forget(2)) == 1
        current = (await mem.list()).records
        assert len(current) == 2
        with pytest.raises(ConflictError):
            await mem.restore(current[0].id)
        assert [e.op for e in await mem.history(archived[0].id)][-2:] == [
            HistoryOp.ARCHIVE,
            HistoryOp.RESTORE,
        ]
    finally:
        await mem.close()


def test_cli_forget_archived_restore(tmp_path, embedder) -> None:
    import json

    from typer.testing import CliRunner

    from memq.cli import app

    runner = CliRunner()
    db = ["--db", str(tmp_path / "cli.db"), "--tenant", "acme"]

    def ok(args: list[str]) -> str:
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        return result.output

    for text in GOOD + BAD:
        ok([*db, "add", text])
    gone = json.loads(ok([*db, "--json", "forget", "2"]))["archived"]
    assert len(gone) == 2
    page = json.loads(ok([*db, "--json", "archived"]))
    assert [r["id"] for r in page["records"]] == sorted(gone)
    assert "archived" in ok([*db, "archived"])
    restored = json.loads(ok([*db, "--json", "restore", gone[0]]))
    assert restored["id"] == gone[0] and restored["deleted"] is False
    assert "restored" in ok([*db, "restore", gone[1]])
    assert runner.invoke(app, [*db, "restore", gone[1]]).exit_code == 2  # not archived any more
    assert runner.invoke(app, [*db, "restore", "no-such-id"]).exit_code == 2
    assert "archived 0" in ok([*db, "forget", "10"])
