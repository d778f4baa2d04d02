"""Record ids: UUIDv7, strictly increasing in one process."""

from __future__ import annotations

import time
import uuid

from memq.ids import id_timestamp_ms, new_id


def test_ids_are_uuid7_and_strictly_increasing() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for rid in ids[::499]:
        u = uuid.UUID(rid)
        assert str(u) == rid
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= id_timestamp_ms(rid) <= after + 2  # a full counter borrows the next ms
