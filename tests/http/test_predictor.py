"""scoring's Predictor: records in, typed predictions out, the same for every channel; and
the REST predict route is a shell over it that answers exactly its predictions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit

from medserve.core.risk import RiskBands
from medserve.errors import PayloadTooLarge
from medserve.scoring.catalog import ModelCatalog, ServedModel
from medserve.scoring.predictor import MAX_PROBLEMS_LISTED, InvalidRecords, Predictor
from medserve.storage import Registry

CUTS = RiskBands((0.1, 0.3))


def bands_for(name: str | None, threshold: float) -> RiskBands:
    return CUTS


def bands(risks: list[float]) -> list[str]:
    return ["low" if r < 0.1 else "moderate" if r < 0.3 else "high" for r in risks]


@pytest.fixture(scope="module")
def heart(seed_home) -> Iterator[ServedModel]:
    with Registry(seed_home) as registry:
        yield ModelCatalog(registry).get("heart")


def test_predictions_are_the_reference_risk_with_label_and_band(heart, heart_records):
    records = heart_records[:200]
    predictions = Predictor(bands_for, max_records=1000).predict(heart, records)
    reference = heart.model.predict_risk(pd.DataFrame(records))
    risks = np.array([p.risk for p in predictions])
    np.testing.assert_allclose(risks, reference, rtol=0, atol=1e-9)
    assert [p.label for p in predictions] == (reference >= heart.version.threshold).tolist()
    assert [p.band for p in predictions] == bands(reference.tolist())
    assert {p.band for p in predictions} == {"low", "moderate", "high"}
    assert all(p.explanation is None for p in predictions)


def test_explanations_add_up_to_each_risk(heart, heart_records):
    predictions = Predictor(bands_for, 1000).predict(heart, heart_records[:50], explain=True)
    for prediction in predictions:
        why = prediction.explanation
        assert why is not None and why.space == "log-odds"
        assert list(why.contributions) == heart.schema.feature_names
        total = why.base_value + sum(why.contributions.values())
        assert abs(total - logit(prediction.risk)) < 1e-6
        assert why.summary.startswith(f"Risk {prediction.risk:.2f} ({prediction.band}).")


def test_too_many_records_are_refused_before_anything_else(heart, heart_records):
    predictor = Predictor(bands_for, max_records=10)
    predictor.admit(10)
    with pytest.raises(PayloadTooLarge, match="11 records in one request; the limit is 10"):
        predictor.predict(heart, [{"not": "even valid"}] * 11)


def test_invalid_records_carry_every_problem_up_to_the_listing_limit(heart, heart_records):
    records = [{**record, "age": "old"} for record in heart_records[: MAX_PROBLEMS_LISTED + 5]]
    with pytest.raises(InvalidRecords) as caught:
        Predictor(bands_for, 1000).predict(heart, records)
    problems = caught.value.problems
    assert len(problems) == MAX_PROBLEMS_LISTED
    assert [(p.record, p.field, p.rule) for p in problems[:2]] == [
        (0, "age", "type"),
        (1, "age", "type"),
    ]
    assert caught.value.message == f"{problems[0].message} (and {MAX_PROBLEMS_LISTED - 1} more)"


@pytest.mark.parametrize("explain", [False, True])
def test_the_predict_route_answers_the_predictors_predictions(service, heart_records, explain):
    records = heart_records[:20]
    with service.client() as client:
        body = client.post(
            "/v1/models/heart/predict", json={"records": records, "explain": explain}
        ).json()
    served = service.app.state.catalog.get("heart")
    expected = service.app.state.predictor.predict(served, records, explain=explain)
    # The same answers; each with an id of its own (a prediction, not the records, has one).
    ids = [answer.pop("prediction_id") for answer in body["predictions"]]
    assert len(set(ids)) == len(ids) == 20
    assert not set(ids) & {p.prediction_id for p in expected}
    assert body["predictions"] == [
        {k: v for k, v in p.to_dict().items() if k != "prediction_id"} for p in expected
    ]
    first = body["predictions"][0]
    assert list(first) == ["risk", "label", "risk_band", *(["explanation"] if explain else [])]
    if explain:
        assert list(first["explanation"]) == [
            "space", "method", "base_value", "contributions", "summary",
        ]  # fmt: skip
