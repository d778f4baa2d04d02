"""UUIDv7 ids (RFC 9562): 48-bit millisecond timestamp, then randomness.

Ids made by one process are strictly increasing (a counter breaks ties inside a millisecond),
so they sort by creation time — the property ``list`` pagination relies on.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id() -> str:
    """A new UUIDv7 as a lowercase hex string with dashes."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq >= 1 << 12:  # 12-bit counter exhausted: borrow the next millisecond
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF  # leave headroom for the counter
        _last_ms = ms
        seq = _seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= seq << 64  # rand_a used as a monotonic counter
    value |= 0b10 << 62  # variant
    value |= rand_b
    return str(uuid.UUID(int=value))


def id_timestamp_ms(record_id: str) -> int:
    """The creation time (Unix milliseconds) encoded in a UUIDv7."""
    return uuid.UUID(record_id).int >> 80
