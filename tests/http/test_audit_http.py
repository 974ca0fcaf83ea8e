"""Audit by declaration over HTTP: a route that declares an AuditSubject leaves exactly one
record per request, refusals of a known key included; refusals before authentication are
counted, not audited; a request that reaches no route is audited as "(unmatched)"; the
health checks leave none. Each record is in the database before its answer leaves, and
when records cannot be written audited requests are refused (fail closed). (Every route
is walked in test_http.py.)"""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import text

from medserve.config import Settings
from medserve.errors import RegistryError
from medserve.http.app import create_app
from medserve.http.deps import AnyKey, AuditSubject, audit_subject
from medserve.security.audit import AuditLog
from medserve.storage.keystore import KeyStore

PREDICT = "/v1/models/{name}/predict"


class ByRequest(dict):
    """Audit records by the X-Request-ID a test sent: the trail holds each id's keyed hash
    (``AuditLog.request_id_for``), never the id itself."""

    def __init__(self, log: AuditLog) -> None:
        super().__init__()
        self._log = log
        for record in log.export():
            self.setdefault(record["request_id"], []).append(record)

    def __getitem__(self, client_id: str) -> list[dict]:
        return super().__getitem__(self._log.request_id_for(client_id))

    def sent(self, *client_ids: str) -> set[str]:
        """Those of ``client_ids`` that left a record."""
        return {i for i in client_ids if dict.__contains__(self, self._log.request_id_for(i))}


def audit_by_request(service) -> ByRequest:
    service.app.state.audit.flush()
    log = AuditLog(
        service.app.state.registry.engine, KeyStore(service.settings).purpose_key("audit")
    )
    assert log.verify().ok
    return ByRequest(log)


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
        "wrong-role": ("auditor", {"json": one}, 403, None, None, None),
        "malformed": ("predictor", {"json": {"rows": []}}, 422, None, None, None),
        "invalid": ("predictor", {"json": {"records": [{"age": "x"}]}}, 422, "heart", 1, 1),
        "too-many": ("predictor", {"json": thirty}, 413, "heart", None, 30),
        "declared-too-big": ("predictor", {"content": big_body}, 413, None, None, None),
        "streamed-too-big": ("predictor", {"content": iter([big_body])}, 413, None, None, None),
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
        # Refused from its headers (http/admission.py), after the key: audited with it.
        assert record["key_id"] == key_ids[role], request_id


def test_the_route_declares_its_audit_not_its_url(tmp_path, serve_app):
    """Routes outside /v1/ (as CDS Hooks' are): declaring an AuditSubject,
    on the route or where its router is included, is what audits them."""
    app = create_app(Settings(home=tmp_path / "home"))
    declared, included, undeclared = APIRouter(), APIRouter(), APIRouter()

    @declared.get("/fhir-like/RiskAssessment")
    def fhir_like(key: AnyKey, subject: AuditSubject) -> dict:
        subject.model, subject.model_version, subject.n_records = "heart", 3, 2
        return {}

    @included.get("/hooks-like")
    def cds_like(key: AnyKey) -> dict:
        return {}

    @undeclared.get("/v1/not-a-model-route")
    def undeclared_route(key: AnyKey) -> dict:
        return {}

    app.include_router(declared)
    app.include_router(included, dependencies=[Depends(audit_subject)])
    app.include_router(undeclared)
    service = serve_app(app, app.state.settings)
    paths = {
        "fhir": "/fhir-like/RiskAssessment",
        "cds": "/hooks-like",
        "v1": "/v1/not-a-model-route",
    }
    for request_id, path in paths.items():
        assert send(service, "auditor", "GET", path, request_id).status_code == 200
    by_request = audit_by_request(service)
    assert len(by_request) == 2 and by_request.sent(*paths) == {"fhir", "cds"}
    (fhir,), (cds,) = by_request["fhir"], by_request["cds"]
    assert (fhir["route"], fhir["model"], fhir["model_version"], fhir["n_records"]) == (
        "/fhir-like/RiskAssessment",
        "heart",
        3,
        2,
    )
    assert (cds["route"], cds["key_id"]) == ("/hooks-like", service.key_ids["auditor"])


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
        "slash-redirect": ("GET", "/v1/models/", "auditor"),
    }
    for request_id, (method, path, role) in requests.items():
        response = send(service, role, method, path, request_id, follow_redirects=False)
        assert response.status_code == 404, (path, response.status_code)
    # Without a key, an unknown path is refused like any other: 401, counted, not audited.
    anonymous = {"v1-unknown-no-key": "/v1/models/heart/predict/more", "outside-v1": "/nothing"}
    for request_id, path in anonymous.items():
        assert send(service, None, "GET", path, request_id).status_code == 401
    by_request = audit_by_request(service)
    assert not by_request.sent(*anonymous)
    for request_id, (method, _, role) in requests.items():
        (record,) = by_request[request_id]
        assert (record["route"], record["method"]) == ("(unmatched)", method)
        # The key was admitted before routing found nothing: the record names it.
        assert record["key_id"] == service.key_ids[role] and record["model"] is None


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
    # Also when refused: a GET route sent a large body answers 405 without reading it.
    too_big = send(service, None, "POST", "/healthz", "big", content=b"x" * 30_000)
    assert too_big.status_code == 405
    by_request = audit_by_request(service)
    assert not by_request.sent("live", "ready", "big")


