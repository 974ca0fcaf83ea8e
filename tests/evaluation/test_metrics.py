"""Metrics with their CIs: point values match scikit-learn, proportions get Wilson
intervals equal to scipy's, and every vectorised per-resample computation behind the
bootstrap intervals matches scikit-learn too."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medserve.core.risk import risk_logit
from medserve.errors import ConfigError, DataError
from medserve.evaluation import (
    METRIC_NAMES,
    Metric,
    bootstrap,
    calibration_slope_intercept,
    evaluate_predictions,
)
from medserve.evaluation.calibration import CalibrationFit, batched_calibration
from medserve.evaluation.metrics import (
    PROPORTION_NAMES,
    bootstrap_metric,
    metrics_where_defined,
    proportion_metrics,
    wilson_metric,
)

PIMA_CSV = Path(__file__).parents[2] / "src" / "medserve" / "datasets" / "pima_diabetes.csv"


def synthetic(n: int, seed: int = 0, *, decimals: int | None = None):
    """Outcomes drawn from the risks themselves: discriminating and well calibrated."""
    rng = np.random.default_rng(seed)
    risk = expit(rng.normal(-0.8, 1.3, n))
    if decimals is not None:  # coarse risks give many ties
        risk = np.round(risk, decimals)
    y = rng.random(n) < risk
    return y, risk


def sklearn_threshold_metrics(y, label) -> dict[str, float]:
    nan = np.nan
    return {
        "accuracy": accuracy_score(y, label),
        "sensitivity": recall_score(y, label, zero_division=nan),
        "specificity": recall_score(y, label, pos_label=False, zero_division=nan),
        "ppv": precision_score(y, label, zero_division=nan),
        "npv": precision_score(y, label, pos_label=False, zero_division=nan),
        "f1": f1_score(y, label, zero_division=nan),
    }


def assert_close_or_both_nan(actual: float, expected: float, tol: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected, abs=tol, rel=0)


@pytest.fixture(autouse=True)
def no_warnings():
    """Undefined metrics are NaN, quietly: no metric may warn."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# --- point estimates and the result's shape -------------------------------------------


@pytest.mark.parametrize("outcome_type", [bool, int, float])
@pytest.mark.parametrize("threshold", [0.2, 0.5])
def test_point_estimates_equal_sklearn(outcome_type, threshold):
    y, risk = synthetic(300, seed=1)
    metrics = evaluate_predictions(y.astype(outcome_type), risk, threshold, n_resamples=50)
    label = risk >= threshold
    expected = {
        "auroc": roc_auc_score(y, risk),
        "auprc": average_precision_score(y, risk),
        "brier": brier_score_loss(y, risk),
        **sklearn_threshold_metrics(y, label),
    }
    for name, value in expected.items():
        assert metrics[name].estimate == pytest.approx(value, abs=1e-15), name
    slope, intercept = calibration_slope_intercept(y, risk)
    assert metrics["calibration_slope"].estimate == slope
    assert metrics["calibration_intercept"].estimate == intercept


def test_result_has_every_metric_in_order():
    y, risk = synthetic(200)
    metrics = evaluate_predictions(y, risk, 0.5)
    assert tuple(metrics) == METRIC_NAMES
    assert all(isinstance(metric, Metric) for metric in metrics.values())
    for name, metric in metrics.items():
        if name in PROPORTION_NAMES:
            assert (metric.ci_method, metric.n_resamples) == ("wilson", 0), name
        else:
            assert (metric.ci_method, metric.n_resamples) == ("bootstrap", 1000), name


def test_cis_contain_the_estimate_and_narrow_as_n_grows():
    small = evaluate_predictions(*synthetic(200, seed=2), 0.4)
    large = evaluate_predictions(*synthetic(5000, seed=2), 0.4)
    for name in METRIC_NAMES:
        for metrics in (small, large):
            low, high = metrics[name].ci95
            assert low <= metrics[name].estimate <= high, name
        width_small = small[name].ci95[1] - small[name].ci95[0]
        width_large = large[name].ci95[1] - large[name].ci95[0]
        assert width_large < width_small / 2, name  # ~ 1/sqrt(n): 5x narrower here


