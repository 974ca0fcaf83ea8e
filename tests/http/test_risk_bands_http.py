"""Risk bands follow the model: by default below half its threshold is "low", up to it
"moderate", at or above it "high" — so "high" is exactly label 1 — and a model's own cuts
(MEDSERVE_MODEL_RISK_BANDS) name its risks the same on every channel: REST, the Python
API, FHIR and CDS Hooks (tests/http/test_fhir_http.py and test_cds_hooks_http.py check
those against REST)."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

import medserve
from medserve.config import Settings
from medserve.core.risk import RiskBands


def rest_predictions(service, records: list[dict]) -> list[dict]:
    with service.client() as client:
        answer = client.post("/v1/models/heart/predict", json={"records": records})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_default_bands_follow_the_models_threshold(service, heart_records):
    predictions = rest_predictions(service, heart_records[:400])
    threshold = service.app.state.catalog.get("heart").version.threshold
    assert {p["risk_band"] for p in predictions} == {"low", "moderate", "high"}
    for prediction in predictions:
        assert (prediction["risk_band"] == "high") == (prediction["label"] == 1)
        assert (prediction["risk_band"] == "low") == (prediction["risk"] < threshold / 2)


def test_a_models_own_bands_are_the_same_over_rest_and_the_python_api(
    start_service, heart_records, heart_csv
):
    service = start_service(model_risk_bands={"heart": [0.2, 0.5]})
    predictions = rest_predictions(service, heart_records[:300])
    expected = RiskBands((0.2, 0.5)).of([p["risk"] for p in predictions])
    assert [p["risk_band"] for p in predictions] == expected
    frame = pd.read_csv(heart_csv, dtype=str, keep_default_na=False, na_values=[""])
    model = medserve.load("heart", settings=service.settings)
    scored = model.predict(frame.drop(columns=["id", "num"]).head(300))
    assert scored["risk_band"].tolist() == expected


@pytest.mark.parametrize(
    ("bands", "said"),
    [({"heart": [0.5, 0.2]}, "rise strictly"), ({"heart": [0.1, 0.2, 0.3]}, "labels")],
)
def test_bands_that_cannot_be_are_refused_naming_the_model(tmp_path, bands, said):
    with pytest.raises(ValidationError) as refused:
        Settings(home=tmp_path, model_risk_bands=bands)
    assert "model_risk_bands['heart']" in str(refused.value) and said in str(refused.value)


def test_labels_that_derived_bands_cannot_have_are_refused_at_start(tmp_path):
    with pytest.raises(ValidationError, match="risk_band_labels: 4 labels"):
        Settings(home=tmp_path, risk_band_labels=["a", "b", "c", "d"])
    # With cuts of its own, any number of bands works.
    Settings(home=tmp_path, risk_band_labels=["a", "b", "c", "d"], risk_band_cuts=[0.1, 0.2, 0.4])
