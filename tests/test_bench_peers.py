"""The peer systems (mem0, chromadb) behind the bench protocol, on a small slice with the real MiniLM."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from memq.errors import InvalidInputError
from memq_bench.systems import BenchDoc, BenchSystem, Timed, make_system

PEERS = ["mem0", "chroma"]

# Two spaces of 15 short, distinct facts each (30 docs): one person's life per space.
ALICE = [
    "Alice adopted a grey cat named Pepper from the shelter.",
    "Alice runs a small bakery that sells sourdough bread.",
    "Alice is learning to play the cello on weekends.",
    "Alice flew to Lisbon for a conference on marine biology.",
    "Alice's favourite dessert is lemon meringue pie.",
    "Alice planted tomatoes and basil in her garden.",
    "Alice's brother works as a firefighter in Denver.",
    "Alice finished reading a novel about the French revolution.",
    "Alice bought a red bicycle to commute to work.",
    "Alice volunteers at the public library every Thursday.",
    "Alice is allergic to peanuts.",
    "Alice painted her kitchen walls yellow.",
    "Alice started a podcast about urban gardening.",
    "Alice's daughter turned seven in March.",
    "Alice ran her first marathon in under four hours.",
]
BOB = [
    "Bob repairs vintage motorcycles in his garage.",
    "Bob is training his dog Rex to catch a frisbee.",
    "Bob moved to a flat near the harbour last spring.",
    "Bob teaches chemistry at the local high school.",
    "Bob's favourite film is a 1970s science fiction classic.",
    "Bob goes fishing on the lake every Sunday morning.",
    "Bob is saving money to buy a sailboat.",
    "Bob cooked a spicy curry for his neighbours.",
    "Bob plays bass guitar in a jazz band.",
    "Bob broke his wrist while skiing in January.",
    "Bob collects old maps of the city.",
    "Bob's sister is a pilot for a cargo airline.",
    "Bob is building a treehouse for his nephews.",
    "Bob learned to speak Japanese at night school.",
    "Bob drinks green tea instead of coffee.",
]
WHEN = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)


def _docs(prefix: str, texts: list[str]) -> list[BenchDoc]:
    return [
        BenchDoc(key=f"{prefix}:{i}", text=t, when=WHEN, meta={"speaker": prefix, "at": WHEN, "turn": i})
        for i, t in enumerate(texts)
    ]


@pytest.fixture(scope="module", params=PEERS)
def loaded(request: pytest.FixtureRequest, embedder) -> Iterator[Timed]:
    """Each peer once per module, through Timed: Alice's facts one per add (like turns), Bob's in one add."""
    system = Timed(make_system(request.param, embedder))
    for doc in _docs("alice", ALICE):
        system.add("alice", [doc])
    system.add("bob room", _docs("bob", BOB))  # a space name with a space in it
    yield system
    system.close()


def test_is_a_bench_system(loaded: Timed) -> None:
    assert isinstance(loaded.system, BenchSystem)
    assert loaded.name == loaded.system.name


@pytest.mark.parametrize(
    ("space", "query", "expected"),
    [
        ("alice", "What is the name of Alice's cat?", "alice:0"),
        ("alice", "Which food is Alice allergic to?", "alice:10"),
        ("alice", "What instrument is Alice learning?", "alice:2"),
        ("bob room", "What does Bob teach at school?", "bob:3"),
        ("bob room", "What is Bob's dog called?", "bob:1"),
    ],
)
def test_obvious_query_finds_its_key(loaded: Timed, space: str, query: str, expected: str) -> None:
    keys = loaded.search(space, query, 5)
    assert keys[0] == expected
    assert len(keys) == 5 and len(set(keys)) == 5


def test_spaces_are_isolated(loaded: Timed) -> None:
    # A question about Alice asked in Bob's space only ever sees Bob's facts, and the reverse.
    bob_keys = loaded.search("bob room", "What is the name of Alice's cat?", 10)
    alice_keys = loaded.search("alice", "What is Bob's dog called?", 10)
    assert bob_keys and all(k.startswith("bob:") for k in bob_keys)
    assert alice_keys and all(k.startswith("alice:") for k in alice_keys)
    assert len(loaded.search("alice", "anything at all about Alice", 50)) == len(ALICE)


def test_unknown_space_is_empty(loaded: Timed) -> None:
    assert loaded.search("nobody-here", "What is the name of Alice's cat?", 5) == []


def test_bad_k_is_a_typed_error(loaded: Timed) -> None:
    with pytest.raises(InvalidInputError):
        loaded.search("alice", "cat", 0)


def test_timed_records_latency_and_footprint(loaded: Timed) -> None:
    loaded.search("alice", "Where did Alice fly for a conference?", 5)
    metrics = loaded.latency_metrics()
    assert len(loaded.add_ms) == len(ALICE) + 1
    assert metrics["add_ms_p50"] > 0 and metrics["search_ms_p50"] > 0
    assert metrics["search_ms_p95"] >= metrics["search_ms_p50"]
    assert metrics["records"] == len(ALICE) + len(BOB)
    assert metrics["bytes"] > 0
