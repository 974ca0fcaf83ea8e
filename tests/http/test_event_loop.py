"""The event loop stays free: while a 10,000-record request with explanations is being
scored, a health check and a one-record prediction are answered first. A real uvicorn
server (one event loop, as deployed), so the order the answers arrive in is the proof."""

from __future__ import annotations

import threading

import pytest

from medserve.security.api_keys import ApiKeyStore
from medserve.security.rate_limit import MemoryRateLimiter

BULK_RECORDS = 10_000


class Announcing(MemoryRateLimiter):
    """The service's own limiter, saying when one key's request has been let through (the
    key is checked before the records are scored, so the scoring starts right after)."""

    def __init__(self) -> None:
        super().__init__(per_minute=0)
        self.key_id: str | None = None
        self.passed = threading.Event()

    def check(self, key_id: str) -> None:
        super().check(key_id)
        if key_id == self.key_id:
            self.passed.set()


@pytest.mark.slow
def test_health_and_a_small_prediction_answer_while_a_large_explained_one_is_scored(
    start_service, heart_records
):
    limiter = Announcing()
    service = start_service(server=True, rate_limiter=limiter)
    bulk_key, bulk_token = ApiKeyStore(service.app.state.registry.engine).create("predictor")
    limiter.key_id = bulk_key.id
    bulk = [heart_records[i % len(heart_records)] for i in range(BULK_RECORDS)]
    answered: list[str] = []  # in the order the responses' headers arrive
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def call(label: str, method: str, path: str, token: str | None, body=None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        with service.client(role=None) as client:
            with client.stream(method, path, json=body, headers=headers) as response:
                with lock:
                    answered.append(label)
                response.read()
                statuses[label] = response.status_code

    predict = "/v1/models/heart/predict"
    large = threading.Thread(
        target=call, args=("large", "POST", predict, bulk_token, {"records": bulk, "explain": True})
    )
    large.start()
    assert limiter.passed.wait(timeout=120), "the large request never reached its key check"
    small = [
        threading.Thread(target=call, args=("health", "GET", "/healthz", None)),
        threading.Thread(
            target=call,
            args=("one", "POST", predict, service.keys["predictor"], {"records": bulk[:1]}),
        ),
    ]
    for thread in small:
        thread.start()
    for thread in [*small, large]:
        thread.join(timeout=300)
    assert statuses == {"large": 200, "health": 200, "one": 200}
    assert answered[-1] == "large", answered
