"""Per-key request limits behind one small interface: the in-process limiter serves one
replica; a shared one (Redis, PostgreSQL) can take its place when the service scales out."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from medserve.errors import RateLimited

WINDOW_S = 60


class RateLimiter(Protocol):
    """Counts requests per API key; ``check`` may block (a shared store is a network call),
    so callers run it off the event loop."""

    def check(self, key_id: str) -> None:
        """Count one request for ``key_id``; RateLimited (with a retry delay) when the key
        has used up its current window."""
        ...


class MemoryRateLimiter:
    """Fixed one-minute windows per key, in this process only; 0 requests per minute means
    no limit. Safe to share between threads."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = self._clock()
        window = int(now // WINDOW_S)
        with self._lock:
            start, count = self._windows.get(key_id, (window, 0))
            if start != window:
                start, count = window, 0
            if count >= self.per_minute:
                retry_after = max(1, math.ceil((window + 1) * WINDOW_S - now))
                raise RateLimited(
                    f"rate limit of {self.per_minute} requests per minute reached for this "
                    f"key; retry in {retry_after} s",
                    retry_after,
                )
            self._windows[key_id] = (start, count + 1)
