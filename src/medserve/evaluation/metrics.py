"""Discrimination, classification and calibration metrics with 95% CIs.

Point estimates equal scikit-learn's metric functions (and the logistic fits in
``calibration``). Two kinds of interval:

* Proportions at the threshold (accuracy, sensitivity, specificity, PPV, NPV: a count
  over a count) get the Wilson score interval (scipy's ``binomtest``). It never
  collapses: 10/10 gives about [0.72, 1], where a bootstrap gives [1, 1].
* Everything else (AUROC, AUPRC, Brier, F1, calibration slope and intercept) gets a
  percentile bootstrap interval over ``n_resamples`` resamples of the rows; every metric
  is computed for all resamples at once (see ``bootstrap``), so 1,000 resamples cost
  about as much as a few model fits.

Undefined values are NaN (``None`` in JSON) with a ``reason`` saying why, never 0 and never
an error: PPV when no one is flagged, sensitivity without events, AUROC with one outcome
class. A bootstrap interval of zero width (e.g. AUROC 1 on a small separable sample,
where every resample is separable too) is not estimable rather than certain: the
percentile bootstrap cannot reach values the sample does not show, so its interval is
reported as missing, with the reason, instead of as [1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from medserve.core.risk import risk_logit
from medserve.errors import ConfigError
from medserve.evaluation import bootstrap
from medserve.evaluation._inputs import check_outcome_and_risk
from medserve.evaluation.calibration import (
    CalibrationFit,
    batched_calibration,
    fit_calibration,
)

METRIC_NAMES = (
    "auroc",
    "auprc",
    "brier",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "calibration_slope",
    "calibration_intercept",
)
# Counts over counts at the threshold: Wilson intervals. The rest: bootstrap intervals.
# (F1 = 2TP / (2TP + FP + FN) counts true positives twice: not a binomial proportion.)
PROPORTION_NAMES = ("accuracy", "sensitivity", "specificity", "ppv", "npv")

CIMethod = Literal["wilson", "bootstrap"]

# Resamples are processed in blocks of about this many (resample, row) cells,
# so memory stays bounded (~32 MB per float array) whatever the data size.
_CELLS_PER_BLOCK = 1 << 22


@dataclass(frozen=True)
class Metric:
    """A point estimate with its confidence interval, how the interval was computed, and
    a reason saying why the estimate or the interval is missing (NaN), if one is.

    ``n_resamples`` is how many bootstrap resamples the interval rests on (0 for Wilson
    intervals): resamples where the metric is undefined (e.g. AUROC of a resample
    without events) are skipped.
    """

    estimate: float
    ci95: tuple[float, float]
    n_resamples: int = 0
    ci_method: CIMethod = "bootstrap"
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; undefined values (NaN) become ``None``."""
        return {
            "estimate": _json_number(self.estimate),
            "ci95": [_json_number(bound) for bound in self.ci95],
            "ci_method": self.ci_method,
            "reason": self.reason,
        }


def evaluate_predictions(
    y_true: Any,
    risk: Any,
    threshold: float,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Metric]:
    """All metrics of ``METRIC_NAMES``, in that order, each with its interval.

    ``y_true`` is the observed outcome (0/1 or bool), ``risk`` the predicted
    probability, and a row is flagged positive when ``risk >= threshold``.
    Raises ``DataError`` for unusable data (one outcome class, NaN or out-of-range
    risks, length mismatch) and ``ConfigError`` for invalid options.
    """
    _check_options(threshold, n_resamples, confidence)
    y, risk_values = check_outcome_and_risk(y_true, risk)
    return metrics_where_defined(
        y, risk_values, threshold, n_resamples=n_resamples, seed=seed, confidence=confidence
    )


def metrics_where_defined(
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Metric]:
    """``evaluate_predictions`` for checked rows that may hold one outcome class (a
    subgroup level): what needs both classes (AUROC, AUPRC, calibration; sensitivity
    without events, specificity without non-events) is NaN with the reason."""
    y = np.asarray(y, dtype=bool)
    risk = np.asarray(risk, dtype=float)
    label = risk >= threshold
    z = risk_logit(risk)
    metrics = proportion_metrics(y, label, confidence)

    estimates, calibration = _point_estimates(y, risk, label, z)
    resampled = _resampled_metrics(
        y,
        risk,
        label,
        z,
        indices=bootstrap.resample_indices(len(y), n_resamples, seed),
        calibration_start=calibration,
    )
    reasons = _undefined_reasons(y, estimates)
    for name in METRIC_NAMES:
        if name not in PROPORTION_NAMES:
            metrics[name] = bootstrap_metric(
                estimates[name], resampled[name], confidence, undefined=reasons.get(name)
            )
    return {name: metrics[name] for name in METRIC_NAMES}


def proportion_metrics(y: np.ndarray, label: np.ndarray, confidence: float) -> dict[str, Metric]:
    """Accuracy, sensitivity, specificity, PPV and NPV with Wilson intervals, from the
    outcome ``y`` and the flags ``label`` (both boolean); NaN with a reason where the
    denominator is 0."""
    n = len(y)
    true_pos = int(np.count_nonzero(y & label))
    events = int(np.count_nonzero(y))
    flagged = int(np.count_nonzero(label))
    true_neg = n - events - (flagged - true_pos)
    return {
        "accuracy": wilson_metric(true_pos + true_neg, n, confidence, undefined="no rows"),
        "sensitivity": wilson_metric(
            true_pos, events, confidence, undefined="no events in these rows"
        ),
        "specificity": wilson_metric(
            true_neg, n - events, confidence, undefined="no non-events in these rows"
        ),
        "ppv": wilson_metric(
            true_pos, flagged, confidence, undefined="no one is flagged at this threshold"
        ),
        "npv": wilson_metric(
            true_neg, n - flagged, confidence, undefined="everyone is flagged at this threshold"
        ),
    }


