"""The ``learned:PATH`` manager: a trained policy file driving Memory.add, one write batch per add."""

from __future__ import annotations

import pytest

from memq import Memory
from memq.errors import InvalidInputError
from memq.manage import ManageResult, make_manager
from memq.types import HistoryOp
from rl_toy import supersede_policy


@pytest.fixture
def mem(tmp_path, embedder):
    m = Memory(tmp_path / "m.db", embedder=embedder, scope="acme")
    yield m
    m.close()


@pytest.fixture
def policy_path(tmp_path):
    return supersede_policy(k=5).save(tmp_path / "policy.json")


class _CountingStore:
    """Wraps the real store and counts the write calls an add makes."""

    def __init__(self, store) -> None:
        self._store = store
        self.calls: list[str] = []

    def __getattr__(self, name):
        attr = getattr(self._store, name)
        if name in ("apply_writes", "insert", "write_version"):

            def counted(*args, **kwargs):
                self.calls.append(name)
                return attr(*args, **kwargs)

            return counted
        return attr


def test_learned_manager_supersedes_in_one_batch(mem: Memory, policy_path) -> None:
    first = mem.add(
        ["Alice lives in the city of Paris.", "Bob lives in the city of Oslo."],
        manager=f"learned:{policy_path}",
    )
    assert isinstance(first, ManageResult) and first.manager == "learned"
    assert [d.op for d in first.decisions] == ["ADD", "ADD"]
    paris = next(r for r in first.written if "Paris" in r.text)

    counting = _CountingStore(mem.store)
    mem.store = counting  # type: ignore[assignment]
    try:
        result = mem.add(
            ["Alice lives in the city of Rome.", "Carol enjoys chess."], manager=f"learned:{policy_path}"
        )
    finally:
        mem.store = counting._store  # type: ignore[assignment]
    assert counting.calls == ["apply_writes"]  # the whole plan: one transaction
    assert [d.op for d in result.decisions] == ["INVALIDATE", "ADD", "ADD"]
    assert result.decisions[0].record_id == paris.id
    assert "p=" in result.decisions[0].reason

    hist = mem.history(paris.id)
    assert [h.op for h in hist] == [HistoryOp.ADD, HistoryOp.INVALIDATE]
    assert hist[-1].actor == "manager:learned"
    rome = next(r for r in result.written if r.text.startswith("Alice lives in the city of Rome"))
    assert [(ln.target, ln.type) for ln in rome.links] == [(paris.id, "supersedes")]
    top = mem.search("Which city does Alice live in?", k=1).records[0]
    assert "Rome" in top.text
    assert {r.text for r in mem.iter()} == {
        "Alice lives in the city of Rome.",
        "Bob lives in the city of Oslo.",
        "Carol enjoys chess.",
    }


def test_an_item_can_supersede_an_earlier_item_of_the_same_batch(mem: Memory, policy_path) -> None:
    result = mem.add(
        ["Dana lives in the city of Lima.", "Dana lives in the city of Quito."],
        manager=f"learned:{policy_path}",
    )
    assert [d.op for d in result.decisions] == ["ADD", "INVALIDATE", "ADD"]
    current = [r.text for r in mem.iter()]
    assert current == ["Dana lives in the city of Quito."]
    everything = mem.list(include_invalidated=True).records
    lima = next(r for r in everything if "Lima" in r.text)
    assert lima.valid_to is not None  # stored as ended, not dropped


def test_learned_manager_by_name_and_bad_paths(tmp_path, policy_path) -> None:
    assert make_manager(f"learned:{policy_path}").name == "learned"
    assert make_manager("learned", path=str(policy_path)).policy.k == 5
    with pytest.raises(InvalidInputError, match="no policy file"):
        make_manager(f"learned:{tmp_path / 'missing.json'}")
    (tmp_path / "junk.json").write_text("[1, 2]")
    with pytest.raises(InvalidInputError, match="not a memq write policy"):
        make_manager(f"learned:{tmp_path / 'junk.json'}")
    with pytest.raises(InvalidInputError, match="path"):
        make_manager("learned")


def test_a_bad_policy_path_writes_nothing(mem: Memory, tmp_path) -> None:
    with pytest.raises(InvalidInputError, match="no policy file"):
        mem.add("Eve lives in the city of Cairo.", manager=f"learned:{tmp_path / 'nope.json'}")
    assert list(mem.iter()) == []


def test_the_learned_manager_needs_neither_gymnasium_nor_torch(policy_path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from memq.manage import make_manager\n"
        f"assert make_manager('learned:{policy_path}').policy.k == 5\n"
        "print(sorted(m for m in ('gymnasium', 'torch', 'optuna', 'trl') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
