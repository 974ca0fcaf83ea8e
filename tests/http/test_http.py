"""The HTTP service as an integrator meets it: the real app (in process, or behind a real
uvicorn server where concurrency is the subject), real keys, real data."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from fastapi.dependencies.models import Dependant
from starlette.routing import Route

from medserve.http.app import create_app
from medserve.http.audited import declares_audit_subject
from medserve.modeling import TrainedModel
from medserve.security.api_keys import ApiKeyStore
from medserve.security.audit import AuditLog
from medserve.storage import Registry
from medserve.storage.keystore import KeyStore

UNPROTECTED = {"/healthz", "/readyz"}
# The dashboard's open paths: its sign-in page and its stylesheet (tests/http/
# test_dashboard_http.py walks the rest, which a session cookie admits, never a key).
UI_OPEN = {"/ui/login", "/ui/static/{name}"}


def dashboard(template: str) -> bool:
    return template == "/ui" or template.startswith("/ui/")


@dataclass(frozen=True)
class Answered:
    """One route as the app answers it: template, methods, and its dependency tree."""

    path: str
    methods: set[str]
    dependant: Dependant | None


def walk_routes(routes) -> Iterator[Answered]:
    """Every route an app answers, through included routers."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # FastAPI's included router
            for context in route.effective_route_contexts():
                yield Answered(context.path, set(context.methods), context.dependant)
        elif isinstance(route, Route):
            yield Answered(route.path, set(route.methods or ()), getattr(route, "dependant", None))
        else:
            raise AssertionError(f"unknown kind of route {route!r}: teach this test about it")


def concrete(template: str) -> str:
    """A request path for a route template: the heart model, version 1."""
    for parameter, value in (("{name}", "heart"), ("{version}", "1"), ("{service_id}", "heart")):
        template = template.replace(parameter, value)
    return template.replace("{patient_id}", "abc")


def clinical(template: str) -> bool:
    """The FHIR and CDS Hooks routes: they read a patient's FHIR record (and CDS Hooks an
    EHR's JWT, not a key); tests/http/test_fhir_http.py and test_cds_hooks_http.py walk
    their audit records."""
    return template.startswith("/cds-services") or "/fhir" in template


def audit_records(service) -> list[dict]:
    service.app.state.audit.flush()
    log = AuditLog(
        service.app.state.registry.engine, KeyStore(service.settings).purpose_key("audit")
    )
    return list(log.export())


def audit_log(service) -> AuditLog:
    return AuditLog(
        service.app.state.registry.engine, KeyStore(service.settings).purpose_key("audit")
    )


def stored_model(service, name: str) -> TrainedModel:
    with Registry(service.settings) as registry:
        return registry.load(registry.get(name))


