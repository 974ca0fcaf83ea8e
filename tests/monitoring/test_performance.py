"""Live performance equals scikit-learn's metrics on a real model's live predictions;
small windows say nothing; windows of prediction time hold the right predictions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from medserve.errors import ConfigError, DataError
from medserve.monitoring.performance import live_performance, rolling_performance

FEATURES = ["age", "trestbps", "chol", "thalch", "oldpeak"]
THRESHOLD = 0.4


@pytest.fixture(scope="module")
def hungary(heart_csv: Path) -> tuple[np.ndarray, np.ndarray]:
    """A model trained at Cleveland, live at Hungary: the outcomes and its risks."""
    heart = pd.read_csv(heart_csv).dropna(subset=FEATURES)
    cleveland = heart[heart["dataset"] == "Cleveland"]
    live = heart[heart["dataset"] == "Hungary"]
    model = LogisticRegression(max_iter=1000).fit(cleveland[FEATURES], cleveland["num"] > 0)
    return (live["num"] > 0).to_numpy(), model.predict_proba(live[FEATURES])[:, 1]


def test_live_metrics_equal_sklearn_on_a_real_model(hungary):
    y, risk = hungary
    live = live_performance(y, risk, THRESHOLD, n_resamples=200)

    assert live["n"] == len(y) and live["events"] == int(y.sum())
    assert live["suppressed"] is False
    assert live["auroc"]["estimate"] == pytest.approx(roc_auc_score(y, risk), abs=1e-12)
    flagged = risk >= THRESHOLD
    assert live["sensitivity"]["estimate"] == pytest.approx(recall_score(y, flagged), abs=1e-12)
    assert live["ppv"]["estimate"] == pytest.approx(precision_score(y, flagged), abs=1e-12)

    # Slope: logistic regression of the outcome on the log-odds, unpenalised.
    fit = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(logit(risk)[:, None], y)
    assert live["calibration_slope"]["estimate"] == pytest.approx(fit.coef_[0, 0], abs=1e-5)
    # Intercept with the slope fixed at 1: its score equation, expected events = observed.
    intercept = live["calibration_intercept"]["estimate"]
    assert expit(intercept + logit(risk)).sum() == pytest.approx(y.sum(), abs=1e-6)

    assert live["oe_ratio"]["estimate"] == pytest.approx(y.sum() / risk.sum())
    for name in ("auroc", "calibration_slope", "calibration_intercept", "sensitivity", "ppv"):
        low, high = live[name]["ci95"]
        assert low < live[name]["estimate"] < high, name
        assert live[name]["reason"] is None


def test_net_benefit_equals_the_hand_count(hungary):
    y, risk = hungary
    live = live_performance(y, risk, THRESHOLD, n_resamples=200)

    flagged = risk >= THRESHOLD
    true_pos, false_pos = np.sum(flagged & y), np.sum(flagged & ~y)
    odds = THRESHOLD / (1 - THRESHOLD)
    benefit = live["net_benefit"]
    assert benefit["estimate"] == pytest.approx((true_pos - false_pos * odds) / len(y))
    assert benefit["treat_all"] == pytest.approx(y.mean() - (1 - y.mean()) * odds)
    low, high = benefit["ci95"]
    assert low < benefit["estimate"] < high
    assert live_performance(y, risk, THRESHOLD, n_resamples=200)["net_benefit"] == benefit


def test_fewer_rows_than_min_n_show_no_numbers_at_all(hungary):
    y, risk = hungary
    live = live_performance(y[:9], risk[:9], THRESHOLD, min_n=10)

    assert set(live) == {"n", "suppressed", "reason"}
    assert live["n"] == 9 and live["suppressed"] is True
    assert "at least 10" in live["reason"]
    assert live_performance(y[:10], risk[:10], THRESHOLD, min_n=10)["suppressed"] is False


def test_one_outcome_class_leaves_auroc_undefined_with_a_reason(hungary):
    y, risk = hungary
    no_events = ~y
    live = live_performance(y[no_events], risk[no_events], THRESHOLD, n_resamples=100)

    assert live["events"] == 0 and live["suppressed"] is False
    for name in ("auroc", "calibration_slope", "calibration_intercept"):
        assert live[name]["estimate"] is None
        assert "one outcome class" in live[name]["reason"]
    assert live["sensitivity"]["estimate"] is None and "no events" in live["sensitivity"]["reason"]
    assert live["oe_ratio"]["estimate"] is None and "no events" in live["oe_ratio"]["reason"]
    assert live["ppv"]["estimate"] == 0  # everyone flagged here is a false positive
    assert live["net_benefit"]["estimate"] < 0


@pytest.mark.parametrize(
    ("y", "risk", "error", "message"),
    [
        ([0, 1, 1], [0.2, 0.5], DataError, "3 outcomes but 2 predicted risks"),
        ([0, 1], [0.2, 1.5], DataError, "outside [0, 1]"),
        ([0, 1], [0.2, np.nan], DataError, "missing"),
        ([0, 2], [0.2, 0.5], DataError, "row 1"),
    ],
)
def test_unusable_rows_are_refused(y, risk, error, message):
    with pytest.raises(error, match=message.replace("[", r"\[").replace("]", r"\]")):
        live_performance(np.array(y), np.array(risk), THRESHOLD)


@pytest.mark.parametrize("threshold", [1.0, -0.1, "0.5"])
def test_a_threshold_outside_0_1_is_refused(hungary, threshold):
    y, risk = hungary
    with pytest.raises(ConfigError, match="threshold"):
        live_performance(y, risk, threshold)


# --- windows of prediction time ---------------------------------------------------------

NOW = datetime(2026, 11, 30, tzinfo=UTC)
WEEK = timedelta(days=7)


def test_predictions_land_in_the_window_they_were_made_in(hungary):
    y, risk = hungary
    # Rows 0-99 made three weeks before now (oldest window), 100-179 two weeks before,
    # 180-239 in the last week, 240-249 before the windows, 250-259 at or after now.
    made_at = (
        [NOW - 3 * WEEK + timedelta(hours=i) for i in range(100)]
        + [NOW - 2 * WEEK] * 80  # exactly at a boundary: the later window
        + [NOW - timedelta(minutes=1 + i) for i in range(60)]
        + [NOW - 3 * WEEK - timedelta(seconds=1)] * 10
        + [NOW] * 10
    )
    rows = slice(0, len(made_at))
    windows = rolling_performance(
        made_at, y[rows], risk[rows], THRESHOLD, window=WEEK, now=NOW, n_windows=3,
        n_resamples=50,
    )  # fmt: skip

    assert [w["start"] for w in windows] == [(NOW - k * WEEK).isoformat() for k in (3, 2, 1)]
    assert [w["end"] for w in windows] == [(NOW - k * WEEK).isoformat() for k in (2, 1, 0)]
    assert [w["n"] for w in windows] == [100, 80, 60]
    for window, span in zip(
        windows, [slice(0, 100), slice(100, 180), slice(180, 240)], strict=True
    ):
        expected = live_performance(y[span], risk[span], THRESHOLD, n_resamples=50)
        assert {k: v for k, v in window.items() if k not in ("start", "end")} == expected


def test_an_empty_or_small_window_is_suppressed(hungary):
    y, risk = hungary
    made_at = [NOW - timedelta(days=1)] * 30 + [NOW - timedelta(days=8)] * 3
    windows = rolling_performance(
        made_at, y[:33], risk[:33], THRESHOLD, window=WEEK, now=NOW, n_windows=3, n_resamples=50
    )
    assert [(w["n"], w["suppressed"]) for w in windows] == [(0, True), (3, True), (30, False)]
    assert "events" not in windows[1]


def test_mixing_naive_and_aware_times_is_refused(hungary):
    y, risk = hungary
    with pytest.raises(ConfigError, match="time zone"):
        rolling_performance(
            [datetime(2026, 11, 29)] * 2, y[:2], risk[:2], THRESHOLD, window=WEEK, now=NOW
        )


def test_a_window_must_have_a_positive_length(hungary):
    y, risk = hungary
    with pytest.raises(ConfigError, match="window"):
        rolling_performance([NOW] * 2, y[:2], risk[:2], THRESHOLD, window=timedelta(0), now=NOW)
