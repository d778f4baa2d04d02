"""Per-key rate limit: a token bucket per API key, in memory, per process.

Each key earns ``rate`` tokens a second up to ``burst``; a request spends one. With N uvicorn
workers a key can reach N times the rate (each worker counts on its own) — documented, and enough
to stop a runaway client; a shared limit would need a shared store.
"""

from __future__ import annotations

import math
import threading
import time


class TokenBuckets:
    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token of ``key``: 0.0 when allowed, else the seconds until one is available."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > self.max_keys:  # forget the fullest buckets' owners: they are idle
                self._buckets.clear()
            return (1.0 - tokens) / self.rate

    @staticmethod
    def retry_after(wait: float) -> str:
        return str(max(1, math.ceil(wait)))
