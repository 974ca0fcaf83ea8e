"""`"explain": true` over HTTP: per-record contributions on raw columns that add up to the
risk served, the base value, the method and space used, and a readable summary."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from medserve.errors import ExplanationUnavailable
from medserve.explain import Explainer
from medserve.http.problems import http_status
from medserve.scoring.catalog import ServedModel
from medserve.storage import Registry
from support.servers import json_records


@pytest.fixture
def service(start_service):
    return start_service()


@pytest.fixture(scope="module")
def pima_records(pima_csv) -> list[dict]:
    frame = pd.read_csv(pima_csv, dtype=str)
    return json_records(frame.drop(columns=["Outcome"]))


def stored(service, name: str):
    with Registry(service.settings) as registry:
        return registry.load(registry.get(name))


@pytest.mark.parametrize(
    ("name", "method"),
    [("heart", "exact linear attribution"), ("pima", "LightGBM pred_contrib")],
)
def test_explained_predictions_add_up_to_the_served_risk(
    service, name, method, heart_records, pima_records
):
    records = (heart_records if name == "heart" else pima_records)[:200]
    with service.client() as client:
        response = client.post(
            f"/v1/models/{name}/predict", json={"records": records, "explain": True}
        )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    model = stored(service, name)
    for prediction in predictions:
        explanation = prediction["explanation"]
        assert explanation["space"] == "log-odds"
        assert explanation["method"].startswith(method)
        assert list(explanation["contributions"]) == model.schema.feature_names
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - logit(prediction["risk"])) < 1e-6
        summary = explanation["summary"]
        assert summary.startswith(f"Risk {prediction['risk']:.2f} ({prediction['risk_band']}).")
    # The fast path explains exactly what the reference explainer does on the same rows.
    reference = Explainer(model).explain_frame(pd.DataFrame(records))
    served = np.array([list(p["explanation"]["contributions"].values()) for p in predictions])
    np.testing.assert_allclose(served, reference.contributions, atol=1e-9)


def test_summary_names_the_records_own_values(service, heart_records):
    record = dict(heart_records[0], cp="asymptomatic", oldpeak=3.1, exang=True)
    with service.client() as client:
        response = client.post(
            "/v1/models/heart/predict", json={"records": [record], "explain": True}
        )
    summary = response.json()["predictions"][0]["explanation"]["summary"]
    assert "Raised most by:" in summary
    assert "cp = asymptomatic" in summary


def test_explanations_are_only_sent_when_asked(service, heart_records):
    with service.client() as client:
        plain = client.post("/v1/models/heart/predict", json={"records": heart_records[:3]})
        wrong = client.post(
            "/v1/models/heart/predict", json={"records": heart_records[:3], "explain": "maybe"}
        )
    assert all("explanation" not in p for p in plain.json()["predictions"])
    assert wrong.status_code == 422
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert "explain" in wrong.json()["detail"]


def test_model_stored_without_background_answers_409_with_the_fix(service, heart_records):
    with Registry(service.settings) as registry:
        version = registry.get("heart")
    served = ServedModel.of(version, replace(stored(service, "heart"), background=None))
    with pytest.raises(ExplanationUnavailable, match="retrain") as caught:
        served.explaining()
    assert http_status(caught.value) == 409
    assert served.scorer.risk(heart_records[:2]).shape == (2,)  # it still predicts
