"""Request limits per key (an API key's id, or a client address for requests without a
valid key) behind one small interface: the in-process limiter serves one replica; the
shared one (``shared_rate_limit``, in Redis) takes its place when the service scales out."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol

from medserve.errors import RateLimited

WINDOW_S = 60


class RateLimiter(Protocol):
    """Counts requests per API key. ``check`` may block (a shared store is a network call):
    then ``blocking`` is True and callers run it off the event loop."""

    blocking: bool

    def check(self, key_id: str) -> None:
        """Count one request for ``key_id``; RateLimited (with a retry delay) when the key
        has used up its current window."""
        ...


class MemoryRateLimiter:
    """Fixed one-minute windows per key, in this process only; 0 requests per minute means
    no limit. Safe to share between threads. Only the current minute's counts are kept, so
    many keys (addresses) seen once cost no memory after their minute.

    ``counted`` and ``per`` name what is counted, for whom, in the message ("requests"
    and "key": "... 60 requests per minute reached for this key ...")."""

    blocking = False  # a dictionary under a lock: cheap enough for the event loop

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.time,
        *,
        counted: str = "requests",
        per: str = "key",
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._counted, self._per = counted, per
        self._window = -1
        self._counts: dict[str, int] = {}  # in self._window
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = self._clock()
        window = int(now // WINDOW_S)
        with self._lock:
            if window != self._window:  # a new minute: every earlier count has expired
                self._window, self._counts = window, {}
            count = self._counts.get(key_id, 0)
            if count >= self.per_minute:
                raise limit_reached(self.per_minute, self._counted, self._per, now)
            self._counts[key_id] = count + 1


def limit_reached(per_minute: int, counted: str, per: str, now: float) -> RateLimited:
    """The refusal once ``per_minute`` requests were counted in the window holding
    ``now``: retry when the next window starts."""
    window_end = (int(now // WINDOW_S) + 1) * WINDOW_S
    retry_after = max(1, math.ceil(window_end - now))
    return RateLimited(
        f"rate limit of {per_minute} {counted} per minute reached for this {per}; "
        f"retry in {retry_after} s",
        retry_after,
    )