def wilson_metric(successes: int, trials: int, confidence: float, *, undefined: str) -> Metric:
    """``successes / trials`` with its Wilson score interval; NaN, with ``undefined`` as
    the reason, when there are no trials."""
    if trials == 0:
        nan = float("nan")
        return Metric(nan, (nan, nan), ci_method="wilson", reason=undefined)
    interval = binomtest(successes, trials).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return Metric(
        successes / trials, (float(interval.low), float(interval.high)), ci_method="wilson"
    )


def bootstrap_metric(
    estimate: float, resampled: np.ndarray, confidence: float, *, undefined: str | None = None
) -> Metric:
    """The point ``estimate`` with the percentile interval of its ``resampled`` values.

    NaN, with ``undefined`` (or a generic phrase) as its reason, when the estimate is
    undefined. The interval is NaN with a reason when fewer than 2 resamples define the
    metric, or when it has zero width: a percentile bootstrap cannot go beyond the
    values its resamples reach, so [1, 1] there (AUROC of a small separable sample)
    means "no spread seen", not certainty.
    """
    nan = float("nan")
    interval, used = bootstrap.percentile_interval(resampled, confidence)
    if math.isnan(estimate):
        return Metric(nan, (nan, nan), used, reason=undefined or "not defined on these rows")
    low, high = interval
    if used < 2:
        reason = f"the metric is defined in only {used} of {len(resampled)} bootstrap resamples"
        return Metric(estimate, (nan, nan), used, reason=reason)
    # Zero width up to rounding: means of identical values may differ in the last bits.
    if math.isclose(low, high, rel_tol=1e-9, abs_tol=1e-12):
        reason = (
            f"the middle {confidence:.0%} of the {used} bootstrap resamples all give "
            f"{low:.3g}: too few rows to show the uncertainty, which is not zero"
        )
        return Metric(estimate, (nan, nan), used, reason=reason)
    return Metric(estimate, interval, used)


def _point_estimates(
    y: np.ndarray, risk: np.ndarray, label: np.ndarray, z: np.ndarray
) -> tuple[dict[str, float], CalibrationFit | None]:
    nan = float("nan")
    # F1 from the confusion counts (bootstrap.threshold_metrics equals scikit-learn's
    # f1_score, tested); NaN when there are no events and no one is flagged.
    estimates = {
        "brier": float(brier_score_loss(y, risk)),
        "f1": float(bootstrap.threshold_metrics(y[np.newaxis, :], label[np.newaxis, :])["f1"][0]),
    }
    events = int(y.sum())
    if events == 0 or events == len(y):
        estimates.update(auroc=nan, auprc=nan, calibration_slope=nan, calibration_intercept=nan)
        return estimates, None
    estimates["auroc"] = float(roc_auc_score(y, risk))
    estimates["auprc"] = float(average_precision_score(y, risk))
    calibration = fit_calibration(y, z)
    estimates["calibration_slope"] = calibration.slope
    estimates["calibration_intercept"] = calibration.intercept
    return estimates, calibration


def _undefined_reasons(y: np.ndarray, estimates: dict[str, float]) -> dict[str, str]:
    """Why each bootstrap metric whose estimate is NaN is undefined on these rows."""
    events = int(y.sum())
    if events == 0 or events == len(y):
        which = "events" if events else "non-events"
        one_class = f"one outcome class (all {len(y)} rows are {which}); it needs both"
        reasons = dict.fromkeys(
            ("auroc", "auprc", "calibration_slope", "calibration_intercept"), one_class
        )
    else:
        reasons = {
            "calibration_slope": (
                "the predicted risks separate events from non-events completely, so the "
                "calibration fit has no finite slope"
            ),
        }
    reasons["f1"] = "no events and no one flagged"
    return reasons


def _resampled_metrics(
    y: np.ndarray,
    risk: np.ndarray,
    label: np.ndarray,
    z: np.ndarray,
    *,
    indices: np.ndarray,
    calibration_start: CalibrationFit | None,
) -> dict[str, np.ndarray]:
    """Every metric for every resample (row of ``indices``), block by block."""
    squared_error = (risk - y) ** 2
    block_rows = max(1, _CELLS_PER_BLOCK // indices.shape[1])
    blocks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(indices), block_rows):
        block = indices[start : start + block_rows]
        y_b = y[block]
        values = bootstrap.threshold_metrics(y_b, label[block])
        values["brier"] = bootstrap.brier(squared_error[block])
        values.update(bootstrap.ranking_metrics(y_b, risk[block]))
        slope, intercept = batched_calibration(y_b, z[block], start=calibration_start)
        values["calibration_slope"] = slope
        values["calibration_intercept"] = intercept
        blocks.append(values)
    return {name: np.concatenate([b[name] for b in blocks]) for name in METRIC_NAMES}


def _check_options(threshold: float, n_resamples: int, confidence: float) -> None:
    if not (isinstance(threshold, int | float | np.number) and 0 <= threshold <= 1):
        raise ConfigError(f"the threshold must be a probability in [0, 1], got {threshold!r}")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        raise ConfigError(f"n_resamples must be a whole number, got {n_resamples!r}")
    if n_resamples < 1:
        raise ConfigError(f"n_resamples must be at least 1, got {n_resamples}")
    if not (isinstance(confidence, int | float | np.number) and 0 < confidence < 1):
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
