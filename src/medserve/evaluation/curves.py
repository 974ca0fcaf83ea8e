"""ROC and precision-recall curves as point lists, and the confusion matrix at a threshold.

Points come from scikit-learn; curves are thinned to at most ``MAX_POINTS`` so a report
of a large validation set stays small. Only rates are kept, never the risk thresholds
(each of which is one patient's predicted risk).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_curve, roc_curve

MAX_POINTS = 200


def roc_points(y: np.ndarray, risk: np.ndarray) -> dict[str, list[float]]:
    """False- and true-positive rates from (0, 0) to (1, 1)."""
    fpr, tpr, _ = roc_curve(y, risk, drop_intermediate=True)
    keep = _thin(len(fpr))
    return {"fpr": _rounded(fpr[keep]), "tpr": _rounded(tpr[keep])}


def pr_points(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    """Precision against recall, highest recall first, and the prevalence (the no-skill line)."""
    precision, recall, _ = precision_recall_curve(y, risk, drop_intermediate=True)
    keep = _thin(len(recall))
    return {
        "recall": _rounded(recall[keep]),
        "precision": _rounded(precision[keep]),
        "prevalence": float(np.mean(y)),
    }


def confusion_counts(y: np.ndarray, risk: np.ndarray, threshold: float) -> dict[str, int]:
    """True/false positives and negatives when ``risk >= threshold`` flags a patient."""
    tn, fp, fn, tp = confusion_matrix(
        np.asarray(y, dtype=bool), np.asarray(risk) >= threshold, labels=[False, True]
    ).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)}


def _thin(n: int) -> np.ndarray:
    """Indices of at most MAX_POINTS points, evenly spread, the first and last kept."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, MAX_POINTS).round().astype(int))


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]
