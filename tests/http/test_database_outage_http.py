"""The service while its PostgreSQL database is away, and after it comes back.

A real server on a loopback port reaches PostgreSQL through a proxy the test cuts
(connections closed, new ones refused) or hangs (new ones held open, never answered). While
the database is away, every request that needs it is answered 503 application/problem+json
(never a 500, a dropped connection or a hang), /readyz says not ready and /healthz stays
up; once it is back, the same requests are served again without a restart, and every
request answered 200 has its audit record.

No timing is asserted: a request that takes longer than the client's timeout is a hang and
fails the test, however long the rest takes."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import make_url

from support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.postgres

# Longer than this is a hang (httpx raises ReadTimeout, and the test fails on it).
CLIENT_TIMEOUT_S = 15
# How long the service may take to serve again once the database is back.
RECOVERY_DEADLINE_S = 15
# Short, so that the test soon reaches the requests whose key must be looked up again.
KEY_CACHE_S = 0.5
PROBLEM_JSON = "application/problem+json"
_request_ids = (f"outage-{n}" for n in itertools.count())


def calls(heart_records: list[dict]) -> list[tuple[str, str, dict | None]]:
    """Audited requests that touch the database in different ways: scoring (its audit
    record, the prediction log), the registry's tables, monitoring, the API document."""
    return [
        ("POST", "/v1/models/heart/predict", {"records": heart_records[:3]}),
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/heart", None),
        ("GET", "/v1/models/heart/monitoring", None),
        ("GET", "/openapi.json", None),
    ]


@pytest.fixture
def proxy(postgres_url: str) -> Iterator[TcpProxy]:
    """Requested before the service, so that it outlives the server's shutdown."""
    with TcpProxy(make_url(postgres_url).port or 5432) as running:
        yield running


@pytest.fixture
def service(proxy, postgres_url, start_service):
    through_proxy = make_url(postgres_url).set(port=proxy.port)
    return start_service(
        database_url=through_proxy.render_as_string(hide_password=False),
        server=True,
        key_cache_s=KEY_CACHE_S,
    )


class Caller:
    """Sends requests with the admin key, each with its own X-Request-ID, and keeps the ids
    of those answered 200 (each must have its audit record)."""

    def __init__(self, service) -> None:
        self.client = httpx.Client(
            base_url=service.url,
            headers={"Authorization": f"Bearer {service.keys['admin']}"},
            timeout=CLIENT_TIMEOUT_S,
        )
        self.anonymous = httpx.Client(base_url=service.url, timeout=CLIENT_TIMEOUT_S)
        self.answered: list[str] = []

    def send(self, method: str, path: str, body: dict | None = None) -> httpx.Response:
        request_id = next(_request_ids)
        response = self.client.request(
            method, path, json=body, headers={"X-Request-ID": request_id}
        )
        if response.status_code == 200:
            self.answered.append(request_id)
        return response

    def open_route(self, path: str) -> httpx.Response:
        """/healthz or /readyz, sent as a load balancer does: without a credential."""
        return self.anonymous.get(path)


@pytest.fixture
def caller(service) -> Iterator[Caller]:
    sender = Caller(service)
    with sender.client, sender.anonymous:
        yield sender


def assert_refused_cleanly(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.json()["status"] == 503 and response.json()["detail"]


def assert_served(caller: Caller, heart_records: list[dict]) -> None:
    for method, path, body in calls(heart_records):
        response = caller.send(method, path, body)
        assert response.status_code == 200, f"{method} {path}: {response.text}"
    assert caller.open_route("/readyz").status_code == 200


def wait_until_served(caller: Caller, heart_records: list[dict]) -> None:
    """Predict until it is answered 200; what comes back meanwhile is a clean 503."""
    method, path, body = calls(heart_records)[0]
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while (response := caller.send(method, path, body)).status_code != 200:
        assert_refused_cleanly(response)
        assert time.monotonic() < deadline, "not served again after the database came back"
        time.sleep(0.1)


def assert_every_answer_audited(service, caller: Caller) -> None:
    log = service.app.state.audit.log
    assert log.verify().ok
    answered = {record["request_id"] for record in log.export() if record["status"] == 200}
    assert {log.request_id_for(request_id) for request_id in caller.answered} <= answered


def test_requests_are_refused_with_503_while_the_database_is_cut_and_served_once_it_is_back(
    service, proxy, caller, heart_records
):
    assert_served(caller, heart_records)
    proxy.cut()
    # At once (the key still trusted from a moment ago), then with every key looked up
    # again in a database that is not there.
    for _ in range(2):
        for method, path, body in calls(heart_records):
            assert_refused_cleanly(caller.send(method, path, body))
        ready = caller.open_route("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert caller.open_route("/healthz").status_code == 200
        time.sleep(2 * KEY_CACHE_S)

    proxy.restore()
    wait_until_served(caller, heart_records)
    assert_served(caller, heart_records)
    assert_every_answer_audited(service, caller)


def test_the_service_is_ready_again_after_an_outage_without_a_request_to_end_it(
    service, proxy, caller, heart_records
):
    assert_served(caller, heart_records)
    proxy.cut()
    assert_refused_cleanly(caller.send(*calls(heart_records)[0]))  # the audit trail failed
    proxy.restore()
    # No audited request comes (a load balancer took the replica out of rotation on its
    # /readyz): the service must find out by itself that the database is back.
    deadline = time.monotonic() + RECOVERY_DEADLINE_S
    while caller.open_route("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "/readyz stayed 503 after the database came back"
        time.sleep(0.1)
    response = caller.send(*calls(heart_records)[0])
    assert response.status_code == 200, response.text  # the first request after: served
    assert_every_answer_audited(service, caller)


def test_a_database_that_stops_answering_holds_no_request_past_the_connect_timeout(
    service, proxy, caller, heart_records
):
    assert_served(caller, heart_records)
    proxy.hang()
    predict, models = calls(heart_records)[:2]
    assert_refused_cleanly(caller.send(*predict))  # its audit record cannot be written
    time.sleep(2 * KEY_CACHE_S)
    assert_refused_cleanly(caller.send(*models))  # its key cannot be looked up
    assert caller.open_route("/readyz").status_code == 503
    proxy.restore()
    wait_until_served(caller, heart_records)
    assert_served(caller, heart_records)
    assert_every_answer_audited(service, caller)
