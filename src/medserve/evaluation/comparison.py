"""Comparisons of performance.

Two models on the same labelled rows: the difference in AUROC with a paired bootstrap
interval (each resample draws the same rows for both models, so what the rows have in
common cancels out, and the interval is far narrower than two separate ones suggest).

One model on its development data and on external data: the training report's metrics
beside the external ones, with warnings where calibration or the event rate do not carry
over (the external-validation report's ``comparison`` section).
"""

from __future__ import annotations

from typing import get_args

import numpy as np
from sklearn.metrics import roc_auc_score

from medserve.errors import DataError
from medserve.evaluation.bootstrap import percentile_interval, ranking_metrics, resample_indices
from medserve.evaluation.metrics import Metric
from medserve.evaluation.report_types import (
    ComparedMetric,
    DevelopmentComparison,
    DevelopmentPerformance,
    Estimate,
    ExternalPerformance,
    TrainingReport,
)

N_RESAMPLES = 1000
# Resamples scored at once: (chunk, n) arrays stay small for large validation sets.
CHUNK = 200


def paired_auroc_difference(
    y: np.ndarray,
    risk_a: np.ndarray,
    risk_b: np.ndarray,
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
) -> Metric:
    """AUROC of ``risk_a`` minus AUROC of ``risk_b`` on the rows ``y``, with its paired
    percentile bootstrap interval."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        raise DataError("comparing AUROCs needs rows with events and rows without")
    estimate = float(roc_auc_score(y, risk_a) - roc_auc_score(y, risk_b))
    differences = []
    indices = resample_indices(len(y), n_resamples, seed)
    for start in range(0, n_resamples, CHUNK):
        rows = indices[start : start + CHUNK]
        auroc_a = ranking_metrics(y[rows], np.asarray(risk_a)[rows])["auroc"]
        auroc_b = ranking_metrics(y[rows], np.asarray(risk_b)[rows])["auroc"]
        differences.append(auroc_a - auroc_b)
    interval, used = percentile_interval(np.concatenate(differences), confidence)
    return Metric(estimate, interval, used)


# The metrics shown beside the development ones (as the training report measured them).
COMPARED_METRICS: tuple[ComparedMetric, ...] = get_args(ComparedMetric)
# An event rate this many times the development one (or its inverse) is a prevalence shift:
# calibration-in-the-large, PPV and NPV will not carry over.
PREVALENCE_SHIFT = 1.5


def compare_with_development(
    trained: TrainingReport | None, metrics: dict[str, Metric], labels: np.ndarray
) -> DevelopmentComparison:
    """The external ``metrics`` (on the 0/1 ``labels``) beside the training report's
    metrics (``trained``; None when the version has none readable), with its warnings."""
    development = DevelopmentPerformance()
    if trained is not None:
        measured = trained.evaluated_rows.n if trained.evaluated_rows else trained.split.n_test
        development = DevelopmentPerformance(
            split=trained.metrics.split,
            rows=measured,
            event_rate=trained.data.event_rate,
            metrics={name: getattr(trained.metrics, name) for name in COMPARED_METRICS},
        )
    external = ExternalPerformance(
        rows=len(labels),
        event_rate=float(np.mean(labels)),
        metrics={name: Estimate.of(metrics[name]) for name in COMPARED_METRICS},
    )
    return DevelopmentComparison(
        development=development,
        external=external,
        warnings=_comparison_warnings(development, external),
    )


def _comparison_warnings(
    development: DevelopmentPerformance, external: ExternalPerformance
) -> list[str]:
    """Warnings on calibration-in-the-large and on a shift of the event rate."""
    said = []
    intercept = external.metrics["calibration_intercept"]
    low, high = intercept.ci95
    if intercept.estimate is not None and low is not None and high is not None:
        if low > 0 or high < 0:
            direction = "too low" if intercept.estimate > 0 else "too high"
            said.append(
                f"calibration-in-the-large is off: the calibration intercept is "
                f"{intercept.estimate:.2f} (95% CI {low:.2f} to {high:.2f}), so 0 is "
                f"outside its interval: the model's risks run {direction} on this data; "
                "recalibrate it here before relying on its risks"
            )
    before, now = development.event_rate, external.event_rate
    if before and now and not 1 / PREVALENCE_SHIFT <= now / before <= PREVALENCE_SHIFT:
        said.append(
            f"the event rate differs from development: {now:.1%} here against "
            f"{before:.1%} in the training data ({now / before:.2f} times); calibration, "
            "PPV and NPV do not carry over a prevalence shift"
        )
    return said