def test_health_checks_need_no_credential(service):
    with service.client(role=None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz").json()
        assert ready == {"status": "ready", "models": 2, "unavailable": 0}  # counts, no names


def test_every_other_route_refuses_missing_wrong_and_revoked_keys(start_service):
    """Walks app.routes so that a new route cannot slip in unprotected (with no limit per
    address: the walk sends more refused requests than a minute's allowance)."""
    service = start_service(unauthenticated_per_minute=0)
    routes = list(walk_routes(service.app.routes))
    assert {route.path for route in routes} >= {"/v1/models", "/metrics", "/openapi.json"}
    admin = ApiKeyStore(service.app.state.registry.engine)
    revoked_key, revoked = admin.create("admin", name="to revoke")
    admin.revoke(revoked_key.id)
    credentials = {
        "missing": {},
        "wrong": {"Authorization": "Bearer ms_000000000000_" + "x" * 43},
        "garbage": {"Authorization": "Bearer hello"},
        "revoked": {"Authorization": f"Bearer {revoked}"},
    }
    protected = [
        (route.path, method) for route in routes if route.path not in UNPROTECTED | UI_OPEN
        for method in route.methods
    ]  # fmt: skip
    checked = []
    with service.client(role=None) as client:
        for template, method in protected:
            for label, headers in credentials.items():
                response = client.request(
                    method, concrete(template), headers=headers, json={"records": [{}]}
                )
                if dashboard(template):  # no session: a page goes to sign-in, the rest 401
                    expected_status = 303 if method == "GET" else 401
                    assert response.status_code == expected_status, (method, template, label)
                    checked.append((template, method, label))
                    continue
                assert response.status_code == 401, (method, template, label)
                expected = (
                    "application/fhir+json" if "/fhir" in template else ("application/problem+json")
                )
                assert response.headers["content-type"] == expected, template
                assert response.headers["www-authenticate"] == "Bearer"
                checked.append((template, method, label))
    # Every protected route and method was refused with every kind of bad credential.
    walked = {r.path for r in routes} - UNPROTECTED - UI_OPEN
    assert {template for template, _ in protected} == walked
    assert len(protected) >= 8
    assert len(checked) == len(set(checked)) == len(protected) * len(credentials)


def test_every_route_but_health_declares_an_audit_subject_and_leaves_one_record(
    reported_service, heart_records
):
    """Walks app.routes: a new route that forgets its AuditSubject fails here, and every
    route's request leaves exactly one record, with the model and version it touched."""
    service = reported_service
    routes = list(walk_routes(service.app.routes))
    undeclared = {r.path for r in routes if not declares_audit_subject(r.dependant)}
    assert undeclared == UNPROTECTED | {"/ui/static/{name}"}  # a stylesheet: no subject
    sent: dict[str, tuple[str, str]] = {}
    with service.client("admin") as client:
        # A prediction for the feedback route to give an outcome to (audited as any).
        answered = client.post(
            "/v1/models/heart/predict",
            json={"records": heart_records[:1]},
            headers={"X-Request-ID": "walk-first-prediction"},
        )
        prediction_id = answered.json()["predictions"][0]["prediction_id"]
        sent[audit_log(service).request_id_for("walk-first-prediction")] = (
            "/v1/models/{name}/predict",
            "POST",
        )
        for number, route in enumerate(routes):
            if clinical(route.path) or dashboard(route.path):
                continue
            for method in sorted(route.methods):
                request_id = f"walk-{number}-{method}"
                body = {"records": heart_records[:1]} if method == "POST" else None
                if route.path.endswith("/feedback"):
                    body = {"outcomes": [{"prediction_id": prediction_id, "outcome": 1}]}
                response = client.request(
                    method, concrete(route.path), json=body, headers={"X-Request-ID": request_id}
                )
                assert response.status_code == 200, (method, route.path, response.text)
                sent[audit_log(service).request_id_for(request_id)] = (route.path, method)
    records = {r["request_id"]: r for r in audit_records(service)}
    audited = {rid: where for rid, where in sent.items() if where[0] not in UNPROTECTED}
    assert len(audit_records(service)) == len(records) == len(audited)
    assert set(records) == set(audited)
    for request_id, (template, method) in audited.items():
        record = records[request_id]
        assert (record["route"], record["method"], record["status"]) == (template, method, 200)
        assert record["key_id"] == service.key_ids["admin"] and record["role"] == "admin"
        touches_model = "{name}" in template
        assert record["model"] == ("heart" if touches_model else None), template
        assert record["model_version"] == (1 if touches_model else None), template
        counted = template.endswith(("/predict", "/feedback"))  # records, or outcomes
        assert record["n_records"] == (1 if counted else None), template
    assert audit_log(service).verify().ok


def test_wrong_role_is_forbidden(service, heart_records):
    with service.client("auditor") as client:
        response = client.post("/v1/models/heart/predict", json={"records": heart_records[:1]})
    assert response.status_code == 403
    assert "role 'auditor' may not" in response.json()["detail"]


def test_predict_matches_the_reference_pipeline_in_record_order(service, heart_records):
    records = heart_records[:300]
    with service.client() as client:
        response = client.post(
            "/v1/models/heart/predict",
            json={"records": records},
            headers={"X-Request-ID": "req-42"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "heart" and body["version"] == 1
    assert body["request_id"] == "req-42" == response.headers["x-request-id"]
    model = stored_model(service, "heart")
    reference = model.predict_risk(pd.DataFrame(records))
    risks = np.array([p["risk"] for p in body["predictions"]])
    np.testing.assert_allclose(risks, reference, rtol=0, atol=1e-9)
    labels = [p["label"] for p in body["predictions"]]
    assert labels == (reference >= model.threshold).astype(int).tolist()
    bands = {p["risk_band"] for p in body["predictions"]}
    assert bands <= {"low", "moderate", "high"} and len(bands) == 3
    stored_id = audit_log(service).request_id_for("req-42")  # the trail holds its hash
    entry = [r for r in audit_records(service) if r["request_id"] == stored_id]
    assert len(entry) == 1
    assert entry[0]["n_records"] == 300 and entry[0]["model"] == "heart"
    assert entry[0]["key_id"] == service.key_ids["predictor"]
    assert entry[0]["status"] == 200


def test_model_metadata_publishes_the_schema(service):
    with service.client("auditor") as client:
        listing = client.get("/v1/models").json()
        detail = client.get("/v1/models/heart").json()
        version = client.get("/v1/models/heart/versions/1").json()
        missing = client.get("/v1/models/heart/versions/7")
    assert {m["name"] for m in listing["models"]} == {"heart", "pima"}
    columns = {c["name"]: c for c in detail["columns"]}
    assert "id" not in columns and "num" not in columns
    assert columns["cp"]["categories"] == [
        "asymptomatic",
        "atypical angina",
        "non-anginal",
        "typical angina",
    ]
    # Rounded outward (data/disclosure.py): the youngest and oldest ages are not published.
    assert columns["age"]["training_range"] == [25.0, 80.0]
    assert columns["chol"]["missing_tokens"] == ["0"]
    assert detail["outcome"] == "num > 0"
    assert version["metrics"]["auroc"]["estimate"] > 0.8
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        (lambda r: r.pop("age"), "age", "required"),
        (lambda r: r.update(age="sixty"), "age", "type"),
        (lambda r: r.update(age=250), "age", "range"),
        (lambda r: r.update(cp="martian angina"), "cp", "category"),
    ],
)
def test_invalid_records_answer_422_naming_record_field_and_rule(
    service, heart_records, change, field, rule
):
    records = [dict(r) for r in heart_records[:5]]
    change(records[3])
    with service.client() as client:
        response = client.post("/v1/models/heart/predict", json={"records": records})
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"]
    assert problem["errors"][0] | {"message": None} == {
        "record": 3,
        "field": field,
        "rule": rule,
        "message": None,
    }
    assert "record 3" in problem["detail"] and field in problem["detail"]


def test_missing_values_are_allowed_where_the_model_handles_them(service, heart_records):
    record = dict.fromkeys(heart_records[0])
    with service.client() as client:
        response = client.post("/v1/models/heart/predict", json={"records": [record]})
    assert response.status_code == 200
    assert 0 < response.json()["predictions"][0]["risk"] < 1


@pytest.mark.parametrize(
    "body",
    [
        {"records": []},
        {"records": "all of them"},
        {"rows": [{"age": 1}]},
        {"records": [{"age": {"nested": 1}}]},
        [1, 2, 3],
    ],
)
def test_malformed_bodies_are_422_problems(service, body):
    with service.client() as client:
        response = client.post("/v1/models/heart/predict", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_unknown_model_is_404(service, heart_records):
    with service.client() as client:
        response = client.post("/v1/models/nope/predict", json={"records": heart_records[:1]})
    assert response.status_code == 404
    assert "no model named 'nope'" in response.json()["detail"]


def test_oversized_bodies_and_record_counts_answer_413(start_service, heart_records):
    service = start_service(max_body_bytes=50_000, max_records=100)
    with service.client() as client:
        too_many = client.post("/v1/models/heart/predict", json={"records": heart_records[:150]})
        too_big = client.post("/v1/models/heart/predict", json={"records": heart_records[:5] * 100})
        chunked = client.post(
            "/v1/models/heart/predict",
            content=iter([json.dumps({"records": heart_records[:5] * 100}).encode()]),
            headers={"Content-Type": "application/json"},
        )
        fine = client.post("/v1/models/heart/predict", json={"records": heart_records[:50]})
    assert too_many.status_code == 413 and "the limit is 100" in too_many.json()["detail"]
    assert too_big.status_code == 413 and "over the limit" in too_big.json()["detail"]
    assert chunked.status_code == 413
    assert fine.status_code == 200


def test_rate_limit_answers_429_with_retry_after(start_service, heart_records):
    service = start_service(rate_limit_per_minute=3)
    with service.client() as client:
        statuses = [
            client.post("/v1/models/heart/predict", json={"records": heart_records[:1]})
            for _ in range(5)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429, 429]
    assert 1 <= int(statuses[-1].headers["retry-after"]) <= 60


def test_prometheus_metrics_count_requests_without_patient_values(service, heart_records):
    marker = "zz-unique-chest-pain-marker"
    with service.client() as client:
        client.post("/v1/models/heart/predict", json={"records": heart_records[:2]})
        client.post(
            "/v1/models/heart/predict", json={"records": [{**heart_records[0], "cp": marker}]}
        )
        text = client.get("/metrics").text
    assert 'route="/v1/models/{name}/predict"' in text
    assert 'status="200"' in text and 'status="422"' in text
    assert "medserve_request_latency_seconds_bucket" in text
    assert marker not in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_concurrent_clients_get_answers_and_exactly_one_audit_record_each(
    start_service, heart_records, database, request
):
    url = request.getfixturevalue("postgres_url") if database == "postgresql" else None
    service = start_service(database_url=url, server=True)  # real sockets, real concurrency
    clients, per_client = 16, 200

    def work(index: int) -> list[str]:
        ids = []
        with service.client() as client:
            for n in range(per_client):
                request_id = f"c{index}-{n}"
                record = heart_records[(index * per_client + n) % len(heart_records)]
                response = client.post(
                    "/v1/models/heart/predict",
                    json={"records": [record]},
                    headers={"X-Request-ID": request_id},
                )
                assert response.status_code == 200, response.text
                ids.append(request_id)
        return ids

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        sent = [i for ids in pool.map(work, range(clients)) for i in ids]
    records = [r for r in audit_records(service) if r["route"].endswith("/predict")]
    stored = map(audit_log(service).request_id_for, sent)  # the trail holds their hashes
    assert sorted(r["request_id"] for r in records) == sorted(stored)
    assert audit_log(service).verify().ok


def test_a_tampered_artifact_is_refused_and_other_models_keep_serving(
    service, serve_app, heart_records
):
    with Registry(service.settings) as registry:
        artifact = service.settings.home / registry.get("heart").artifact_path
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    restarted = serve_app(create_app(service.settings), service.settings)
    assert "heart:1" in restarted.app.state.catalog.failures
    with restarted.client() as client:
        refused = client.post("/v1/models/heart/predict", json={"records": heart_records[:1]})
        pima = client.post("/v1/models/pima/predict", json={"records": [{"Glucose": 120}]})
        ready = client.get("/readyz").json()
    assert refused.status_code == 503
    assert "integrity" in refused.json()["detail"]
    assert pima.status_code == 422  # validated and answered: the model is being served
    assert ready["unavailable"] == 1  # a count: /readyz names no model
