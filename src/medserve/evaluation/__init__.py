"""Evaluation: metrics with bootstrap confidence intervals and calibration."""

from medserve.evaluation.calibration import calibration_slope_intercept
from medserve.evaluation.metrics import METRIC_NAMES, Metric, evaluate_predictions

__all__ = ["METRIC_NAMES", "Metric", "calibration_slope_intercept", "evaluate_predictions"]
