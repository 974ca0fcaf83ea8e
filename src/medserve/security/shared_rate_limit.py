"""Request limits that every replica counts together, in Redis: the same fixed one-minute
windows as ``MemoryRateLimiter``, so N replicas admit a key's ``per_minute`` requests in
all, not N times as many.

Each check is one round trip: INCR of the window's counter and, for a new counter, its
expiry (both in one MULTI, so a counter never outlives its window and a crash between
the two cannot leave one). Counters are named by a hash of what is counted (a key id or
a client address), never by the value itself.

Fail closed: when Redis cannot be reached the check raises RegistryError (503), and the
request is refused rather than admitted uncounted.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import redis

from medserve.errors import ConfigError, RegistryError
from medserve.security.rate_limit import WINDOW_S, limit_reached

# A counter lives its window and this much more (clocks of replicas differ a little).
EXPIRY_SLACK_S = 5
# Redis answers in well under a millisecond on a LAN; a request waits at most this long.
SOCKET_TIMEOUT_S = 1.0
PREFIX = "medserve:limit"


def redis_client(url: str) -> Any:
    """A client for ``url`` (redis:// or rediss://) with short timeouts, thread-safe (its
    own connection pool); ConfigError for a URL Redis cannot read."""
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
    except ValueError as error:
        raise ConfigError(
            f"MEDSERVE_SHARED_STATE_URL is not a Redis URL ({error}); "
            "give redis://host:6379/0 or rediss://…"
        ) from None


class RedisRateLimiter:
    """Fixed one-minute windows per key, counted in Redis by every replica; 0 requests per
    minute means no limit (and no round trip). ``scope`` keeps this limit's counters apart
    from other limits' ("key", "address"); ``counted`` and ``per`` word the refusal as
    ``MemoryRateLimiter`` does."""

    blocking = True  # a network call: callers run it off the event loop

    def __init__(
        self,
        client: Any,
        per_minute: int,
        *,
        scope: str,
        counted: str = "requests",
        per: str = "key",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.per_minute = per_minute
        self._client = client
        self._scope = scope
        self._counted, self._per = counted, per
        self._clock = clock

    def check(self, key_id: str) -> None:
        if self.per_minute <= 0:
            return
        now = self._clock()
        window = int(now // WINDOW_S)
        digest = hashlib.sha256(key_id.encode()).hexdigest()[:32]
        counter = f"{PREFIX}:{self._scope}:{window}:{digest}"
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.incr(counter)
                # Every count renews the expiry (EXPIRE NX is Redis 7 only): the window's
                # number is in the key, so a renewal only delays its cleanup.
                pipe.expire(counter, WINDOW_S + EXPIRY_SLACK_S)
                count = int(pipe.execute()[0])
        except (redis.RedisError, OSError) as error:  # fail closed
            raise RegistryError(
                # Clients read this: the error's class, not its text (Redis's host and port).
                f"the shared rate limit (Redis) cannot be reached ({type(error).__name__}); "
                "requests are refused until it is back"
            ) from error
        if count > self.per_minute:
            raise limit_reached(self.per_minute, self._counted, self._per, now)
