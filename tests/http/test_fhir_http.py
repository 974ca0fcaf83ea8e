"""POST /v1/models/{name}/fhir and /fhir/Patient/{id}: a patient's FHIR record in, a FHIR
R4 RiskAssessment out, scored exactly as REST scores the record the binding reads; every
error an OperationOutcome; the patient in the audit trail only as a keyed pseudonym."""

from __future__ import annotations

import json

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment
from sqlalchemy import select

from medserve.interop.fhir.binding import Binding
from medserve.interop.fhir.extract import read_bundle
from medserve.storage.tables import AuditRecordRow
from support.fhir_bindings import PIMA_BINDING, bind_pima, patient_bundle, patient_id

FHIR_JSON = "application/fhir+json"




@pytest.fixture
def bound(service, tmp_path):
    bind_pima(service.settings, tmp_path)
    return service


def post_bundle(client, bundle: object, *, content_type: str = FHIR_JSON):
    body = bundle if isinstance(bundle, bytes) else json.dumps(bundle).encode()
    return client.post("/v1/models/pima/fhir", content=body, headers={"Content-Type": content_type})


def test_a_bundle_gets_a_valid_risk_assessment_with_the_rest_risk(bound):
    bundle = patient_bundle(1)
    with bound.client() as client:
        answer = post_bundle(client, bundle)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith(FHIR_JSON)
        resource = answer.json()
        RiskAssessment.model_validate(resource)
        # The same patient over REST: the record the binding reads, as a client would send it.
        record = read_bundle(bundle, Binding.from_yaml(PIMA_BINDING)).record
        rest = client.post("/v1/models/pima/predict", json={"records": [record]}).json()
    (prediction,) = resource["prediction"]
    assert prediction["probabilityDecimal"] == pytest.approx(
        rest["predictions"][0]["risk"], abs=1e-4
    )
    assert prediction["qualitativeRisk"]["text"] == rest["predictions"][0]["risk_band"]
    assert resource["subject"]["reference"] == f"Patient/{patient_id(bundle)}"
    assert "pima" in json.dumps(resource["method"]) and resource["status"] == "final"
    basis = [item["reference"] for item in resource["basis"]]
    assert any(reference.startswith("Observation/") for reference in basis)
    sources = {
        next(p["valueString"] for p in ext["extension"] if p["url"] == "feature"): ext["extension"]
        for ext in resource["extension"]
    }
    assert set(sources) == set(Binding.from_yaml(PIMA_BINDING).features)
    assert any(p["url"] == "missing" for p in sources["Pregnancies"])
    assert any(p["url"] == "source" for p in sources["BMI"])


def test_a_patient_without_glucose_is_scored_with_it_missing_and_told_so(bound):
    with bound.client() as client:
        answer = post_bundle(client, patient_bundle(2))
    assert answer.status_code == 200, answer.text
    glucose = next(
        ext["extension"]
        for ext in answer.json()["extension"]
        if {"url": "feature", "valueString": "Glucose"} in ext["extension"]
    )
    assert any(p["url"] == "missing" and "2339-0" in p["valueString"] for p in glucose)


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"{not json", FHIR_JSON, "not JSON"),
        ({"resourceType": "Patient", "id": "x"}, FHIR_JSON, "Bundle"),
        ({"resourceType": "Bundle", "type": "collection", "entry": []}, FHIR_JSON, "Patient"),
        ({"resourceType": "Bundle", "type": "collection"}, "text/plain", "fhir+json"),
    ],
)
def test_bad_input_is_an_operation_outcome(bound, body, content_type, said):
    with bound.client() as client:
        answer = post_bundle(client, body, content_type=content_type)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(answer.json())
    assert said in outcome.issue[0].diagnostics


def test_a_unit_that_cannot_be_converted_is_refused(bound):
    bundle = patient_bundle(1)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation" and "39156-5" in json.dumps(resource["code"]):
            resource["valueQuantity"]["code"] = "mmol/L"
    with bound.client() as client:
        answer = post_bundle(client, bundle)
    assert answer.status_code == 422, answer.text
    assert "mmol/L" in answer.json()["issue"][0]["diagnostics"]


def test_a_model_without_a_binding_says_how_to_make_one(service):
    with service.client() as client:
        answer = post_bundle(client, patient_bundle(1))
    assert answer.status_code == 400
    assert "medserve fhir bind pima" in answer.json()["issue"][0]["diagnostics"]


def test_the_audit_trail_names_the_patient_only_by_pseudonym(bound):
    bundle = patient_bundle(3)
    with bound.client() as client:
        assert post_bundle(client, bundle).status_code == 200
        assert post_bundle(client, bundle).status_code == 200
    bound.app.state.audit.flush()
    with bound.app.state.registry.engine.connect() as connection:
        rows = connection.execute(
            select(AuditRecordRow).where(AuditRecordRow.route == "/v1/models/{name}/fhir")
        ).all()
    assert len(rows) == 2
    assert rows[0].patient and rows[0].patient == rows[1].patient
    assert patient_id(bundle) not in json.dumps([dict(r._mapping) for r in rows], default=str)
    assert rows[0].model == "pima" and rows[0].n_records == 1


def test_the_fhir_server_route_without_a_server_says_so(bound):
    with bound.client() as client:
        answer = client.post("/v1/models/pima/fhir/Patient/abc")
    assert answer.status_code == 400
    assert "MEDSERVE_FHIR_SERVER_URL" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("role", "path", "status", "code"),
    [
        (None, "/v1/models/pima/fhir", 401, "login"),
        ("auditor", "/v1/models/pima/fhir", 403, "forbidden"),
        ("predictor", "/v1/models/pima/fhir?version=zero", 422, "invalid"),
        ("predictor", "/v1/models/nope/fhir", 404, "not-found"),
    ],
)
def test_refusals_before_the_bundle_is_read_are_operation_outcomes_too(
    bound, role, path, status, code
):
    with bound.client(role=role) as client:
        answer = client.post(
            path, content=json.dumps(patient_bundle(1)), headers={"Content-Type": FHIR_JSON}
        )
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(FHIR_JSON)
    outcome = OperationOutcome.model_validate(answer.json())
    assert outcome.issue[0].code == code and outcome.issue[0].diagnostics
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_a_body_nested_too_deeply_is_422_not_a_crash(bound):
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    with bound.client() as client:
        answer = post_bundle(client, deep)
    assert answer.status_code == 422, answer.text
    assert "nested too deeply" in answer.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(("role", "status"), [(None, 401), ("predictor", 404)])
def test_an_unknown_path_under_fhir_is_an_operation_outcome(bound, role, status):
    with bound.client(role=role) as client:
        answer = client.get("/v1/models/pima/fhir/metadata")
    assert answer.status_code == status
    assert answer.json()["resourceType"] == "OperationOutcome"
    with bound.client(role=role) as client:
        elsewhere = client.get("/v1/models/pima/fhirs")
    assert elsewhere.headers["content-type"] == "application/problem+json"
