"""Request limits counted in Redis by every replica: two apps on one registry and one Redis
admit a key's per-minute requests in all, and a Redis that is down refuses (503), never
admits uncounted and never answers 500."""

from __future__ import annotations

import time

import httpx
import pytest

from medserve.config import Settings
from medserve.errors import RateLimited, RegistryError
from medserve.http.app import create_app
from medserve.security.rate_limit import WINDOW_S
from medserve.security.shared_rate_limit import RedisRateLimiter, redis_client
from support.servers import ThreadServer, free_port

pytestmark = pytest.mark.redis


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_two_replicas_count_one_limit_together(redis_url) -> None:
    clock = Clock(600.0)
    replicas = [
        RedisRateLimiter(redis_client(redis_url), 5, scope="key", clock=clock) for _ in range(2)
    ]
    for n in range(5):
        replicas[n % 2].check("key-1")
    for replica in replicas:
        with pytest.raises(RateLimited, match="5 requests per minute") as refused:
            replica.check("key-1")
        assert 1 <= refused.value.retry_after_s <= WINDOW_S
    replicas[0].check("key-2")  # another key counts on its own
    clock.now += WINDOW_S  # the next window starts afresh, for every replica
    replicas[1].check("key-1")


def test_counters_name_no_address_and_expire_with_their_window(redis_url) -> None:
    client = redis_client(redis_url)
    limiter = RedisRateLimiter(client, 3, scope="address", clock=Clock(1_200.0))
    limiter.check("192.0.2.7")
    names = [name.decode() for name in client.keys("*")]
    assert len(names) == 1 and "192.0.2.7" not in names[0]
    assert 0 < client.ttl(names[0]) <= WINDOW_S + 5


def test_no_limit_means_no_round_trip() -> None:
    unreachable = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    RedisRateLimiter(unreachable, 0, scope="key").check("key-1")


def test_an_unreachable_redis_fails_closed() -> None:
    unreachable = redis_client(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RegistryError, match="shared rate limit \\(Redis\\) cannot be reached"):
        RedisRateLimiter(unreachable, 10, scope="key").check("key-1")


def _whole_window_left(margin_s: float = 10.0) -> None:
    """Wait out the current minute if it ends within ``margin_s`` (a test's counts must all
    fall in one window)."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < margin_s:
        time.sleep(left + 0.1)


def test_replicas_on_one_redis_refuse_a_key_past_its_limit(start_service, redis_url) -> None:
    first = start_service(shared_state_url=redis_url, rate_limit_per_minute=4)
    second = create_app(first.settings)  # a second replica: same registry, same Redis
    port = free_port()
    with ThreadServer(second, port):
        headers = {"Authorization": f"Bearer {first.keys['predictor']}"}
        with (
            first.client() as one,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as two,
        ):
            _whole_window_left()
            statuses = [(one if n % 2 else two).get("/v1/models").status_code for n in range(4)]
            assert statuses == [200] * 4
            for client in (one, two):
                refused = client.get("/v1/models")
                assert refused.status_code == 429
                assert refused.headers["content-type"].startswith("application/problem+json")
                assert "4 requests per minute" in refused.json()["detail"]
            other = first.client("trainer").get("/v1/models")  # another key: its own count
            assert other.status_code == 200


def test_the_redis_url_is_a_secret() -> None:
    settings = Settings(shared_state_url="redis://:s3cret@127.0.0.1:6379/15")
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings.model_dump())


def test_a_redis_that_is_down_refuses_with_503_not_500(start_service) -> None:
    service = start_service(shared_state_url=f"redis://127.0.0.1:{free_port()}/0")
    with service.client() as client:
        answer = client.get("/v1/models")
        assert answer.status_code == 503
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "Redis" in answer.json()["detail"]
        assert client.get("/healthz").status_code == 200  # alive, only not admitting
    with service.client(role=None) as anonymous:
        assert anonymous.get("/v1/models").status_code == 503  # counted per address: down too
