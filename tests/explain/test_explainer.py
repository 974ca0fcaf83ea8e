"""Explanations are additive on the model's own output, name raw columns only, agree with
the SHAP library where it applies, and hold aggregates only when summarised for reports."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import shap
from scipy.special import logit
from sklearn.linear_model import LogisticRegression

from medserve.core.risk import risk_logit
from medserve.data import infer_schema, read_table
from medserve.errors import ExplanationUnavailable
from medserve.explain import Explainer, Explanations, explained, report_section, summary_sentence
from medserve.modeling import TrainedModel, TrainOptions, make_pipeline, train_model
from medserve.modeling.preprocess import encoded_sources
from medserve.modeling.train import labelled_rows
from medserve.scoring.compiled import FastScorer
from support.servers import json_records

# base + Σ contributions against logit(model.predict_risk): exact explainers in float64;
# the MLP is explained in float64 while it scores in float32, hence its wider bound.
TOLERANCE = {"logistic": 1e-6, "lightgbm": 1e-6, "ebm": 1e-6, "mlp": 1e-5}


@pytest.fixture(scope="module")
def heart_table(heart_csv) -> pd.DataFrame:
    return read_table(heart_csv)


@pytest.fixture(scope="module")
def heart_schema(heart_table):
    return infer_schema(heart_table, target="num", positive_if=">0")


@pytest.fixture(scope="module")
def heart_rows(heart_table, heart_schema) -> pd.DataFrame:
    return labelled_rows(heart_table, heart_schema)[0]


@pytest.fixture(scope="module")
def trained(heart_table, heart_schema) -> Callable[[str], TrainedModel]:
    models: dict[str, TrainedModel] = {}

    def model_for(family: str) -> TrainedModel:
        if family not in models:
            if family == "ebm":
                models[family] = _small_ebm(heart_table, heart_schema)
            else:
                options = TrainOptions(family=family, cv=2)
                models[family] = train_model(heart_table, heart_schema, options).model
        return models[family]

    return model_for


def _small_ebm(table: pd.DataFrame, schema) -> TrainedModel:
    """A quickly fitted EBM (one bag, few rounds): additivity does not depend on its quality."""
    rows, labels, _ = labelled_rows(table, schema)
    pipeline = make_pipeline("ebm", schema).set_params(
        model__outer_bags=1, model__max_rounds=300, model__interactions=3
    )
    pipeline.fit(schema.prepare(rows), labels)
    return TrainedModel("ebm", schema, pipeline, threshold=0.5, threshold_rule="fixed 0.5")


@pytest.mark.parametrize("family", ["logistic", "lightgbm", "mlp", "ebm"])
def test_contributions_add_up_to_the_models_log_odds(family, trained, heart_rows, heart_schema):
    model = trained(family)
    explanations = Explainer(model).explain_frame(heart_rows)
    expected = logit(model.predict_risk(heart_rows))
    assert explanations.space == "log-odds"
    assert explanations.columns == tuple(heart_schema.feature_names)
    assert explanations.contributions.shape == (len(heart_rows), len(heart_schema.features))
    assert np.abs(explanations.log_odds - expected).max() < TOLERANCE[family]


def test_recalibrated_model_is_explained_on_its_calibrated_log_odds(trained, heart_rows):
    base = trained("lightgbm")
    raw = base.predict_risk(heart_rows)
    calibrator = LogisticRegression().fit(risk_logit(raw).reshape(-1, 1), (raw > 0.5).astype(int))
    model = replace(base, calibrator=calibrator)
    explanations = Explainer(model).explain_frame(heart_rows)
    assert "Platt" in explanations.method
    risk = model.predict_risk(heart_rows)
    resolvable = (risk > 1e-9) & (risk < 1 - 1e-9)  # logit(risk) is only float noise beyond
    difference = explanations.log_odds[resolvable] - logit(risk[resolvable])
    assert np.abs(difference).max() < 1e-6
    np.testing.assert_allclose(explanations.risk, risk, atol=1e-12)


def test_linear_attribution_equals_shap_linear_explainer(trained, heart_rows):
    model = trained("logistic")
    preprocess = model.pipeline.named_steps["preprocess"]
    estimator = model.pipeline.named_steps["model"]
    background = preprocess.transform(model.schema.prepare(model.background))
    encoded = preprocess.transform(model.schema.prepare(heart_rows))
    reference = shap.LinearExplainer(
        (estimator.coef_[0], estimator.intercept_[0]), shap.maskers.Independent(background)
    )
    expected = reference.shap_values(encoded)
    sources = np.array(encoded_sources(preprocess))
    explanations = Explainer(model).explain_frame(heart_rows)
    for j, column in enumerate(explanations.columns):
        summed = expected[:, sources == column].sum(axis=1)
        np.testing.assert_allclose(explanations.contributions[:, j], summed, atol=1e-9)


def test_one_hot_parts_are_summed_back_to_their_column(trained, heart_rows):
    model = trained("lightgbm")
    explanations = Explainer(model).explain_frame(heart_rows.head(20))
    records = explained(explanations, [0.5] * 20, ["moderate"] * 20, [{}] * 20)
    assert set(records[0]["contributions"]) == set(model.schema.feature_names)
    assert "cp" in records[0]["contributions"]  # a categorical column, not cp_asymptomatic
    assert records[0]["method"] == "LightGBM pred_contrib (exact TreeSHAP)"


def test_summary_names_the_largest_raising_and_lowering_inputs():
    columns = ("age", "cp", "oldpeak", "chol", "sex")
    contributions = np.array([-0.8, 1.2, 0.6, 0.001, -0.2])
    values = {"age": 41, "cp": "asymptomatic", "oldpeak": 2.3, "chol": None, "sex": "Male"}
    sentence = summary_sentence(0.7213, "high", columns, contributions, values)
    assert sentence == (
        "Risk 0.72 (high). Raised most by: cp = asymptomatic, oldpeak = 2.3; "
        "lowered most by: age = 41, sex = Male."
    )


def test_summary_says_when_nothing_raised_the_risk():
    sentence = summary_sentence(0.04, "low", ("age", "bmi"), np.array([-0.3, 0.0]), {"bmi": None})
    assert (
        sentence
        == "Risk 0.04 (low). No input raised it notably; lowered most by: age = not measured."
    )


def test_model_without_background_says_to_retrain(trained):
    model = replace(trained("logistic"), background=None)
    with pytest.raises(ExplanationUnavailable, match="retrain"):
        Explainer(model)


def test_report_section_holds_aggregates_not_rows(trained, heart_rows):
    model = trained("lightgbm")
    rows = heart_rows.head(61)
    section = report_section(model, rows)
    assert section["n"] == 61 and section["space"] == "log-odds"
    importance = [entry["mean_abs"] for entry in section["importance"]]
    assert importance == sorted(importance, reverse=True)
    assert {entry["column"] for entry in section["importance"]} == set(model.schema.feature_names)
    for entry in section["distribution"]:
        counts = np.array(entry["counts"])
        assert counts.sum() == 61
        levels = entry["value_level"]
        # Bins of fewer than 3 records never show a level; categorical columns never do.
        assert all(level is None for level, n in zip(levels, counts, strict=True) if n < 3)
        if model.schema.column(entry["column"]).type == "categorical":  # no low-to-high order
            assert all(level is None for level in levels)
        else:
            assert any(level is not None for level in levels)
    text = str(section)
    assert "Switzerland" not in text and "asymptomatic" not in text  # no record values


@pytest.mark.parametrize("family", ["logistic", "lightgbm", "mlp"])
def test_fast_path_matrix_is_explained_as_the_frame_is(family, trained, heart_rows):
    model = trained(family)
    rows = heart_rows.head(50)
    records = json_records(rows)
    explainer = Explainer(model)
    from_matrix = explainer.explain_matrix(FastScorer.from_model(model).matrix(records))
    from_frame = explainer.explain_frame(rows)
    np.testing.assert_allclose(from_matrix.contributions, from_frame.contributions, atol=1e-9)
    np.testing.assert_allclose(from_matrix.base_value, from_frame.base_value, atol=1e-12)


def test_summary_shows_values_as_the_model_read_them(heart_schema):
    chol = heart_schema.column("chol")
    assert "0" in chol.missing_tokens  # the heart data's "cholesterol 0" means not measured
    explanations = Explanations(
        space="log-odds",
        method="test",
        columns=("chol", "cp"),
        base_value=np.array([0.0]),
        contributions=np.array([[0.5, 0.3]]),
    )
    row = {"chol": 0, "cp": "pain never seen"}
    (record,) = explained(explanations, [0.62], ["high"], [row], heart_schema)
    assert record["summary"] == (
        "Risk 0.62 (high). Raised most by: chol = not measured, "
        "cp = pain never seen (not seen in training)."
    )


def test_a_family_that_reads_the_frame_is_not_explained_from_the_matrix(trained):
    explainer = Explainer(trained("ebm"))
    assert not explainer.takes_matrix
    with pytest.raises(ValueError, match="the ebm model reads the prepared frame"):
        explainer.explain_matrix(np.zeros((1, 3)))
