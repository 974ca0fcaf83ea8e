"""Discrimination, classification and calibration metrics with bootstrap 95% CIs.

Point estimates come from scikit-learn's metric functions (and the logistic fits in
``calibration``). The confidence intervals are percentile bootstrap intervals over
``n_resamples`` resamples of the rows; every metric is computed for all resamples at
once (see ``bootstrap``), so 1,000 resamples cost about as much as a few model fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

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

# Resamples are processed in blocks of about this many (resample, row) cells,
# so memory stays bounded (~32 MB per float array) whatever the data size.
_CELLS_PER_BLOCK = 1 << 22


@dataclass(frozen=True)
class Metric:
    """A point estimate with its bootstrap confidence interval.

    ``n_resamples`` is how many resamples the interval rests on: resamples where the
    metric is undefined (e.g. AUROC of a resample without events) are skipped.
    """

    estimate: float
    ci95: tuple[float, float]
    n_resamples: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; undefined values (NaN) become ``None``."""
        return {
            "estimate": _json_number(self.estimate),
            "ci95": [_json_number(bound) for bound in self.ci95],
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
    """All metrics of ``METRIC_NAMES``, in that order, each with a bootstrap interval.

    ``y_true`` is the observed outcome (0/1 or bool), ``risk`` the predicted
    probability, and a row is flagged positive when ``risk >= threshold``.
    Raises ``DataError`` for unusable data (one outcome class, NaN or out-of-range
    risks, length mismatch) and ``ConfigError`` for invalid options.
    """
    _check_options(threshold, n_resamples, confidence)
    y, risk_values = check_outcome_and_risk(y_true, risk)
    label = risk_values >= threshold
    z = risk_logit(risk_values)

    estimates, calibration = _point_estimates(y, risk_values, label, z)
    resampled = _resampled_metrics(
        y,
        risk_values,
        label,
        z,
        indices=bootstrap.resample_indices(len(y), n_resamples, seed),
        calibration_start=calibration,
    )
    metrics = {}
    for name in METRIC_NAMES:
        interval, used = bootstrap.percentile_interval(resampled[name], confidence)
        metrics[name] = Metric(estimates[name], interval, used)
    return metrics


def _point_estimates(
    y: np.ndarray, risk: np.ndarray, label: np.ndarray, z: np.ndarray
) -> tuple[dict[str, float], CalibrationFit]:
    # zero_division=NaN: e.g. PPV with no one flagged is undefined, not 0.
    undefined = np.nan
    values = {
        "auroc": roc_auc_score(y, risk),
        "auprc": average_precision_score(y, risk),
        "brier": brier_score_loss(y, risk),
        "accuracy": accuracy_score(y, label),
        "sensitivity": recall_score(y, label, zero_division=undefined),
        "specificity": recall_score(y, label, pos_label=False, zero_division=undefined),
        "ppv": precision_score(y, label, zero_division=undefined),
        "npv": precision_score(y, label, pos_label=False, zero_division=undefined),
        "f1": f1_score(y, label, zero_division=undefined),
    }
    estimates = {name: float(value) for name, value in values.items()}
    calibration = fit_calibration(y, z)
    estimates["calibration_slope"] = calibration.slope
    estimates["calibration_intercept"] = calibration.intercept
    return estimates, calibration


def _resampled_metrics(
    y: np.ndarray,
    risk: np.ndarray,
    label: np.ndarray,
    z: np.ndarray,
    *,
    indices: np.ndarray,
    calibration_start: CalibrationFit,
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
