"""Two models on the same labelled rows: the difference in AUROC with a paired bootstrap
interval (each resample draws the same rows for both models, so what the rows have in
common cancels out, and the interval is far narrower than two separate ones suggest)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from medserve.errors import DataError
from medserve.evaluation.bootstrap import percentile_interval, ranking_metrics, resample_indices
from medserve.evaluation.metrics import Metric

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