def test_wider_confidence_gives_wider_intervals():
    y, risk = synthetic(300)
    ci90 = evaluate_predictions(y, risk, 0.5, confidence=0.90)["auroc"].ci95
    ci99 = evaluate_predictions(y, risk, 0.5, confidence=0.99)["auroc"].ci95
    assert ci99[0] < ci90[0] and ci90[1] < ci99[1]


def test_same_seed_gives_same_intervals_and_another_seed_differs():
    y, risk = synthetic(300)
    first = evaluate_predictions(y, risk, 0.5, seed=7)
    again = evaluate_predictions(y, risk, 0.5, seed=7)
    other = evaluate_predictions(y, risk, 0.5, seed=8)
    assert first == again
    assert first["auroc"].ci95 != other["auroc"].ci95


def test_undefined_metric_is_nan_and_null_in_json():
    y, risk = synthetic(200)
    metrics = evaluate_predictions(y, risk * 0.5, threshold=0.9, n_resamples=100)  # no one flagged
    assert math.isnan(metrics["ppv"].estimate)
    assert metrics["ppv"].to_dict() == {
        "estimate": None,
        "ci95": [None, None],
        "ci_method": "wilson",
        "reason": "no one is flagged at this threshold",
    }
    assert metrics["sensitivity"].estimate == 0.0
    assert metrics["sensitivity"].ci95[0] == 0.0 and metrics["sensitivity"].ci95[1] > 0
    json.dumps({name: metric.to_dict() for name, metric in metrics.items()}, allow_nan=False)


def test_metric_to_dict():
    metric = Metric(0.8, (0.7, 0.9), 1000)
    assert metric.to_dict() == {
        "estimate": 0.8,
        "ci95": [0.7, 0.9],
        "ci_method": "bootstrap",
        "reason": None,
    }


def test_resamples_with_one_class_are_skipped_and_counted():
    # 3 events in 12 rows: about 1 resample in 30 draws no event at all.
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0])
    risk = np.linspace(0.05, 0.6, 12)
    metrics = evaluate_predictions(y, risk, 0.3, n_resamples=2000)
    one_class = bootstrap.resample_indices(12, 2000, 0)
    events = y[one_class].sum(axis=1)
    usable = int(((events > 0) & (events < 12)).sum())
    assert usable < 2000
    assert metrics["auroc"].n_resamples == usable
    assert metrics["auprc"].n_resamples == usable
    assert metrics["calibration_intercept"].n_resamples == usable
    assert metrics["calibration_slope"].n_resamples <= usable  # separated ones skipped too
    assert metrics["f1"].n_resamples == 2000
    assert metrics["brier"].n_resamples == 2000


# --- Wilson intervals for proportions; no interval collapses -------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        (10, 10, 0.7224672001, 1.0),
        (0, 10, 0.0, 0.2775327999),
        (5, 10, 0.2365930905, 0.7634069095),
    ],
)
def test_wilson_interval_equals_scipy_and_the_known_values(successes, trials, low, high):
    metric = wilson_metric(successes, trials, 0.95, undefined="no trials")
    scipy_ci = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    assert metric.ci95 == pytest.approx((scipy_ci.low, scipy_ci.high), abs=1e-15)
    assert metric.ci95 == pytest.approx((low, high), abs=1e-9)
    assert metric.estimate == successes / trials
    assert (metric.ci_method, metric.reason) == ("wilson", None)


def test_proportions_at_the_threshold_get_wilson_intervals_of_their_counts():
    y, risk = synthetic(300, seed=11)
    metrics = evaluate_predictions(y, risk, 0.4, n_resamples=50)
    label = risk >= 0.4
    tp, fp = int((y & label).sum()), int((~y & label).sum())
    fn, tn = int((y & ~label).sum()), int((~y & ~label).sum())
    counts = {
        "accuracy": (tp + tn, len(y)),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "ppv": (tp, tp + fp),
        "npv": (tn, tn + fn),
    }
    assert set(counts) == set(PROPORTION_NAMES)
    for name, (successes, trials) in counts.items():
        expected = binomtest(successes, trials).proportion_ci(method="wilson")
        assert metrics[name].ci95 == pytest.approx((expected.low, expected.high)), name
        assert metrics[name].to_dict()["ci_method"] == "wilson"
    assert metrics["auroc"].to_dict()["ci_method"] == "bootstrap"


