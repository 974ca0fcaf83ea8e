"""Drift without rows, on a real model trained on Cleveland and Hungary: it fires on VA
Long Beach and Switzerland, stays quiet on resamples of the training table, and says
nothing at all about windows too small to show."""

import json

import numpy as np
import pandas as pd
import pytest

from medserve.data import ColumnSpec, Schema, infer_schema
from medserve.modeling import TrainedModel, TrainOptions, train_model
from medserve.monitoring.drift import DriftThresholds, window_drift
from medserve.monitoring.profile import ReferenceProfile, build_profile
from medserve.monitoring.windows import batch_counts, empty_counts, merge_counts

TRAINING_SITES = ["Cleveland", "Hungary"]


@pytest.fixture(scope="module")
def training(heart: pd.DataFrame) -> pd.DataFrame:
    return heart[heart["dataset"].isin(TRAINING_SITES)].reset_index(drop=True)


@pytest.fixture(scope="module")
def schema(training: pd.DataFrame) -> Schema:
    # The site is left out: a model that reads it sees every new site as an unseen level.
    return infer_schema(training, target="num", positive_if=">0", ignore=["dataset"])


@pytest.fixture(scope="module")
def model(training: pd.DataFrame, schema: Schema) -> TrainedModel:
    return train_model(training, schema, TrainOptions(family="logistic", cv=3)).model


@pytest.fixture(scope="module")
def profile(model: TrainedModel, schema: Schema, training: pd.DataFrame) -> ReferenceProfile:
    frame = training[schema.feature_names]
    document = build_profile(schema, frame, model.predict_risk(frame)).to_dict()
    return ReferenceProfile.from_dict(json.loads(json.dumps(document)))  # as stored


def records(frame: pd.DataFrame, schema: Schema) -> list[dict]:
    """Rows as served records: JSON values, null where the table is blank."""
    features = frame[schema.feature_names].astype(object)
    return features.where(features.notna(), None).to_dict("records")


def drift_of(frame, model, schema, profile) -> dict:
    risk = model.predict_risk(frame[schema.feature_names])
    return window_drift(profile, batch_counts(profile, schema, records(frame, schema), risk))


def alerted(report: dict) -> set[tuple[str, str | None]]:
    return {(alert["metric"], alert["feature"]) for alert in report["alerts"]}


def test_drift_fires_on_va_long_beach(heart, model, schema, profile):
    report = drift_of(heart[heart["dataset"] == "VA Long Beach"], model, schema, profile)
    found = alerted(report)
    # VA measured vessels (ca) in 2 of 200 patients and maximal heart rate in 3 of 4.
    assert {("missing_shift", "ca"), ("missing_shift", "thalch"), ("psi", "thalch")} <= found
    assert ("risk_psi", None) in found
    messages = [alert["message"] for alert in report["alerts"]]
    assert "ca: the share missing rose from 49% to 99% (threshold 10 points)" in messages
    assert report["features"]["ca"]["missing"]["shift"] > 0.45


def test_drift_fires_on_switzerland_cholesterol_of_zero(heart, model, schema, profile):
    # Cleveland and Hungary never record chol 0, so the schema has no token for it and
    # Switzerland's zeros (its every row) read as readings far below training's range.
    assert schema.column("chol").missing_tokens == []
    report = drift_of(heart[heart["dataset"] == "Switzerland"], model, schema, profile)
    found = alerted(report)
    assert ("psi", "chol") in found and ("missing_shift", "chol") not in found
    chol = report["features"]["chol"]
    assert chol["psi"] > 2 and chol["psi_band"] == "shift" and chol["missing"]["window"] == 0
    assert ("risk_psi", None) in found


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_drift_stays_quiet_on_a_resample_of_the_training_sites(
    training, model, schema, profile, seed
):
    sample = training.sample(150, replace=True, random_state=seed)
    report = drift_of(sample, model, schema, profile)
    assert report["suppressed"] is False and report["n"] == 150
    assert report["alerts"] == []


def test_small_windows_are_suppressed_and_show_no_numbers(training, model, schema, profile):
    nine = drift_of(training.iloc[:9], model, schema, profile)
    assert nine == {
        "n": 9,
        "suppressed": True,
        "reason": "fewer than 10 predictions in this window",
    }
    ten = drift_of(training.iloc[:10], model, schema, profile)
    assert ten["suppressed"] is False and set(ten["features"]) == set(profile.features)
    assert ten["risk"]["psi"] is not None
    assert window_drift(profile, {})["suppressed"] is True
    assert window_drift(profile, empty_counts(profile))["suppressed"] is True