def audit_count(service) -> int:
    """Records in the database now, without waiting for the writer."""
    with service.app.state.registry.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM audit_log")).scalar_one())


def refused_count(service, reason: str) -> float:
    registry = service.app.state.metrics.registry
    value = registry.get_sample_value("medserve_refused_requests_total", {"reason": reason})
    return value or 0.0


def corrupt_head(service) -> str:
    """Replace the audit head's MAC; returns the original to put back."""
    with service.app.state.registry.engine.begin() as connection:
        original = connection.execute(text("SELECT mac FROM audit_head")).scalar_one()
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "00" * 32})
    return original


def restore_head(service, mac: str) -> None:
    with service.app.state.registry.engine.begin() as connection:
        connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": mac})


def test_refusals_before_authentication_are_counted_not_audited(service, heart_records):
    path, one = "/v1/models/heart/predict", {"records": heart_records[:1]}
    with service.client(None) as client:
        no_key = client.post(path, json=one, headers={"X-Request-ID": "no-key"})
        bad_key = client.post(
            path, json=one, headers={"X-Request-ID": "bad-key", "Authorization": "Bearer nope"}
        )
    assert no_key.status_code == bad_key.status_code == 401
    assert send(service, "auditor", "POST", path, "forbidden", json=one).status_code == 403
    by_request = audit_by_request(service)
    assert not by_request.sent("no-key", "bad-key")
    assert by_request["forbidden"][0]["key_id"] == service.key_ids["auditor"]
    assert refused_count(service, "unauthenticated") == 2


def test_a_value_too_large_for_the_database_costs_no_record(tmp_path, serve_app):
    """2**63 does not fit an INTEGER column (PostgreSQL: nor does 2**31): a route that puts
    one in its subject used to make the writer drop its whole batch, other users' records
    with it. It is stored as "unknown" (None) instead."""
    app = create_app(Settings(home=tmp_path / "home"))
    poisoned = APIRouter()

    @poisoned.get("/v1/poisoned")
    def poisoned_route(key: AnyKey, subject: AuditSubject) -> dict:
        subject.model, subject.model_version, subject.n_records = "heart", 2**63, -(2**63)
        return {}

    app.include_router(poisoned)
    service = serve_app(app, app.state.settings)
    assert send(service, "auditor", "GET", "/v1/poisoned", "huge").status_code == 200
    attack = "/v1/models/heart/versions/9223372036854775808"  # as the report sent it
    assert send(service, "auditor", "GET", attack, "attack").status_code in (404, 422)
    assert send(service, "auditor", "GET", "/metrics", "after").status_code == 200
    by_request = audit_by_request(service)
    (huge_record,) = by_request["huge"]
    assert (huge_record["model_version"], huge_record["n_records"]) == (None, None)
    assert len(by_request["after"]) == len(by_request["attack"]) == 1
    assert service.app.state.audit.lost == 0


def test_each_answered_request_is_in_the_audit_table_before_its_answer_arrives(
    service, heart_records
):
    path = "/v1/models/heart/predict"
    before = audit_count(service)
    with service.client() as client:
        for n in range(1, 21):
            response = client.post(path, json={"records": heart_records[n : n + 1]})
            assert response.status_code == 200
            assert audit_count(service) == before + n  # no flush: already committed
        assert client.get("/v1/models/nope").status_code == 404
        assert audit_count(service) == before + 21


