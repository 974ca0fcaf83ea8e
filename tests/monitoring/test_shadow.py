"""The shadow comparison: the paired AUROC difference equals scikit-learn's, and the
verdict favours the better model only when the evidence and its calibration allow."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from medserve.monitoring.shadow import CALIBRATION_MARGIN, calibration_no_worse, compare_with_shadow

FEATURES = ["age", "trestbps", "chol", "thalch", "oldpeak"]
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def hungary(heart_csv: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outcomes at Hungary, with the risks of two Cleveland models: one on cholesterol
    alone (production) and one on five measurements (the candidate)."""
    heart = pd.read_csv(heart_csv).dropna(subset=FEATURES)
    cleveland = heart[heart["dataset"] == "Cleveland"]
    live = heart[heart["dataset"] == "Hungary"]
    outcome = cleveland["num"] > 0
    one = LogisticRegression().fit(cleveland[["chol"]], outcome)
    full = LogisticRegression(max_iter=1000).fit(cleveland[FEATURES], outcome)
    return (
        (live["num"] > 0).to_numpy(),
        one.predict_proba(live[["chol"]])[:, 1],
        full.predict_proba(live[FEATURES])[:, 1],
    )


def compare(y, production, shadow, **options):
    return compare_with_shadow(
        y,
        production,
        shadow,
        threshold_production=THRESHOLD,
        threshold_shadow=THRESHOLD,
        n_resamples=300,
        **options,
    )


def test_a_clearly_better_candidate_is_favoured(hungary):
    y, one_feature, full = hungary
    result = compare(y, one_feature, full)

    difference = result["auroc_difference"]
    assert difference["estimate"] == pytest.approx(
        roc_auc_score(y, full) - roc_auc_score(y, one_feature), abs=1e-12
    )
    assert difference["ci95"][0] > 0
    assert result["verdict"] == "favours_shadow" and result["needs_recalibration"] is False
    assert result["sentence"].startswith(f"On {len(y)} patients with outcomes")
    assert "favours promoting it" in result["sentence"]
    assert result["shadow"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(y, full))
    assert result["production"]["auroc"]["estimate"] == pytest.approx(roc_auc_score(y, one_feature))
    assert result["n"] == len(y) and result["events"] == int(y.sum())


def test_a_worse_candidate_favours_production(hungary):
    y, one_feature, full = hungary
    result = compare(y, full, one_feature)

    assert result["auroc_difference"]["ci95"][1] < 0
    assert result["verdict"] == "favours_production"
    assert "keeping the production model" in result["sentence"]


def test_identical_models_are_inconclusive_with_an_interval_around_0(hungary):
    y, _, full = hungary
    result = compare(y, full, full.copy())

    low, high = result["auroc_difference"]["ci95"]
    assert low <= 0 <= high
    assert result["auroc_difference"]["estimate"] == 0
    assert result["verdict"] == "inconclusive"
    assert "does not yet favour promotion" in result["sentence"]
    assert result["production"] == result["shadow"]


def test_a_better_but_miscalibrated_candidate_needs_recalibration_first(hungary):
    y, one_feature, full = hungary
    too_high = expit(logit(full) + 1.5)  # same ranking, risks far too high
    result = compare(y, one_feature, too_high)

    assert result["auroc_difference"]["ci95"][0] > 0
    assert result["shadow"]["oe_ratio"]["ci95"][1] < 1
    assert result["verdict"] == "inconclusive" and result["needs_recalibration"] is True
    assert "too high" in result["sentence"]
    assert "`medserve recalibrate`" in result["sentence"]


def test_too_few_outcomes_give_no_numbers_and_ask_for_more(hungary):
    y, one_feature, full = hungary
    result = compare(y[:8], one_feature[:8], full[:8])

    assert set(result) == {"n", "suppressed", "reason", "verdict", "sentence"}
    assert result["suppressed"] is True and result["verdict"] == "inconclusive"
    assert "only 8 prediction(s) with outcomes" in result["sentence"]
    assert "more outcomes are needed" in result["sentence"]


def test_one_outcome_class_is_suppressed_not_an_error(hungary):
    y, one_feature, full = hungary
    events = y
    result = compare(y[events], one_feature[events], full[events])

    assert result["suppressed"] is True and result["verdict"] == "inconclusive"
    assert "same outcome" in result["reason"]


@pytest.mark.parametrize(
    ("shadow", "production", "no_worse"),
    [
        ((0.8, 0.6, 1.05), (1.0, 0.9, 1.1), True),  # interval includes 1
        ((0.8, 0.75, 0.85), (0.85, 0.8, 0.9), True),  # a little further than production
        ((0.6, 0.55, 0.65), (1.0, 0.95, 1.05), False),  # clearly further
        ((None, None, None), (1.0, 0.95, 1.05), False),
    ],
)
def test_calibration_is_no_worse_within_the_margin(shadow, production, no_worse):
    def oe(estimate, low, high):
        return {"estimate": estimate, "ci95": [low, high], "reason": None}

    assert calibration_no_worse(oe(*shadow), oe(*production)) is no_worse
    assert abs(math.log(0.8)) - abs(math.log(0.85)) < CALIBRATION_MARGIN