def test_no_interval_collapses_on_a_small_perfectly_separated_sample():
    # 10 events at risk 0.9, 10 non-events at 0.1: every proportion is 10/10 or 20/20,
    # and every resample is separable too (AUROC 1, the same Brier score in each).
    y = np.repeat([True, False], 10)
    risk = np.where(y, 0.9, 0.1)
    metrics = evaluate_predictions(y, risk, 0.5)
    for name in ("sensitivity", "specificity", "ppv", "npv"):
        assert metrics[name].estimate == 1.0
        assert metrics[name].ci95 == pytest.approx((0.7224672001, 1.0)), name
    assert metrics["accuracy"].ci95[0] == pytest.approx(0.8388748, abs=1e-6)  # 20/20
    for name in ("auroc", "brier"):
        assert metrics[name].estimate == pytest.approx(1.0 if name == "auroc" else 0.01)
        assert all(math.isnan(bound) for bound in metrics[name].ci95), name
        assert re.fullmatch(
            r"the middle 95% of the \d+ bootstrap resamples all give \S+: too few rows to show "
            r"the uncertainty, which is not zero",
            metrics[name].reason,
        ), name
        assert metrics[name].to_dict()["ci95"] == [None, None]
    for name, metric in metrics.items():
        low, high = metric.ci95
        assert (math.isnan(low) and math.isnan(high)) or low < high, name


def test_bootstrap_interval_of_zero_width_is_not_estimable():
    # 99 resamples at 1 and one below: the middle 95% still has zero width.
    resampled = np.array([1.0] * 99 + [0.9])
    metric = bootstrap_metric(1.0, resampled, 0.95)
    assert metric.estimate == 1.0 and math.isnan(metric.ci95[0]) and math.isnan(metric.ci95[1])
    assert metric.n_resamples == 100 and metric.ci_method == "bootstrap"
    assert "all give 1" in metric.reason
    spread = bootstrap_metric(0.8, np.linspace(0.7, 0.9, 101), 0.95)
    assert spread.ci95 == pytest.approx((0.705, 0.895)) and spread.reason is None


def test_bootstrap_interval_on_fewer_than_two_defined_resamples_is_not_estimable():
    metric = bootstrap_metric(0.7, np.array([np.nan, np.nan, 0.75]), 0.95)
    assert metric.estimate == 0.7 and math.isnan(metric.ci95[0])
    assert metric.reason == ("the metric is defined in only 1 of 3 bootstrap resamples")


@pytest.mark.parametrize(
    ("threshold", "undefined", "reason"),
    [
        (0.99, "ppv", "no one is flagged at this threshold"),
        (0.0, "npv", "everyone is flagged at this threshold"),
    ],
)
def test_zero_denominator_is_undefined_with_a_reason_not_zero(threshold, undefined, reason):
    y, risk = synthetic(200, seed=12)
    metrics = evaluate_predictions(y, risk * 0.9, threshold, n_resamples=50)
    metric = metrics[undefined]
    assert math.isnan(metric.estimate) and metric.reason == reason
    assert metric.to_dict()["estimate"] is None and metric.to_dict()["ci95"] == [None, None]
    json.dumps({name: m.to_dict() for name, m in metrics.items()}, allow_nan=False)


@pytest.mark.parametrize("events", [0, 12])
def test_one_outcome_class_reports_what_is_defined_and_says_why_the_rest_is_not(events):
    y = np.arange(12) < events  # all non-events, or all events
    risk = np.tile([0.1, 0.2, 0.3, 0.4], 3)
    metrics = metrics_where_defined(y, risk, 0.25, n_resamples=200)
    which = "events" if events else "non-events"
    for name in ("auroc", "auprc", "calibration_slope", "calibration_intercept"):
        assert math.isnan(metrics[name].estimate), name
        assert metrics[name].reason == (
            f"one outcome class (all 12 rows are {which}); it needs both"
        )
    defined, missing = ("sensitivity", "specificity") if events else ("specificity", "sensitivity")
    assert metrics[defined].estimate == pytest.approx(0.5)  # 6 of 12 risks reach 0.25
    assert metrics[defined].ci95 == pytest.approx(
        tuple(binomtest(6, 12).proportion_ci(method="wilson"))
    )
    assert math.isnan(metrics[missing].estimate)
    assert metrics[missing].reason == f"no {'non-' if events else ''}events in these rows"
    assert metrics["ppv"].estimate == (1.0 if events else 0.0)  # 6 flagged
    assert metrics["npv"].estimate == (0.0 if events else 1.0)  # 6 not flagged
    assert metrics["brier"].estimate == pytest.approx(brier_score_loss(y, risk))
    assert metrics["brier"].ci95[0] < metrics["brier"].ci95[1]


