"""The log-odds blend: weights fitted on out-of-fold predictions, exact explanations,
the fast path, and storage, on the bundled heart table."""

import numpy as np
import pytest
from scipy.special import expit, logit

from medserve.explain import Explainer
from medserve.modeling import TrainOptions, train_model
from medserve.modeling.families import fit_weights, get_family
from medserve.modeling.train import labelled_rows
from medserve.scoring.compiled import FastScorer


@pytest.fixture(scope="module")
def blended(heart, heart_schema):
    """A blend of logistic and each LightGBM capacity tried."""
    options = TrainOptions(family="logistic,lightgbm", cv=3, metric="logloss")
    result = train_model(heart, heart_schema, options)
    blend = next(row for row in result.leaderboard if row.family == "blend")
    # Not left to chance: build the model from the blend whatever the selection said.
    from medserve.modeling.search import unfitted_model

    family, pipeline = unfitted_model(blend, result.leaderboard, heart_schema, seed=0)
    rows, labels, _ = labelled_rows(heart, heart_schema)
    pipeline.fit(heart_schema.prepare(rows), labels)
    model = result.model
    model.family, model.pipeline = family, pipeline
    return model, rows


def test_weights_are_non_negative_and_recover_a_known_mix():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < expit(0.3 + 1.5 * z[:, 0] + 0.5 * z[:, 1])).astype(int)
    intercept, weights = fit_weights(z, y)
    assert np.all(weights >= 0) and weights[2] < 0.1
    assert weights[0] == pytest.approx(1.5, abs=0.15) and weights[1] == pytest.approx(0.5, abs=0.1)
    assert intercept == pytest.approx(0.3, abs=0.1)


def test_the_blend_is_its_members_in_log_odds(blended):
    model, rows = blended
    components = get_family("blend").components(model)
    assert components is not None
    intercept, members = components
    assert members and all(m.weight > 0 for m in members)
    expected = intercept + sum(
        m.weight * logit(np.clip(m.model.predict_risk(rows), 1e-7, 1 - 1e-7)) for m in members
    )
    raw = model.pipeline.predict_proba(model.schema.prepare(rows))[:, 1]
    np.testing.assert_allclose(logit(raw), expected, rtol=1e-6, atol=1e-6)


def test_the_blends_explanations_add_up_to_its_log_odds(blended):
    model, rows = blended
    explained = Explainer(model).explain_frame(rows.head(40))
    np.testing.assert_allclose(
        explained.risk, model.predict_risk(rows.head(40)), rtol=1e-6, atol=1e-9
    )
    assert explained.method.startswith("log-odds blend of exact attributions")
    assert explained.contributions.shape == (40, len(model.schema.feature_names))


def test_the_fast_path_scores_a_blend_as_the_pipeline_does(blended):
    model, rows = blended
    records = rows.head(25).astype(object).where(rows.head(25).notna(), None)
    records = records.to_dict(orient="records")
    risk = FastScorer.from_model(model).risk(records)
    np.testing.assert_allclose(risk, model.predict_risk(rows.head(25)), rtol=1e-9, atol=1e-12)


def test_fitted_params_name_each_member_and_weight(blended):
    model, _ = blended
    params = get_family("blend").fitted_params(model.pipeline)
    members = params["weights"].split("; ")
    assert members and all(" × logistic" in m or " × lightgbm (" in m for m in members)
    assert all(float(m.split(" × ")[0]) > 0 for m in members)
    assert isinstance(params["intercept"], float)


def test_explanations_add_up_where_a_member_is_saturated(blended):
    """A member certain of the outcome (its risk within 1e-7 of 1) is read by the blend at
    the clipped log-odds; its contributions are scaled to what the blend used."""
    model, rows = blended
    extreme = rows.head(5).copy()
    extreme["oldpeak"], extreme["ca"], extreme["thalch"] = 60.0, 30.0, 20.0
    _, members = get_family("blend").components(model)
    logistic = next(m for m in members if m.model.family == "logistic")
    assert np.all(logistic.model.predict_risk(extreme) > 1 - 1e-7)  # saturated
    explained = Explainer(model).explain_frame(extreme)
    expected = model.pipeline.decision_function(model.schema.prepare(extreme))
    np.testing.assert_allclose(explained.log_odds, expected, rtol=1e-9, atol=1e-9)
