"""The CDS Hooks service over HTTP: discovery at exactly /cds-services, a patient-view call
answered with a card (prefetch used; 412 with neither prefetch nor a FHIR server), the
EHR's signed JWT required (an API key is not one), feedback stored against the card, and
the same risk as REST for the same patient."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from sqlalchemy import select

from medserve.interop.fhir.binding import Binding
from medserve.interop.fhir.extract import read_bundle
from medserve.storage.cds_cards import CardLog
from medserve.storage.tables import AuditRecordRow
from support.cds_calls import hook_call, prefetch_for
from support.ehr_tokens import Ehr
from support.fhir_bindings import PIMA_BINDING, bind_pima, patient_bundle, patient_id

BASE = "http://testserver"


@pytest.fixture
def ehr(tmp_path) -> Ehr:
    return Ehr(tmp_path)


@pytest.fixture
def cds(start_service, ehr, tmp_path):
    service = start_service(cds_issuers=ehr.trust(), public_url=BASE)
    bind_pima(service.settings, tmp_path)
    return service


def discover(service, ehr) -> dict:
    with service.client(role=None) as client:
        answer = client.get("/cds-services", headers=ehr.headers(f"{BASE}/cds-services"))
    assert answer.status_code == 200, answer.text
    return answer.json()


def call(service, ehr, body: dict, service_id: str = "pima"):
    url = f"/cds-services/{service_id}"
    with service.client(role=None) as client:
        return client.post(url, json=body, headers=ehr.headers(BASE + url))


def test_discovery_lists_the_opted_in_model_with_prefetch_from_its_binding(cds, ehr):
    (entry,) = discover(cds, ehr)["services"]
    assert entry["id"] == "pima" and entry["hook"] == "patient-view"
    assert entry["title"] == "Diabetes risk" and entry["description"]
    templates = " ".join(entry["prefetch"].values())
    assert "{{context.patientId}}" in templates
    assert "2339-0" in templates and "39156-5" in templates


def test_a_call_with_prefetch_gets_one_card_with_the_rest_risk(cds, ehr):
    bundle = patient_bundle(1)
    (entry,) = discover(cds, ehr)["services"]
    answer = call(cds, ehr, hook_call(patient_id(bundle), prefetch_for(entry["prefetch"], bundle)))
    assert answer.status_code == 200, answer.text
    (card,) = answer.json()["cards"]
    assert len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and card["uuid"]
    record = read_bundle(bundle, Binding.from_yaml(PIMA_BINDING)).record
    with cds.client() as client:
        rest = client.post("/v1/models/pima/predict", json={"records": [record]}).json()
    risk, band = rest["predictions"][0]["risk"], rest["predictions"][0]["risk_band"]
    assert f"{round(risk * 100)}%" in card["summary"] and band in card["summary"]
    expected = {"low": "info", "moderate": "warning", "high": "critical"}[band]
    assert card["indicator"] == expected


def test_no_prefetch_and_no_fhir_server_is_412(cds, ehr):
    answer = call(cds, ehr, hook_call(patient_id(patient_bundle(1))))
    assert answer.status_code == 412, answer.text
    assert "prefetch" in answer.json()["detail"]


def test_an_api_key_is_not_an_ehr_token(cds):
    with cds.client() as client:  # the predictor's API key as the bearer
        answer = client.get("/cds-services")
    assert answer.status_code == 401


def test_a_token_for_another_url_is_refused(cds, ehr):
    with cds.client(role=None) as client:
        answer = client.get("/cds-services", headers=ehr.headers(f"{BASE}/cds-services/pima"))
    assert answer.status_code == 401


def test_a_replayed_token_is_refused(cds, ehr):
    headers = ehr.headers(f"{BASE}/cds-services")
    with cds.client(role=None) as client:
        assert client.get("/cds-services", headers=headers).status_code == 200
        assert client.get("/cds-services", headers=headers).status_code == 401


def test_feedback_is_stored_against_the_card(cds, ehr):
    bundle = patient_bundle(3)
    (entry,) = discover(cds, ehr)["services"]
    (card,) = call(
        cds, ehr, hook_call(patient_id(bundle), prefetch_for(entry["prefetch"], bundle))
    ).json()["cards"]
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {
                    "reason": {"code": "not-relevant", "system": "http://example.org/reasons",
                               "display": "Not relevant"},
                    "userComment": "patient told me about her sister",
                },
                "outcomeTimestamp": "2026-12-01T10:00:00Z",
            }
        ]
    }  # fmt: skip
    url = "/cds-services/pima/feedback"
    with cds.client(role=None) as client:
        answer = client.post(url, json=feedback, headers=ehr.headers(BASE + url))
        assert answer.status_code == 200, answer.text
        unknown = {"feedback": [{**feedback["feedback"][0], "card": "not-a-card"}]}
        refused = client.post(url, json=unknown, headers=ehr.headers(BASE + url))
    assert refused.status_code == 422
    (stored,) = CardLog(cds.app.state.registry.engine).outcomes("pima")
    assert stored["outcome"] == "overridden" and stored["band"] == card_band(card)
    assert "sister" not in json.dumps(stored, default=str)


def card_band(card: dict) -> str:
    return next(band for band in ("low", "moderate", "high") if band in card["summary"])


def test_cds_calls_are_audited_with_issuer_and_pseudonym(cds, ehr):
    bundle = patient_bundle(1)
    (entry,) = discover(cds, ehr)["services"]
    call(cds, ehr, hook_call(patient_id(bundle), prefetch_for(entry["prefetch"], bundle)))
    cds.app.state.audit.flush()
    with cds.app.state.registry.engine.connect() as connection:
        rows = connection.execute(
            select(AuditRecordRow).where(AuditRecordRow.route == "/cds-services/{service_id}")
        ).all()
    (row,) = rows
    assert row.issuer == ehr.issuer and row.role == "ehr" and row.key_id is None
    assert row.patient and patient_id(bundle) not in json.dumps(dict(row._mapping), default=str)
    assert row.model == "pima" and row.status == 200


def test_encounter_discharge_is_its_own_service(start_service, ehr, tmp_path):
    service = start_service(cds_issuers=ehr.trust(), public_url=BASE)
    both = PIMA_BINDING.replace(
        "hooks: [patient-view]", "hooks: [patient-view, encounter-discharge]"
    )
    bind_pima(service.settings, tmp_path, both)
    services = {entry["id"]: entry for entry in discover(service, ehr)["services"]}
    assert {(i, e["hook"]) for i, e in services.items()} == {
        ("pima", "patient-view"),
        ("pima-discharge", "encounter-discharge"),
    }
    bundle = patient_bundle(2)
    body = hook_call(
        patient_id(bundle), prefetch_for(services["pima-discharge"]["prefetch"], bundle)
    )
    body["hook"] = "encounter-discharge"
    body["context"]["encounterId"] = "Encounter/1"
    answer = call(service, ehr, body, "pima-discharge")
    assert answer.status_code == 200, answer.text
    wrong_hook = call(service, ehr, {**body, "hookInstance": str(uuid.uuid4())}, "pima")
    assert wrong_hook.status_code == 422


def test_a_token_for_another_service_does_not_pass_by_naming_its_host(cds, ehr):
    other = "http://other-cds.example/cds-services"
    with cds.client(role=None) as client:
        answer = client.get(
            "/cds-services",
            headers={**ehr.headers(other), "Host": "other-cds.example"},
        )
    assert answer.status_code == 401


def test_without_a_public_url_only_loopback_calls_are_answered(start_service, ehr, tmp_path):
    service = start_service(cds_issuers=ehr.trust())
    with service.client(role=None) as client:
        answer = client.get("/cds-services", headers=ehr.headers(f"{BASE}/cds-services"))
    assert answer.status_code == 401
    assert "MEDSERVE_PUBLIC_URL" in answer.json()["detail"]


def test_refused_tokens_count_against_the_address(start_service, ehr):
    service = start_service(cds_issuers=ehr.trust(), public_url=BASE, unauthenticated_per_minute=3)
    with service.client(role=None) as client:
        statuses = [
            client.get("/cds-services", headers={"Authorization": "Bearer forged"}).status_code
            for _ in range(5)
        ]
    assert statuses == [401, 401, 401, 429, 429]


def test_a_record_with_none_of_the_inputs_gets_no_card(cds, ehr):
    (entry,) = discover(cds, ehr)["services"]
    empty = {key: None for key in entry["prefetch"]}
    answer = call(cds, ehr, hook_call("p-no-data", empty))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"cards": []}


def test_a_wrong_method_on_a_cds_path_is_405(cds, ehr):
    with cds.client(role=None) as client:
        answer = client.get("/cds-services/pima", headers=ehr.headers(f"{BASE}/cds-services/pima"))
    assert answer.status_code == 405


def test_only_the_ehr_that_got_a_card_may_give_feedback_on_it(start_service, ehr, tmp_path):
    (tmp_path / "other").mkdir()
    other = Ehr(tmp_path / "other", issuer="https://other-ehr.example.org")
    service = start_service(cds_issuers={**ehr.trust(), **other.trust()}, public_url=BASE)
    bind_pima(service.settings, tmp_path)
    bundle = patient_bundle(1)
    (entry,) = discover(service, ehr)["services"]
    (card,) = call(
        service, ehr, hook_call(patient_id(bundle), prefetch_for(entry["prefetch"], bundle))
    ).json()["cards"]
    item = {"card": card["uuid"], "outcome": "overridden",
            "outcomeTimestamp": "2026-12-01T10:00:00Z"}  # fmt: skip
    url = "/cds-services/pima/feedback"
    with service.client(role=None) as client:
        theirs = client.post(url, json={"feedback": [item]}, headers=other.headers(BASE + url))
        empty = client.post(url, json={"feedback": []}, headers=ehr.headers(BASE + url))
    assert theirs.status_code == 422 and "to this EHR" in theirs.json()["detail"]
    assert empty.status_code == 200
    assert CardLog(service.app.state.registry.engine).outcomes("pima") == []


def test_a_caller_on_this_machine_through_a_proxy_is_not_trusted_to_name_the_url(
    start_service, ehr
):
    service = start_service(cds_issuers=ehr.trust(), server=True)
    url = f"{service.url}/cds-services"
    with httpx.Client() as client:
        direct = client.get(url, headers=ehr.headers(url))
        proxied = client.get(url, headers={**ehr.headers(url), "X-Forwarded-Host": "cds.example"})
    assert direct.status_code == 200, direct.text
    assert proxied.status_code == 401 and "MEDSERVE_PUBLIC_URL" in proxied.json()["detail"]
