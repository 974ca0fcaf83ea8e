"""Scoring a patient the FHIR server holds, on both clinical channels: POST
/v1/models/{name}/fhir/Patient/{id} (the server configured for medserve) and a CDS Hooks
call without prefetch (the EHR's fhirServer with its fhirAuthorization). Against a real
FHIR server (sekmet, SQLite, loopback); the same patient gives the same risk as its
Bundle sent whole. An unknown patient is 404, a server that is down 502, one that does
not answer in time 504: all OperationOutcomes, none a hang."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from support.cds_calls import hook_call
from support.ehr_tokens import Ehr
from support.fhir_bindings import bind_pima, patient_bundle
from support.fhir_server import FhirServer, running_fhir_server
from support.servers import free_port
from support.servers import silent_server as quiet_server

FHIR_TOKEN = "sekmet-test-token"
BASE = "http://testserver"



@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory) -> Iterator[tuple[FhirServer, dict[int, str]]]:
    with running_fhir_server(tmp_path_factory.mktemp("sekmet"), tokens=[FHIR_TOKEN]) as server:
        ids = {number: server.load(patient_bundle(number)) for number in (1, 2, 3)}
        yield server, ids


def risk_of(resource: dict) -> float:
    return resource["prediction"][0]["probabilityDecimal"]


def test_a_patient_on_the_fhir_server_scores_as_their_bundle_does(
    start_service, fhir_server, tmp_path
):
    server, ids = fhir_server
    service = start_service(fhir_server_url=server.base_url, fhir_server_token=FHIR_TOKEN)
    bind_pima(service.settings, tmp_path)
    with service.client() as client:
        for number in (1, 2, 3):
            fetched = client.post(f"/v1/models/pima/fhir/Patient/{ids[number]}")
            assert fetched.status_code == 200, fetched.text
            sent = client.post(
                "/v1/models/pima/fhir",
                content=json.dumps(patient_bundle(number)),
                headers={"Content-Type": "application/fhir+json"},
            )
            assert risk_of(fetched.json()) == pytest.approx(risk_of(sent.json()), abs=1e-9)
            assert fetched.json()["subject"]["reference"] == f"Patient/{ids[number]}"
        unknown = client.post("/v1/models/pima/fhir/Patient/no-such-patient")
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"


def test_a_fhir_server_that_is_down_is_502(start_service, tmp_path):
    service = start_service(fhir_server_url=f"http://127.0.0.1:{free_port()}/fhir")
    bind_pima(service.settings, tmp_path)
    with service.client() as client:
        answer = client.post("/v1/models/pima/fhir/Patient/abc")
    assert answer.status_code == 502, answer.text
    assert "could not be reached" in answer.json()["issue"][0]["diagnostics"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    with quiet_server() as url:
        yield url


def test_a_fhir_server_that_does_not_answer_is_504(start_service, silent_server, tmp_path):
    service = start_service(fhir_server_url=silent_server, fhir_timeout_s=0.5)
    bind_pima(service.settings, tmp_path)
    with service.client() as client:
        answer = client.post("/v1/models/pima/fhir/Patient/abc")
    assert answer.status_code == 504, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"


def test_a_cds_call_without_prefetch_fetches_from_the_ehrs_fhir_server(
    start_service, fhir_server, tmp_path
):
    server, ids = fhir_server
    ehr = Ehr(tmp_path)
    service = start_service(cds_issuers=ehr.trust((server.base_url,)), public_url=BASE)
    bind_pima(service.settings, tmp_path)
    url = "/cds-services/pima"
    authorization = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds-service",
    }
    body = hook_call(ids[1], fhirServer=server.base_url, fhirAuthorization=authorization)
    with service.client(role=None) as client:
        answer = client.post(url, json=body, headers=ehr.headers(BASE + url))
        assert answer.status_code == 200, answer.text
        (card,) = answer.json()["cards"]
        with service.client() as rest:
            sent = rest.post(
                "/v1/models/pima/fhir",
                content=json.dumps(patient_bundle(1)),
                headers={"Content-Type": "application/fhir+json"},
            ).json()
        assert f"{round(risk_of(sent) * 100)}%" in card["summary"]
        wrong = {**authorization, "access_token": "not-the-token"}
        body = hook_call(ids[1], fhirServer=server.base_url, fhirAuthorization=wrong)
        refused = client.post(url, json=body, headers=ehr.headers(BASE + url))
        elsewhere = hook_call(
            ids[1], fhirServer="https://fhir.elsewhere.example/r4", fhirAuthorization=authorization
        )
        not_listed = client.post(url, json=elsewhere, headers=ehr.headers(BASE + url))
    assert refused.status_code == 502
    assert "credentials" in refused.json()["detail"]
    # A fhirServer the operator did not list is never fetched from.
    assert not_listed.status_code == 412
    assert "fhir_servers" in not_listed.json()["detail"]
