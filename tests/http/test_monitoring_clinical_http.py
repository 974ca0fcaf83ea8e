"""The clinical channels in the prediction log: a RiskAssessment's identifier and a card's
uuid are prediction ids, logged with their channel and the patient only as a keyed
pseudonym; outcomes come back by the FHIR patient id and time; card feedback shows in
the monitoring view beside them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from medserve.storage.tables import PredictionRow
from support.cds_calls import hook_call, prefetch_for
from support.ehr_tokens import Ehr
from support.fhir_bindings import bind_pima, patient_bundle, patient_id

BASE = "http://testserver"
FHIR_JSON = "application/fhir+json"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def ehr(tmp_path) -> Ehr:
    return Ehr(tmp_path)


@pytest.fixture
def clinical(start_service, ehr, tmp_path):
    service = start_service(cds_issuers=ehr.trust(), public_url=BASE, monitor_min_n=2)
    bind_pima(service.settings, tmp_path)
    return service


def _logged(service) -> list[dict]:
    assert service.app.state.scoring.recorder.flush(10)
    with service.app.state.registry.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(PredictionRow))]


def test_a_risk_assessment_is_logged_by_its_identifier(clinical):
    bundle = patient_bundle(1)
    with clinical.client() as client:
        answer = client.post(
            "/v1/models/pima/fhir",
            content=json.dumps(bundle).encode(),
            headers={"Content-Type": FHIR_JSON},
        )
    assert answer.status_code == 200, answer.text
    identifiers = [item["value"] for item in answer.json()["identifier"]]
    (row,) = _logged(clinical)
    assert row["prediction_id"] in identifiers
    assert row["channel"] == "fhir" and row["subject"] is not None
    assert patient_id(bundle) not in json.dumps(row, default=str)
    # The outcome by the patient's FHIR id: its latest prediction.
    with clinical.client("outcomes") as client:
        stored = client.post(
            "/v1/models/pima/feedback",
            json={"outcomes": [{"subject": patient_id(bundle), "outcome": 1}]},
        )
    assert stored.status_code == 200, stored.text
    assert stored.json()["prediction_ids"] == [row["prediction_id"]]


def test_cards_are_logged_by_uuid_and_their_feedback_shows_in_monitoring(clinical, ehr):
    cards = []
    with clinical.client(role=None) as client:
        discovery = client.get("/cds-services", headers=ehr.headers(f"{BASE}/cds-services"))
        (entry,) = discovery.json()["services"]
        for n in (1, 2, 3):
            bundle = patient_bundle(n)
            body = hook_call(patient_id(bundle), prefetch_for(entry["prefetch"], bundle))
            url = "/cds-services/pima"
            answer = client.post(url, json=body, headers=ehr.headers(BASE + url))
            assert answer.status_code == 200, answer.text
            cards.extend(answer.json()["cards"])
        feedback = [
            {"card": cards[0]["uuid"], "outcome": "overridden",
             "overrideReason": {"reason": {"code": "already-aware",
                                           "system": "http://example.org/reasons"}},
             "outcomeTimestamp": "2026-12-01T10:00:00Z"},
            {"card": cards[1]["uuid"], "outcome": "overridden",
             "overrideReason": {"reason": {"code": "not-relevant",
                                           "system": "http://example.org/reasons"}},
             "outcomeTimestamp": "2026-12-01T10:01:00Z"},
        ]  # fmt: skip
        url = "/cds-services/pima/feedback"
        sent = client.post(url, json={"feedback": feedback}, headers=ehr.headers(BASE + url))
        assert sent.status_code == 200, sent.text
    logged = _logged(clinical)
    assert {row["prediction_id"] for row in logged} == {card["uuid"] for card in cards}
    assert {row["channel"] for row in logged} == {"cds"}
    with clinical.client("auditor") as client:
        view = client.get("/v1/models/pima/monitoring").json()
    assert view["cards"]["feedback"] == 2 and view["cards"]["overridden"] == 2
    assert view["cards"]["override_reasons"] == {"not-relevant": 1, "already-aware": 1}
    assert view["log"]["predictions"] == 3