def test_proportion_metrics_count_from_the_flags():
    y = np.array([True, True, False, False, False])
    label = np.array([True, False, True, False, False])
    metrics = proportion_metrics(y, label, 0.95)
    assert {name: m.estimate for name, m in metrics.items()} == pytest.approx(
        {"accuracy": 3 / 5, "sensitivity": 1 / 2, "specificity": 2 / 3, "ppv": 1 / 2, "npv": 2 / 3}
    )


# --- vectorised per-resample metrics equal scikit-learn on the same resample ------------


@pytest.mark.parametrize(("n", "decimals"), [(200, None), (200, 1), (15, 1)])
def test_vectorised_threshold_metrics_and_brier_equal_sklearn(n, decimals):
    y, risk = synthetic(n, seed=3, decimals=decimals)
    indices = bootstrap.resample_indices(n, 50, seed=4)
    label = risk >= 0.3
    resampled = bootstrap.threshold_metrics(y[indices], label[indices])
    brier = bootstrap.brier(((risk - y) ** 2)[indices])
    for row, rows in enumerate(indices):
        expected = sklearn_threshold_metrics(y[rows], label[rows])
        for name, value in expected.items():
            assert_close_or_both_nan(resampled[name][row], value, 1e-12)
        assert brier[row] == pytest.approx(brier_score_loss(y[rows], risk[rows]), abs=1e-12)


@pytest.mark.parametrize(("n", "decimals"), [(200, None), (300, 1), (300, 2), (12, 1)])
def test_vectorised_auroc_and_auprc_equal_sklearn_including_ties(n, decimals):
    y, risk = synthetic(n, seed=5, decimals=decimals)
    indices = bootstrap.resample_indices(n, 50, seed=6)
    resampled = bootstrap.ranking_metrics(y[indices], risk[indices])
    compared = 0
    for row, rows in enumerate(indices):
        if y[rows].all() or not y[rows].any():
            assert math.isnan(resampled["auroc"][row]) and math.isnan(resampled["auprc"][row])
            continue
        compared += 1
        auroc = roc_auc_score(y[rows], risk[rows])
        auprc = average_precision_score(y[rows], risk[rows])
        assert resampled["auroc"][row] == pytest.approx(auroc, abs=1e-12)
        assert resampled["auprc"][row] == pytest.approx(auprc, abs=1e-12)
    assert compared >= 40


def test_auprc_tie_handling_matches_sklearn_on_a_worked_example():
    # Tied risks count as one threshold: the events tied with a non-event share its precision.
    y = np.array([[1, 0, 1, 1, 0, 0]], dtype=bool)
    risk = np.array([[0.9, 0.5, 0.5, 0.5, 0.2, 0.2]])
    vectorised = bootstrap.ranking_metrics(y, risk)
    assert vectorised["auprc"][0] == pytest.approx(average_precision_score(y[0], risk[0]))
    assert vectorised["auprc"][0] == pytest.approx((1 / 3) * 1 + (2 / 3) * (3 / 4))
    assert vectorised["auroc"][0] == pytest.approx(roc_auc_score(y[0], risk[0]))


@pytest.mark.parametrize(
    "start",
    [
        None,
        # Far from the optimum: plain Newton diverges, the step-halving retry recovers.
        CalibrationFit(slope=8.0, slope_model_intercept=5.0, intercept=6.0),
    ],
)
def test_batched_calibration_fits_equal_the_point_fits(start):
    y, risk = synthetic(400, seed=8)
    indices = bootstrap.resample_indices(400, 6, seed=9)
    slope, intercept = batched_calibration(y[indices], risk_logit(risk)[indices], start)
    for row, rows in enumerate(indices):
        expected_slope, expected_intercept = calibration_slope_intercept(y[rows], risk[rows])
        assert slope[row] == pytest.approx(expected_slope, abs=1e-6)
        assert intercept[row] == pytest.approx(expected_intercept, abs=1e-6)


