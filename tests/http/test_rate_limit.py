"""The per-key rate limit: fixed one-minute windows, per key, safe across threads, and no
web framework underneath (a shared limiter for scaled-out replicas slots in beside it)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from medserve.errors import RateLimited
from medserve.http.problems import http_status
from medserve.security.rate_limit import MemoryRateLimiter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_key_gets_its_requests_per_minute_then_429_until_the_next_minute() -> None:
    clock = Clock(600.0 + 15.5)  # 15.5 s into a minute
    limiter = MemoryRateLimiter(3, clock=clock)
    for _ in range(3):
        limiter.check("k1")
    with pytest.raises(RateLimited, match="3 requests per minute") as refused:
        limiter.check("k1")
    assert refused.value.retry_after_s == 45 and http_status(refused.value) == 429
    limiter.check("k2")  # other keys count on their own
    clock.now = 659.2
    with pytest.raises(RateLimited) as refused:
        limiter.check("k1")
    assert refused.value.retry_after_s == 1
    clock.now = 660.0  # a new minute
    for _ in range(3):
        limiter.check("k1")


def test_zero_means_no_limit() -> None:
    limiter = MemoryRateLimiter(0)
    for _ in range(10_000):
        limiter.check("k1")


def test_threads_together_get_exactly_the_limit() -> None:
    limiter = MemoryRateLimiter(500, clock=Clock(60.0))
    allowed, start = [], threading.Barrier(8)

    def hammer() -> None:
        start.wait()
        for _ in range(100):
            try:
                limiter.check("shared")
                allowed.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 500


def test_rate_limiting_and_the_predictor_import_no_web_framework() -> None:
    code = (
        "import sys, medserve.security.rate_limit, medserve.scoring.predictor\n"
        "web = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'starlette', 'uvicorn'})\n"
        "assert not web, web"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_a_limiter_says_what_it_counts_and_for_whom() -> None:
    limiter = MemoryRateLimiter(
        1, clock=Clock(30.0), counted="requests without a valid API key", per="address"
    )
    limiter.check("192.0.2.7")
    with pytest.raises(RateLimited, match="1 requests without a valid API key per minute") as e:
        limiter.check("192.0.2.7")
    assert "this address" in e.value.message
    limiter.check("192.0.2.8")  # another address counts on its own


def test_many_addresses_seen_once_are_forgotten_the_next_minute() -> None:
    clock = Clock(60.0)
    limiter = MemoryRateLimiter(1, clock=clock)
    for n in range(10_000):
        limiter.check(f"2001:db8::{n:x}")
    clock.now = 120.0
    limiter.check("2001:db8::1")
    assert len(limiter._counts) == 1  # only this minute's counts are kept