def test_a_large_psi_from_a_small_window_alone_is_no_alert(profile):
    # Ten values spread unevenly over ten equal bins: PSI above 0.25 by chance alone.
    counts = empty_counts(profile)
    counts["n"] = 10
    counts["features"]["age"]["bins"] = [3, 0, 1, 0, 2, 0, 1, 0, 2, 1]
    report = window_drift(profile, counts)
    age = report["features"]["age"]
    assert age["psi"] >= 0.25 and age["p_value"] > 0.001
    assert ("psi", "age") not in alerted(report)
    lenient = window_drift(profile, counts, DriftThresholds(p_value=0.5))
    assert ("psi", "age") in alerted(lenient)


def test_one_missing_value_in_a_small_window_is_no_alert(profile):
    counts = empty_counts(profile)
    counts["n"] = 10
    counts["features"]["age"]["missing"] = 1  # never missing in training
    assert ("missing_shift", "age") not in alerted(window_drift(profile, counts))
    counts["features"]["age"]["missing"] = 3
    assert ("missing_shift", "age") in alerted(window_drift(profile, counts))


def test_merged_halves_count_as_the_whole(heart, model, schema, profile):
    frame = heart[heart["dataset"] == "VA Long Beach"]
    rows, risk = records(frame, schema), model.predict_risk(frame[schema.feature_names])
    whole = batch_counts(profile, schema, rows, risk)
    first = batch_counts(profile, schema, rows[:77], risk[:77])
    second = batch_counts(profile, schema, rows[77:], risk[77:])
    merged = merge_counts(first, second)
    assert merged["risk_sum"] == pytest.approx(whole.pop("risk_sum"))
    merged.pop("risk_sum")
    assert merged == whole
    assert merge_counts({}, first) == first and merge_counts(first, {}) == first


def tiny() -> tuple[Schema, ReferenceProfile]:
    schema = Schema(
        columns=[
            ColumnSpec(name="sbp", type="numeric", missing_tokens=["0"]),
            ColumnSpec(name="smoker", type="categorical", categories=["no", "yes"]),
        ]
    )
    frame = pd.DataFrame({"sbp": [str(v) for v in range(100, 200)], "smoker": ["no", "yes"] * 50})
    return schema, build_profile(schema, frame, np.linspace(0, 1, 100))


def test_batch_counts_counts_bins_missing_and_unseen_levels():
    schema, profile = tiny()
    assert profile.features["sbp"].edges == [109, 119, 129, 139, 149, 159, 169, 179, 189]
    served = [
        {"sbp": 90, "smoker": "no"},  # below the first edge: bin 0
        {"sbp": 109, "smoker": "YES"},  # on an edge: the bin below; the level in any case
        {"sbp": "150", "smoker": "former"},  # number text; a level never seen
        {"sbp": 250.5, "smoker": None},  # above every edge: the top bin
        {"sbp": 0, "smoker": "unknown"},  # the missing token; a missing word
        {"sbp": "abc", "smoker": ["no"]},  # unreadable: counted missing, never raised
        {},  # absent fields are missing
    ]
    counts = batch_counts(profile, schema, served, [0.0, 0.5, 1.0, 0.2, 0.2, 0.2, 0.2])
    assert counts["n"] == 7
    assert counts["features"]["sbp"] == {
        "bins": [2, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        "missing": 3,
        "unseen": 0,
    }
    assert counts["features"]["smoker"] == {"bins": [1, 1], "missing": 4, "unseen": 1}
    assert sum(counts["risk"]) == 7 and counts["risk"][0] == 1
    assert counts["risk_sum"] == pytest.approx(2.3)


def test_unseen_levels_alert_when_at_least_two_and_beyond_the_rate():
    schema, profile = tiny()
    served = [{"sbp": 120, "smoker": "no"}] * 18 + [{"sbp": 120, "smoker": "vape"}]
    report = window_drift(profile, batch_counts(profile, schema, served, [0.5] * 19))
    assert report["features"]["smoker"]["unseen_rate"] == pytest.approx(1 / 19, abs=1e-6)
    assert ("unseen_rate", "smoker") not in alerted(report)  # one unseen value only
    served += [{"sbp": 120, "smoker": "vape"}]
    report = window_drift(profile, batch_counts(profile, schema, served, [0.5] * 20))
    assert ("unseen_rate", "smoker") in alerted(report)
    assert report["features"]["sbp"]["unseen_rate"] is None
