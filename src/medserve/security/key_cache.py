"""Keys recently authenticated by this process, so that a steady caller's requests are
admitted without a database query, and so without leaving the event loop.

A key found here is trusted for ``ttl_s`` seconds after its last lookup in the database;
then it is looked up again. A key revoked meanwhile (``medserve keys revoke``, from
another process) is refused from its next lookup: at most ``ttl_s`` seconds later. Only
successes are kept (a wrong or revoked key always goes to the database, behind the
per-address limit), under the token's SHA-256, never the token itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from medserve.security.api_keys import ApiKey, token_hash

# Keys kept at most; past it the oldest lookups go first (a service has a few keys).
MAX_KEYS = 1024


class RecentKeys:
    """``get(token)`` the key if it was authenticated less than ``ttl_s`` ago, else None;
    ``put(token, key)`` after a successful lookup. Thread-safe; ``ttl_s`` 0 keeps none."""

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._keys: dict[str, tuple[ApiKey, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> ApiKey | None:
        if self.ttl_s <= 0:
            return None
        digest = token_hash(token)
        with self._lock:
            found = self._keys.get(digest)
            if found is None:
                return None
            key, checked_at = found
            if self.clock() - checked_at >= self.ttl_s:
                del self._keys[digest]
                return None
            return key

    def forget(self, key_id: str) -> None:
        """Trust ``key_id`` no more in this process (it was just revoked here)."""
        with self._lock:
            for digest in [d for d, (key, _) in self._keys.items() if key.id == key_id]:
                del self._keys[digest]

    def put(self, token: str, key: ApiKey) -> None:
        if self.ttl_s <= 0:
            return
        digest = token_hash(token)
        with self._lock:
            self._keys.pop(digest, None)
            if len(self._keys) >= MAX_KEYS:
                del self._keys[next(iter(self._keys))]  # the oldest lookup
            self._keys[digest] = (key, self.clock())
