"""The manager protocol, the registry, ``append`` and ``dedupe`` (no LLM): real SQLite, real MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from memq import InvalidInputError, Memory, Scope
from memq.manage import MANAGERS, Manager, ManageResult, make_manager
from memq.manage.dedupe import normalise, text_hash


@pytest.fixture
def mem(tmp_path: Path, embedder) -> Memory:
    m = Memory(tmp_path / "m.db", embedder=embedder, scope="acme")
    yield m
    m.close()


def test_registry_builds_every_manager_and_validates_params() -> None:
    for name in MANAGERS:
        mgr = make_manager(name)
        assert isinstance(mgr, Manager)
        assert mgr.name == name
    assert make_manager("dedupe", threshold=0.8).params.threshold == 0.8
    with pytest.raises(InvalidInputError, match="unknown manager"):
        make_manager("nope")
    with pytest.raises(InvalidInputError, match="threshold"):
        make_manager("dedupe", threshold=1.5)
    with pytest.raises(InvalidInputError, match="bogus"):
        make_manager("dedupe", bogus=1)


def test_normalised_hash() -> None:
    assert normalise("  Alice   LIVES in Berlin. ") == "alice lives in berlin"
    assert text_hash("Alice lives in Berlin") == text_hash("alice lives in berlin!")
    assert text_hash("Alice lives in Berlin") != text_hash("Alice lives in Munich")


def test_append_manager_logs_each_write(mem: Memory) -> None:
    result = mem.add(["Alice moved to Berlin", "Bob likes tea"], manager="append")
    assert isinstance(result, ManageResult)
    assert [d.op for d in result.decisions] == ["ADD", "ADD"]
    assert len(result.written) == 2 and all(r.embedding is None for r in result.written)
    for record in result.written:
        (event,) = mem.history(record.id)
        assert event.actor == "manager:append" and event.reason == "append: stored as given"
    assert mem.stats().records == 2
    assert mem.usage().total.calls == 0  # no LLM


def test_dedupe_exact_duplicate_merges_into_existing(mem: Memory) -> None:
    first = mem.add("Alice moved to Berlin in 2021", metadata={"topic": "travel"})
    result = mem.add(
        "alice moved to berlin in 2021!", manager="dedupe", metadata={"source": "chat", "topic": "x"}
    )
    assert [d.op for d in result.decisions] == ["MERGE"]
    assert result.decisions[0].record_id == first.id
    assert "exact duplicate" in result.decisions[0].reason
    assert mem.stats().records == 1  # nothing new stored
    kept = mem.get(first.id)
    assert kept.version == 2 and kept.text == first.text
    assert kept.metadata == {"topic": "travel", "source": "chat"}  # union; the existing value wins
    last = mem.history(first.id)[-1]
    assert last.actor == "manager:dedupe" and "exact duplicate" in (last.reason or "")


def test_dedupe_near_duplicate_threshold_is_configurable(mem: Memory) -> None:
    first = mem.add("Bob is allergic to peanuts")
    near = "Bob is allergic to peanuts and cashews"
    strict = mem.add(near, manager="dedupe", manager_params={"threshold": 0.999})
    assert [d.op for d in strict.decisions] == ["ADD"]
    assert mem.stats().records == 2
    other = mem.add(near + ".", manager="dedupe", manager_params={"threshold": 0.7})
    # the closest record is now the just-stored near text (exact after normalisation)
    assert other.decisions[0].op == "MERGE"
    assert "exact duplicate" in other.decisions[0].reason
    loose = mem.add("Bob has a peanut allergy", manager=make_manager("dedupe", threshold=0.6))
    assert loose.decisions[0].op == "MERGE"
    assert "near-duplicate" in loose.decisions[0].reason and "(cos 0." in loose.decisions[0].reason
    assert loose.decisions[0].record_id in {first.id, strict.written[0].id}
    assert mem.stats().records == 2


def test_dedupe_within_one_batch_and_scope(mem: Memory) -> None:
    result = mem.add(
        ["Carol adopted a dog named Max", "carol adopted a dog named max.", "Dave runs marathons"],
        manager="dedupe",
    )
    assert [d.op for d in result.decisions] == ["MERGE", "ADD", "ADD"]
    assert mem.stats().records == 2
    # the same text for another user is not a duplicate of this scope's record
    other = mem.add("Carol adopted a dog named Max", manager="dedupe", scope=Scope(tenant="acme", user="zed"))
    assert [d.op for d in other.decisions] == ["ADD"]
    assert mem.stats().records == 3
    # different kinds never merge
    note = mem.add("Dave runs marathons", kind="note", manager="dedupe")
    assert [d.op for d in note.decisions] == ["ADD"]


def test_manager_params_need_a_name(mem: Memory) -> None:
    with pytest.raises(InvalidInputError, match="manager_params"):
        mem.add("x", manager=make_manager("append"), manager_params={"a": 1})
    with pytest.raises(InvalidInputError):
        mem.add("x", manager=42)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="actor"):
        mem.add("x", manager="append", actor="me")
    assert mem.stats().records == 0


def test_config_manager_applies_when_add_names_none(tmp_path: Path, embedder) -> None:
    from memq import MemoryConfig

    config = MemoryConfig(manager="dedupe", manager_params={"threshold": 0.95})
    with Memory(tmp_path / "c.db", embedder=embedder, scope="acme", config=config) as m:
        first = m.add("Alice lives in Berlin")
        again = m.add("alice lives in berlin!")
        assert isinstance(first, ManageResult) and isinstance(again, ManageResult)
        assert [d.op for d in first.decisions] == ["ADD"]
        assert [d.op for d in again.decisions] == ["MERGE"]
        assert again.decisions[0].record_id == first.decisions[0].record_id
        assert len(m.list().records) == 1
        plain = m.add("Bob likes tea", manager="append")  # an explicit manager wins over the config's
        assert isinstance(plain, ManageResult) and plain.manager == "append"
    config = MemoryConfig(manager="dedupe", manager_params={"threshold": 2.0})
    with Memory(tmp_path / "d.db", embedder=embedder, scope="acme", config=config) as m:
        with pytest.raises(InvalidInputError, match="threshold"):
            m.add("Alice lives in Berlin")
        assert m.list().records == []  # a bad configured manager writes nothing
