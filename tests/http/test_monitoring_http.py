"""After go-live over HTTP: every channel's answer carries a prediction id that lands in
the prediction log (never a feature value), outcomes come back by id or by subject, bad
feedback is refused and changes nothing, and the monitoring view shows live performance
equal to scikit-learn's on the same labels."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sqlalchemy import select

from medserve.storage.tables import OutcomeRow, PredictionRow

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _predict(client, records, **extra):
    response = client.post("/v1/models/heart/predict", json={"records": records, **extra})
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def _rows(service, table):
    with service.app.state.registry.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(select(table))]


def _flush(service):
    assert service.app.state.scoring.recorder.flush(10)


def test_every_prediction_has_an_id_in_the_log_without_feature_values(service, heart_records):
    with service.client() as client:
        predictions = _predict(client, heart_records[:3])
    ids = [p["prediction_id"] for p in predictions]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    _flush(service)
    logged = _rows(service, PredictionRow)
    assert sorted(row["prediction_id"] for row in logged) == sorted(ids)
    row = logged[0]
    assert set(row) == {
        "id", "prediction_id", "model", "model_version", "shadow", "made_at", "channel",
        "risk", "label", "band", "subject",
    }  # fmt: skip
    assert row["channel"] == "rest" and row["shadow"] is False and row["subject"] is None
    by_id = {p["prediction_id"]: p for p in predictions}
    for logged_row in logged:
        answered = by_id[logged_row["prediction_id"]]
        assert logged_row["risk"] == pytest.approx(answered["risk"])
        assert logged_row["band"] == answered["risk_band"]


def test_a_subject_id_is_kept_only_as_a_keyed_pseudonym(service, heart_records):
    with service.client() as client:
        _predict(client, heart_records[:2], subjects=["MRN-0001", None])
    _flush(service)
    subjects = sorted((row["subject"] or "") for row in _rows(service, PredictionRow))
    assert subjects[0] == "" and subjects[1] not in ("", "MRN-0001")
    assert "MRN-0001" not in subjects[1]


def test_subjects_must_match_the_records(service, heart_records):
    with service.client() as client:
        response = client.post(
            "/v1/models/heart/predict", json={"records": heart_records[:2], "subjects": ["a"]}
        )
    assert response.status_code == 422
    assert "one per record" in response.text


def test_live_performance_equals_scikit_learn_on_the_same_labels(service, heart_records, heart):
    records = heart_records[:120]
    labels = (heart["num"].astype(int).to_numpy()[:120] > 0).astype(int)
    with service.client() as client:
        predictions = _predict(client, records)
        outcomes = [
            {"prediction_id": p["prediction_id"], "outcome": int(y)}
            for p, y in zip(predictions, labels, strict=True)
        ]
    with service.client("outcomes") as client:
        stored = client.post("/v1/models/heart/feedback", json={"outcomes": outcomes})
    assert stored.status_code == 200, stored.text
    assert stored.json()["stored"] == 120
    with service.client("trainer") as client:
        view = client.get("/v1/models/heart/monitoring")
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["log"] == {"predictions": 120, "shadow_predictions": 0, "outcomes": 120}
    (performance,) = body["performance"]["versions"].values()
    overall = performance["overall"]
    risk = np.array([p["risk"] for p in predictions])
    assert overall["n"] == 120 and overall["events"] == int(labels.sum())
    assert overall["auroc"]["estimate"] == pytest.approx(roc_auc_score(labels, risk))
    assert overall["oe_ratio"]["estimate"] == pytest.approx(labels.sum() / risk.sum())
    low, high = overall["auroc"]["ci95"]
    assert low < overall["auroc"]["estimate"] < high


def test_outcomes_by_subject_and_time_find_the_latest_prediction(service, heart_records):
    with service.client() as client:
        (first,) = _predict(client, heart_records[:1], subjects=["MRN-7"])
        (second,) = _predict(client, heart_records[1:2], subjects=["MRN-7"])
    with service.client("outcomes") as client:
        stored = client.post(
            "/v1/models/heart/feedback",
            json={"outcomes": [{"subject": "MRN-7", "at": "2099-01-01T00:00:00Z", "outcome": 1}]},
        )
    assert stored.status_code == 200, stored.text
    assert stored.json()["prediction_ids"] == [second["prediction_id"]]
    assert first["prediction_id"] != second["prediction_id"]


@pytest.mark.parametrize(
    "item, status, said",
    [
        ({"prediction_id": "0" * 32, "outcome": 1}, 404, "logged no prediction"),
        ({"prediction_id": "KNOWN", "outcome": 2}, 422, "outcome"),
        ({"prediction_id": "KNOWN", "outcome": True}, 422, "outcome"),
        ({"prediction_id": "KNOWN", "outcome": "1"}, 422, "outcome"),
        ({"subject": "nobody", "outcome": 1}, 404, "for that subject"),
        ({"outcome": 1}, 422, "prediction_id"),
    ],
)
def test_bad_feedback_is_refused_and_changes_nothing(service, heart_records, item, status, said):
    with service.client() as client:
        (known, other) = _predict(client, heart_records[:2])
    with service.client("outcomes") as client:
        first = client.post(
            "/v1/models/heart/feedback",
            json={"outcomes": [{"prediction_id": other["prediction_id"], "outcome": 0}]},
        )
        assert first.status_code == 200
        item = {k: (known["prediction_id"] if v == "KNOWN" else v) for k, v in item.items()}
        good = {"prediction_id": known["prediction_id"], "outcome": 1}
        response = client.post(
            "/v1/models/heart/feedback",
            json={"outcomes": [good, item] if status == 404 else [item]},
        )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert said in response.text
    outcomes = _rows(service, OutcomeRow)
    assert [(row["prediction_id"], row["outcome"]) for row in outcomes] == [
        (other["prediction_id"], 0)
    ]


def test_duplicate_feedback_is_a_conflict_and_the_first_report_stands(service, heart_records):
    with service.client() as client:
        (prediction,) = _predict(client, heart_records[:1])
    item = {"prediction_id": prediction["prediction_id"], "outcome": 1}
    with service.client("outcomes") as client:
        assert (
            client.post("/v1/models/heart/feedback", json={"outcomes": [item]}).status_code == 200
        )
        again = client.post(
            "/v1/models/heart/feedback", json={"outcomes": [{**item, "outcome": 0}]}
        )
        twice = client.post("/v1/models/heart/feedback", json={"outcomes": [item, item]})
    assert again.status_code == 409 and "has an outcome already" in again.text
    assert twice.status_code == 409
    assert [(r["outcome"]) for r in _rows(service, OutcomeRow)] == [1]


def test_outcomes_role_may_send_outcomes_but_not_predict(service, heart_records):
    with service.client("outcomes") as client:
        response = client.post("/v1/models/heart/predict", json={"records": heart_records[:1]})
        view = client.get("/v1/models/heart/monitoring")
    assert response.status_code == 403
    assert view.status_code == 403


def test_feedback_for_another_models_prediction_is_unknown(service, heart_records):
    with service.client() as client:
        (prediction,) = _predict(client, heart_records[:1])
    with service.client("outcomes") as client:
        response = client.post(
            "/v1/models/pima/feedback",
            json={"outcomes": [{"prediction_id": prediction["prediction_id"], "outcome": 1}]},
        )
    assert response.status_code == 404


@pytest.mark.parametrize(
    "field, moment",
    [("at", "0001-01-01T00:00:00+05:00"), ("at", "9999-12-31T23:00:00-05:00"),
     ("observed_at", "0001-01-01T00:00:00+05:00"), ("at", "2026-12-02T09:30:00")],
)  # fmt: skip
def test_a_time_no_clinic_keeps_is_422_not_a_crash(service, heart_records, field, moment):
    with service.client() as client:
        (prediction,) = _predict(client, heart_records[:1], subjects=["S1"])
    item = (
        {"subject": "S1", "at": moment, "outcome": 1}
        if field == "at"
        else {"prediction_id": prediction["prediction_id"], "observed_at": moment, "outcome": 1}
    )
    with service.client("outcomes") as client:
        response = client.post("/v1/models/heart/feedback", json={"outcomes": [item]})
    assert response.status_code == 422, response.text
    assert _rows(service, OutcomeRow) == []


def test_outcomes_still_arrive_for_a_model_whose_versions_are_all_archived(
    service, heart_records
):
    with service.client() as client:
        (prediction,) = _predict(client, heart_records[:1])
    _flush(service)
    service.app.state.registry.archive("heart:1", force=True)
    with service.client("outcomes") as client:
        response = client.post(
            "/v1/models/heart/feedback",
            json={"outcomes": [{"prediction_id": prediction["prediction_id"], "outcome": 0}]},
        )
    assert response.status_code == 200, response.text


def test_subject_ids_are_case_sensitive_as_fhir_ids_are(service, heart_records):
    with service.client() as client:
        (lower,) = _predict(client, heart_records[:1], subjects=["pat-abc"])
        (upper,) = _predict(client, heart_records[1:2], subjects=["PAT-ABC"])
    with service.client("outcomes") as client:
        stored = client.post(
            "/v1/models/heart/feedback", json={"outcomes": [{"subject": "pat-abc", "outcome": 1}]}
        )
    assert stored.json()["prediction_ids"] == [lower["prediction_id"]] != [upper["prediction_id"]]
