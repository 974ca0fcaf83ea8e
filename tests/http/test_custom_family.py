"""A family defined here, in the test, and registered for it alone, goes through train,
register, serve over HTTP (fast path included) and explain like a built-in one, with no
other change to medserve's code: a model family is one object."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.pipeline import Pipeline

from medserve.config import Settings
from medserve.data.schema import Schema
from medserve.explain import Explainer
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from medserve.modeling import TrainedModel
from medserve.modeling.families import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    RawRisk,
    encoded_background,
    estimator_of,
    find_family,
    matrix_attributor,
    registered_family,
)
from medserve.modeling.preprocess import build_preprocessor
from medserve.scoring.compiled import FastScorer
from medserve.security.api_keys import ApiKeyStore
from medserve.storage import Registry

METHOD = "LDA: coefficient × (value − training background mean)"


class DiscriminantFamily:
    """Linear discriminant analysis on the imputed, scaled, one-hot inputs: its log-odds
    are linear in them, so the fast path and the attribution are one line each."""

    name = "lda"
    in_auto = False
    native_missing: NativeMissing | None = None
    libraries: dict[str, str] = {}

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        return Pipeline(
            [("preprocess", build_preprocessor(schema)), ("model", LinearDiscriminantAnalysis())]
        )

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        lda = estimator_of(pipeline)
        return lambda matrix: expit((matrix @ lda.coef_.T + lda.intercept_).reshape(-1))

    def attribution(self, model: TrainedModel) -> Attributor | None:
        lda = estimator_of(model.pipeline)
        coef, reference = lda.coef_[0], encoded_background(model).mean(axis=0)
        base = float(lda.intercept_[0] + reference @ coef)

        def attribute(matrix: np.ndarray) -> Attribution:
            return Attribution(np.full(len(matrix), base), (matrix - reference) * coef)

        return matrix_attributor(model.pipeline, attribute, METHOD)

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        return {"event_prior": float(estimator_of(pipeline).priors_[1])}


@pytest.fixture
def lda_family() -> Iterator[DiscriminantFamily]:
    with registered_family(DiscriminantFamily()) as family:
        yield family
    assert find_family("lda") is None  # gone again: no other test sees it


def test_a_family_defined_in_a_test_is_trained_registered_served_and_explained(
    lda_family, tmp_path, heart_csv, heart_records, serve_app
):
    settings = Settings(home=tmp_path / "home")
    outcome = train_and_register(
        settings,
        TrainRequest(data=heart_csv, target="num", positive_if=">0", family="lda", cv=3),
    )
    version = outcome.version
    assert version.family == "lda"
    assert 0 < version.params["estimator"]["event_prior"] < 1  # the family's fitted params
    assert outcome.metrics["auroc"].estimate > 0.85
    with Registry(settings) as registry:
        model = registry.load(version)
    assert FastScorer.from_model(model).exact_fast_path

    app = create_app(settings)
    _, token = ApiKeyStore(app.state.registry.engine).create("predictor", name="lda test")
    served = serve_app(app, settings)
    records = heart_records[:100]
    with served.client(role=None) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        response = client.post(
            f"/v1/models/{version.name}/predict", json={"records": records, "explain": True}
        )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    risk = np.array([p["risk"] for p in predictions])
    np.testing.assert_allclose(risk, model.predict_risk(pd.DataFrame(records)), rtol=0, atol=1e-12)
    for prediction in predictions:
        explanation = prediction["explanation"]
        assert explanation["method"].startswith(METHOD)
        assert list(explanation["contributions"]) == model.schema.feature_names
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(total - logit(prediction["risk"])) < 1e-6
    served_contributions = np.array(
        [list(p["explanation"]["contributions"].values()) for p in predictions]
    )
    reference = Explainer(model).explain_frame(pd.DataFrame(records))
    np.testing.assert_allclose(served_contributions, reference.contributions, atol=1e-9)
