"""Audit by declaration over HTTP: a route that declares an AuditSubject leaves exactly one
record per request, refusals included; a request that reaches no route is audited as
"(unmatched)"; the health checks leave none. (Every route is walked in test_http.py.)"""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Depends

from medserve.config import Settings
from medserve.http.app import create_app
from medserve.http.deps import AnyKey, AuditSubject, audit_subject
from medserve.security.audit import AuditLog
from medserve.storage.keystore import KeyStore

PREDICT = "/v1/models/{name}/predict"


def audit_by_request(service) -> dict[str, list[dict]]:
    service.app.state.audit.flush()
    log = AuditLog(
        service.app.state.registry.engine, KeyStore(service.settings).purpose_key("audit")
    )
    assert log.verify().ok
    by_request: dict[str, list[dict]] = {}
    for record in log.export():
        by_request.setdefault(record["request_id"], []).append(record)
    return by_request


def only_record(service, request_id: str) -> dict:
    records = audit_by_request(service)[request_id]
    assert len(records) == 1, records
    return records[0]


def send(service, role, method, path, request_id, **kwargs):
    with service.client(role) as client:
        return client.request(method, path, headers={"X-Request-ID": request_id}, **kwargs)


@pytest.fixture
def limited_service(start_service):
    """Small limits, so that each refusal is one request away."""
    return start_service(max_body_bytes=20_000, max_records=20)


def test_each_refusal_of_a_declared_route_leaves_one_record(limited_service, heart_records):
    service = limited_service
    one, thirty = {"records": heart_records[:1]}, {"records": heart_records[:30]}
    path = "/v1/models/heart/predict"
    big_body = json.dumps({"records": heart_records[:5] * 20}).encode()
    cases = {
        # request id: (role, kwargs, status, model, model version, records)
        "no-key": (None, {"json": one}, 401, None, None, None),
        "wrong-role": ("auditor", {"json": one}, 403, None, None, None),
        "malformed": ("predictor", {"json": {"rows": []}}, 422, None, None, None),
        "invalid": ("predictor", {"json": {"records": [{"age": "x"}]}}, 422, "heart", 1, 1),
        "too-many": ("predictor", {"json": thirty}, 413, "heart", None, 30),
        "declared-too-big": ("trainer", {"content": big_body}, 413, None, None, None),
        "streamed-too-big": ("trainer", {"content": iter([big_body])}, 413, None, None, None),
    }
    for request_id, (role, kwargs, status, *_) in cases.items():
        headers = {"Content-Type": "application/json"} if "content" in kwargs else {}
        with service.client(role) as client:
            response = client.post(path, headers={"X-Request-ID": request_id, **headers}, **kwargs)
        assert response.status_code == status, (request_id, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    key_ids = {None: None, **service.key_ids}
    for request_id, (role, _, status, model, version, n_records) in cases.items():
        record = only_record(service, request_id)
        assert (record["route"], record["method"], record["status"]) == (PREDICT, "POST", status)
        assert (record["model"], record["model_version"], record["n_records"]) == (
            model,
            version,
            n_records,
        ), request_id
        # Refused before the key was read (401, a body over the limit): no key in the record.
        known = status not in (401, 413) or request_id == "too-many"
        assert record["key_id"] == (key_ids[role] if known else None), request_id


def test_the_route_declares_its_audit_not_its_url(tmp_path, serve_app):
    """The routes to come (FHIR, CDS Hooks) live outside /v1/: declaring an AuditSubject,
    on the route or where its router is included, is what audits them."""
    app = create_app(Settings(home=tmp_path / "home"))
    declared, included, undeclared = APIRouter(), APIRouter(), APIRouter()

    @declared.get("/fhir/RiskAssessment")
    def fhir_like(key: AnyKey, subject: AuditSubject) -> dict:
        subject.model, subject.model_version, subject.n_records = "heart", 3, 2
        return {}

    @included.get("/cds-services")
    def cds_like(key: AnyKey) -> dict:
        return {}

    @undeclared.get("/v1/not-a-model-route")
    def undeclared_route(key: AnyKey) -> dict:
        return {}

    app.include_router(declared)
    app.include_router(included, dependencies=[Depends(audit_subject)])
    app.include_router(undeclared)
    service = serve_app(app, app.state.settings)
    paths = {"fhir": "/fhir/RiskAssessment", "cds": "/cds-services", "v1": "/v1/not-a-model-route"}
    for request_id, path in paths.items():
        assert send(service, "auditor", "GET", path, request_id).status_code == 200
    by_request = audit_by_request(service)
    assert set(by_request) == {"fhir", "cds"}
    (fhir,), (cds,) = by_request["fhir"], by_request["cds"]
    assert (fhir["route"], fhir["model"], fhir["model_version"], fhir["n_records"]) == (
        "/fhir/RiskAssessment",
        "heart",
        3,
        2,
    )
    assert (cds["route"], cds["key_id"]) == ("/cds-services", service.key_ids["auditor"])


def test_a_rate_limited_request_leaves_one_record_with_its_key(start_service, heart_records):
    service = start_service(rate_limit_per_minute=1)
    path, one = "/v1/models/heart/predict", {"records": heart_records[:1]}
    assert send(service, "predictor", "POST", path, "first", json=one).status_code == 200
    assert send(service, "predictor", "POST", path, "second", json=one).status_code == 429
    first, second = only_record(service, "first"), only_record(service, "second")
    assert (first["status"], first["model"], first["model_version"]) == (200, "heart", 1)
    assert (second["route"], second["status"]) == (PREDICT, 429)
    assert second["key_id"] == service.key_ids["predictor"] and second["model"] is None


def test_a_request_that_reaches_no_route_is_audited_as_unmatched(service):
    requests = {
        "v1-unknown": ("GET", "/v1/nope", "predictor"),
        "v1-unknown-no-key": ("GET", "/v1/models/heart/predict/more", None),
        "outside-v1": ("GET", "/nothing-here", None),
        "slash-redirect": ("GET", "/v1/models/", "auditor"),
    }
    for request_id, (method, path, role) in requests.items():
        response = send(service, role, method, path, request_id, follow_redirects=False)
        assert response.status_code in (404, 307), (path, response.status_code)
    by_request = audit_by_request(service)
    for request_id, (method, _, _) in requests.items():
        (record,) = by_request[request_id]
        assert (record["route"], record["method"]) == ("(unmatched)", method)
        assert record["key_id"] is None and record["model"] is None


def test_a_wrong_method_on_a_declared_route_is_audited_as_that_route(service):
    response = send(service, "predictor", "DELETE", "/v1/models/heart", "wrong-method")
    assert response.status_code == 405
    assert response.headers["content-type"] == "application/problem+json"
    record = only_record(service, "wrong-method")
    assert (record["route"], record["status"]) == ("/v1/models/{name}", 405)


def test_health_checks_leave_no_record(limited_service):
    service = limited_service
    for request_id, path in {"live": "/healthz", "ready": "/readyz"}.items():
        assert send(service, None, "GET", path, request_id).status_code == 200
    # Also when refused: a body over the limit is refused before routing.
    too_big = send(service, None, "POST", "/healthz", "big", content=b"x" * 30_000)
    assert too_big.status_code == 413
    by_request = audit_by_request(service)
    assert not {"live", "ready", "big"} & set(by_request)
