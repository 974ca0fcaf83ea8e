"""Admission before the body (http/admission.py): a caller without a valid key, or with a
role the route does not admit, is answered from the headers alone, its body never read;
refusals without a key are limited per client address; and the HTTP edge cases of
issue 10 (two Authorization headers, slash redirects echoing Host, non-JSON bodies)."""

from __future__ import annotations

import json
import socket

import pytest

from medserve.security.api_keys import ApiKeyStore

PREDICT = "/v1/models/heart/predict"
UNKNOWN_KEY = "ms_000000000000_" + "x" * 43
DECLARED_BODY_BYTES = 1024 * 1024  # under the body limit: refused for who sends it, not size


def answer_without_sending_the_body(
    url: str, headers: dict[str, str]
) -> tuple[int, dict, dict[str, str]]:
    """Send a request's headers announcing a 1 MiB body, then none of it: only a server
    that decides from the headers answers (the socket timeout bounds the wait)."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {PREDICT} HTTP/1.1", f"Host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {DECLARED_BODY_BYTES}", "", ""]
    with socket.create_connection((host, int(port)), timeout=15) as connection:
        connection.sendall("\r\n".join(lines).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            assert chunk, "the server closed the connection without an answer"
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        fields = dict(
            line.split(": ", 1) for line in head.decode("latin-1").lower().split("\r\n")[1:]
        )
        while len(body) < int(fields["content-length"]):
            body += connection.recv(65536)
    return int(head.split()[1]), json.loads(body), fields


def test_bad_credentials_and_wrong_roles_are_answered_before_the_body_arrives(start_service):
    service = start_service(server=True)
    assert service.url is not None
    json_type = {"Content-Type": "application/json"}
    cases = {
        "no key": ({}, 401),
        "unknown key": ({"Authorization": f"Bearer {UNKNOWN_KEY}"}, 401),
        "wrong role": ({"Authorization": f"Bearer {service.keys['auditor']}"}, 403),
    }
    for label, (headers, status) in cases.items():
        answered, problem, fields = answer_without_sending_the_body(
            service.url, {**json_type, **headers}
        )
        assert (answered, problem["status"]) == (status, status), label
        # No key: the rest of a large body is not even read; the connection is closed.
        assert (fields.get("connection") == "close") == (status == 401), label
    predictor = {"Authorization": f"Bearer {service.keys['predictor']}"}
    answered, problem, _ = answer_without_sending_the_body(
        service.url, {**predictor, "Content-Type": "text/plain"}
    )
    assert answered == 415 and "application/json" in problem["detail"]


def test_malformed_json_without_a_key_is_401_not_a_parser_detail(service):
    with service.client(role=None) as client:
        response = client.post(
            PREDICT, content=b'{"records": [1, 2', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert "JSON" not in response.text
    assert "connection" not in response.headers  # a small body is drained: kept alive


def test_an_unknown_path_needs_a_key_too(service):
    with service.client(role=None) as client:
        assert client.get("/v1/nothing-here").status_code == 401
    with service.client("predictor") as client:
        assert client.get("/v1/nothing-here").status_code == 404


def test_an_address_gets_its_unauthenticated_attempts_per_minute_then_429(
    start_service, heart_records
):
    service = start_service(unauthenticated_per_minute=3)
    one = {"records": heart_records[:1]}
    attempts = [
        {},
        {"Authorization": "Bearer hello"},
        {"Authorization": f"Bearer {UNKNOWN_KEY}"},
        {},
        {"Authorization": f"Bearer {UNKNOWN_KEY}"},
    ]
    with service.client(role=None) as client:
        answers = [client.post(PREDICT, json=one, headers=headers) for headers in attempts]
        assert client.get("/healthz").status_code == 200  # the health checks stay open
    assert [answer.status_code for answer in answers] == [401, 401, 401, 429, 429]
    limited = answers[-1]
    assert limited.headers["content-type"] == "application/problem+json"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert "3 requests without a valid API key per minute" in limited.json()["detail"]
    # A valid key from the same address is still served: only failures count.
    with service.client("predictor") as client:
        assert client.post(PREDICT, json=one).status_code == 200


def test_two_authorization_headers_are_a_bad_request(service, heart_records):
    token = service.keys["predictor"]
    with service.client(role=None) as client:
        response = client.post(
            PREDICT,
            json={"records": heart_records[:1]},
            headers=[("Authorization", f"Bearer {token}"), ("Authorization", "Bearer other")],
        )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "exactly one" in response.json()["detail"]


def test_a_trailing_slash_is_404_and_never_echoes_the_host_header(service):
    with service.client("auditor") as client:
        response = client.get(
            "/v1/models/", headers={"Host": "evil.example"}, follow_redirects=False
        )
    assert response.status_code == 404
    assert "evil.example" not in response.headers.get("location", "")
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "sent",
    [
        {"content": b'{"records": []}', "headers": {"Content-Type": "text/plain"}},
        {"data": {"records": "all"}},  # application/x-www-form-urlencoded
        {"content": b'{"records": []}', "headers": {"Content-Type": ""}},
    ],
    ids=["text", "form", "no-type"],
)
def test_a_body_that_is_not_json_is_415_naming_json(service, sent):
    with service.client("predictor") as client:
        response = client.post(PREDICT, **sent)
    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert "application/json" in response.json()["detail"]


def test_json_with_a_charset_or_a_json_suffix_is_read(service, heart_records):
    body = json.dumps({"records": heart_records[:1]}).encode()
    with service.client("predictor") as client:
        for media_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
            response = client.post(PREDICT, content=body, headers={"Content-Type": media_type})
            assert response.status_code == 200, (media_type, response.text)


def test_a_request_looks_its_key_up_once(service, heart_records, monkeypatch):
    keys = service.app.state.keys
    lookups: list[str] = []
    authenticate = keys.authenticate

    def counted(token: str):
        lookups.append(token)
        return authenticate(token)

    monkeypatch.setattr(keys, "authenticate", counted)
    with service.client("predictor") as client:
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
    assert len(lookups) == 1


def test_a_body_with_too_many_records_is_413_before_each_is_validated(start_service):
    """A list of numbers is no list of records, but its length says enough: 413 naming
    the limit, not one validation error per element (validating them held the loop)."""
    service = start_service(max_records=1_000)
    with service.client("predictor") as client:
        response = client.post(PREDICT, json={"records": list(range(50_000))})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert "50000 records in one request; the limit is 1000" in response.json()["detail"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_steady_caller_is_looked_up_once_per_cache_period(service, heart_records, monkeypatch):
    keys, recent = service.app.state.keys, service.app.state.recent_keys
    clock = Clock()
    monkeypatch.setattr(recent, "clock", clock)
    lookups: list[str] = []
    authenticate = keys.authenticate
    monkeypatch.setattr(
        keys, "authenticate", lambda token: lookups.append(token) or authenticate(token)
    )
    with service.client("predictor") as client:
        for _ in range(5):
            assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
        assert len(lookups) == 1
        clock.now += recent.ttl_s
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
    assert len(lookups) == 2


def test_a_revoked_key_is_refused_once_the_cache_period_has_passed(
    service, heart_records, monkeypatch
):
    recent = service.app.state.recent_keys
    clock = Clock()
    monkeypatch.setattr(recent, "clock", clock)
    with service.client("predictor") as client:
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
        # Revoked from another process (`medserve keys revoke`): the database says so.
        ApiKeyStore(service.app.state.registry.engine).revoke(service.key_ids["predictor"])
        clock.now += recent.ttl_s - 0.01  # still within the period this server trusts it
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
        clock.now += 0.01
        refused = client.post(PREDICT, json={"records": heart_records[:1]})
    assert refused.status_code == 401
    assert "revoked" in refused.json()["detail"]


def test_without_a_cache_period_a_revoked_key_is_refused_at_once(start_service, heart_records):
    service = start_service(key_cache_s=0)
    with service.client("predictor") as client:
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 200
        ApiKeyStore(service.app.state.registry.engine).revoke(service.key_ids["predictor"])
        assert client.post(PREDICT, json={"records": heart_records[:1]}).status_code == 401


def test_the_cache_keeps_no_token_and_forgets_the_oldest_past_its_size():
    from medserve.security import key_cache
    from medserve.security.api_keys import ApiKey

    recent = key_cache.RecentKeys(60)
    keys = [
        ApiKey(id=f"k{i:03d}", role="predictor", name=None, created_at=None, revoked_at=None)
        for i in range(key_cache.MAX_KEYS + 1)
    ]
    for index, key in enumerate(keys):
        recent.put(f"token-{index}", key)
    assert recent.get("token-0") is None  # the oldest went first
    assert recent.get(f"token-{key_cache.MAX_KEYS}") is keys[-1]
    assert not any(stored.startswith("token-") for stored in recent._keys)


def test_a_huge_declared_body_without_a_key_writes_no_audit_record(start_service, heart_records):
    """Found in review: a body declared over the limit was refused (413) before the key
    was checked, and each refusal became an audit record, past the address limit."""
    from sqlalchemy import text

    service = start_service(max_body_bytes=20_000, unauthenticated_per_minute=5)
    huge = {"Content-Length": str(10**12), "Content-Type": "application/json"}
    with service.client(role=None) as client:
        statuses = [client.post(PREDICT, headers=huge).status_code for _ in range(12)]
        statuses += [client.post("/nope", headers=huge).status_code for _ in range(3)]
    with service.client("predictor") as client:
        keyed = client.post(PREDICT, headers=huge)
    assert set(statuses[:5]) == {401} and set(statuses[5:]) == {429}
    assert keyed.status_code == 413 and "over the limit of 20000 bytes" in keyed.text
    service.app.state.audit.flush(timeout_s=10)
    with service.app.state.registry.engine.connect() as connection:
        rows = connection.execute(text("SELECT key_id, status FROM audit_log")).all()
    assert [(row.key_id, row.status) for row in rows] == [(service.key_ids["predictor"], 413)]