def test_batched_calibration_skips_one_class_and_separated_resamples():
    z = np.array([[-1.0, 0.0, 1.0, 2.0], [-1.0, 0.0, 1.0, 2.0], [-1.0, 0.0, 1.0, 2.0]])
    y = np.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 1]], dtype=bool)
    slope, intercept = batched_calibration(y, z)
    assert math.isnan(slope[0]) and math.isnan(intercept[0])  # one class
    assert math.isnan(slope[1]) and not math.isnan(intercept[1])  # separated
    assert not math.isnan(slope[2]) and not math.isnan(intercept[2])


# --- calibration slope and intercept -------------------------------------------------


def test_calibrated_risks_give_slope_one_and_intercept_zero():
    y, risk = synthetic(20000, seed=10)
    slope, intercept = calibration_slope_intercept(y, risk)
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)


def test_overconfident_risks_give_slope_below_one():
    y, risk = synthetic(20000, seed=10)
    overconfident = expit(2 * logit(risk))
    slope, _ = calibration_slope_intercept(y, overconfident)
    assert slope == pytest.approx(0.5, abs=0.05)


def test_risks_too_low_give_positive_intercept():
    y, risk = synthetic(20000, seed=10)
    _, intercept = calibration_slope_intercept(y, expit(logit(risk) - 0.5))
    assert intercept == pytest.approx(0.5, abs=0.05)


def test_slope_is_nan_when_risks_separate_the_classes():
    y = np.array([0, 0, 0, 1, 1, 1])
    risk = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    slope, intercept = calibration_slope_intercept(y, risk)
    assert math.isnan(slope)
    assert math.isfinite(intercept)


# --- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize("outcome", [np.zeros(10), np.ones(10, dtype=bool)])
def test_single_outcome_class_is_refused(outcome):
    with pytest.raises(DataError, match="only one outcome class.*need both events and non-events"):
        evaluate_predictions(outcome, np.linspace(0, 1, 10), 0.5)


@pytest.mark.parametrize(
    ("y", "risk", "message"),
    [
        ([0, 1, 0], [0.1, 0.9], "3 rows but there are 2 predicted risks"),
        ([0, 1, 0], [0.1, np.nan, 0.3], "missing \\(NaN\\), first at row 1"),
        ([0, 1, 0], [0.1, 1.2, 0.3], "outside \\[0, 1\\], first at row 1"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "row 2 holds"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], "row 2 holds"),
        (["no", "yes"], [0.1, 0.2], "must be 0/1"),
        ([0, 1], ["low", "high"], "not all numbers"),
        ([], [], "empty"),
    ],
)
def test_bad_data_is_refused_with_a_clear_message(y, risk, message):
    with pytest.raises(DataError, match=message):
        evaluate_predictions(y, risk, 0.5)
    with pytest.raises(DataError, match=message):
        calibration_slope_intercept(y, risk)


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 1.5},
        {"threshold": float("nan")},
        {"threshold": 0.5, "n_resamples": 0},
        {"threshold": 0.5, "confidence": 1.0},
    ],
)
def test_bad_options_are_refused(options):
    y, risk = synthetic(50)
    with pytest.raises(ConfigError):
        evaluate_predictions(y, risk, **options)


# --- real data -----------------------------------------------------------------------


def test_logistic_model_on_pima_diabetes_discriminates_as_expected():
    data = pd.read_csv(PIMA_CSV)
    features, outcome = data.drop(columns="Outcome"), data["Outcome"]
    x_train, x_test, y_train, y_test = train_test_split(
        features, outcome, test_size=0.3, stratify=outcome, random_state=0
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    risk = model.fit(x_train, y_train).predict_proba(x_test)[:, 1]

    metrics = evaluate_predictions(y_test.to_numpy(), risk, 0.5)

    assert 0.75 <= metrics["auroc"].estimate <= 0.9
    assert metrics["auroc"].ci95[0] > 0.7
    assert metrics["specificity"].estimate > metrics["sensitivity"].estimate  # 35% events
    assert 0.6 < metrics["calibration_slope"].estimate < 1.5
    assert abs(metrics["calibration_intercept"].estimate) < 0.5