def test_audited_requests_are_refused_while_the_audit_trail_cannot_be_written(
    service, heart_records
):
    path, one = "/v1/models/heart/predict", {"records": heart_records[:1]}
    assert send(service, "predictor", "POST", path, "ok", json=one).status_code == 200
    service.app.state.audit.RETRY_DELAYS_S = ()
    mac = corrupt_head(service)
    with service.client(None) as anonymous:
        ready = anonymous.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
        assert "audit" in ready.json()["reason"]
        assert anonymous.get("/healthz").status_code == 200
    for request_id in ("refused", "refused-before-running"):
        refused = send(service, "predictor", "POST", path, request_id, json=one)
        assert refused.status_code == 503, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "audit trail cannot be written" in refused.json()["detail"]
        assert "predictions" not in refused.json()
    with pytest.raises(RegistryError, match="could not be written"):
        service.app.state.audit.flush()
    # Once the head is whole again, the next refusal is audited and the service recovers.
    restore_head(service, mac)
    assert send(service, "predictor", "POST", path, "probe", json=one).status_code == 503
    again = send(service, "predictor", "POST", path, "again", json=one)
    assert again.status_code == 200, again.text
    with service.client(None) as anonymous:
        assert anonymous.get("/readyz").status_code == 200
    by_request = audit_by_request(service)
    assert [r["status"] for r in by_request["probe"]] == [503]
    assert [r["status"] for r in by_request["again"]] == [200]
    assert not by_request.sent("refused", "refused-before-running")


def test_readyz_names_no_model(service):
    with service.client(None) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "models": 2, "unavailable": 0}
    assert "heart" not in ready.text and "pima" not in ready.text


def test_model_names_from_urls_do_not_grow_the_metric_labels(service):
    with service.client("predictor") as client:
        for n in range(100):
            client.post(f"/v1/models/fake-{n}/predict", json={"records": [{}]})
        client.post("/v1/models/heart/predict", json={"records": [{}]})
    samples = [
        sample
        for family in service.app.state.metrics.registry.collect()
        if family.name == "medserve_requests"
        for sample in family.samples
    ]
    models = {sample.labels["model"] for sample in samples}
    assert models == {"heart", "other"}
    assert len(samples) <= 4


def test_a_client_request_id_is_echoed_but_never_stored(service, heart_records, caplog):
    """Clients put MRNs in X-Request-ID: the answer echoes it, the trail, the access log
    and the export hold only its keyed hash; ids the service makes are kept as they are."""
    mrn = "MRN-00412345"
    path, one = "/v1/models/heart/predict", {"records": heart_records[:1]}
    with caplog.at_level("INFO", logger="medserve.access"):
        response = send(service, "predictor", "POST", path, mrn, json=one)
        with service.client("predictor") as client:
            made = client.post(path, json=one).headers["x-request-id"]
    assert response.status_code == 200
    assert response.headers["x-request-id"] == mrn == response.json()["request_id"]
    by_request = audit_by_request(service)
    (record,) = by_request[mrn]
    assert record["request_id"].startswith("c-") and len(record["request_id"]) == 34
    assert dict.__contains__(by_request, made)  # made here: stored as is
    with service.app.state.registry.engine.connect() as connection:
        rows = connection.execute(text("SELECT * FROM audit_log")).all()
    assert mrn not in repr(rows)
    assert mrn not in json.dumps(list(by_request._log.export()))
    assert mrn not in caplog.text and mrn not in repr([r.__dict__ for r in caplog.records])


def test_a_model_name_that_names_no_model_stays_out_of_the_trail(service, heart_records):
    """Found in review: any string in the URL's model slot was stored as the model."""
    mrn_like = "mrn-004417-smith"
    assert send(service, "auditor", "GET", f"/v1/models/{mrn_like}", "unknown").status_code == 404
    assert send(service, "auditor", "GET", "/v1/models/heart", "known").status_code == 200
    unknown, known = only_record(service, "unknown"), only_record(service, "known")
    assert unknown["model"] is None and unknown["status"] == 404
    assert known["model"] == "heart"
    assert mrn_like not in json.dumps(
        list(
            service.app.state.registry.engine.connect()
            .execute(text("SELECT * FROM audit_log"))
            .mappings()
            .all()
        ),
        default=str,
    )
