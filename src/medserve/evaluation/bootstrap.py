"""Metrics for a whole batch of bootstrap resamples at once, and percentile intervals.

Every function takes (B, n) arrays, one resample per row, and returns one value per
row, NaN where the metric is undefined for that resample (e.g. AUROC of a resample
that drew no events). Each equals the scikit-learn metric on the same resample.
"""

from __future__ import annotations

import numpy as np


def resample_indices(n: int, n_resamples: int, seed: int) -> np.ndarray:
    """All bootstrap row indices at once: a (n_resamples, n) array drawn with replacement."""
    rng = np.random.default_rng(seed)
    dtype = np.int32 if n < 2**31 else np.int64
    return rng.integers(0, n, size=(n_resamples, n), dtype=dtype)


def threshold_metrics(y: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy, sensitivity, specificity, PPV, NPV and F1 from confusion counts.

    ``y`` and ``label`` are boolean (B, n) arrays: the outcome and ``risk >= threshold``.
    """
    n = y.shape[1]
    true_pos = np.count_nonzero(y & label, axis=1)
    events = np.count_nonzero(y, axis=1)
    predicted_pos = np.count_nonzero(label, axis=1)
    false_neg = events - true_pos
    false_pos = predicted_pos - true_pos
    true_neg = n - events - false_pos
    return {
        "accuracy": (true_pos + true_neg) / n,
        "sensitivity": _ratio(true_pos, events),
        "specificity": _ratio(true_neg, n - events),
        "ppv": _ratio(true_pos, predicted_pos),
        "npv": _ratio(true_neg, n - predicted_pos),
        "f1": _ratio(2 * true_pos, 2 * true_pos + false_pos + false_neg),
    }


def brier(squared_error: np.ndarray) -> np.ndarray:
    """Brier score per resample from the resampled per-row ``(risk - y)**2``."""
    return squared_error.mean(axis=1)


def ranking_metrics(y: np.ndarray, risk: np.ndarray) -> dict[str, np.ndarray]:
    """AUROC and average precision per resample, from one sort of each row.

    Both are NaN unless the resample has events and non-events.

    AUROC is the Mann–Whitney U statistic on mid-ranks (tied risks share their average
    rank, which counts a tied event/non-event pair as 1/2, like the ROC trapezoid).
    Average precision is exactly scikit-learn's ``average_precision_score``: the sum
    over distinct risk thresholds of (recall step) x precision. Equivalently each
    event contributes, divided by the number of events, the precision at the lowest
    threshold that still flags it, i.e. at the end of its group of tied risks when
    rows are sorted by decreasing risk.
    """
    rows, n = y.shape
    order = np.argsort(-risk, axis=1, kind="stable")
    sorted_risk = np.take_along_axis(risk, order, axis=1)
    sorted_y = np.take_along_axis(y, order, axis=1)

    # Tie groups: first and last (0-based) position of each row's group of equal risks.
    new_group = np.ones((rows, n), dtype=bool)
    new_group[:, 1:] = sorted_risk[:, 1:] != sorted_risk[:, :-1]
    positions = np.arange(n)
    group_start = np.maximum.accumulate(np.where(new_group, positions, 0), axis=1)
    group_end = np.empty((rows, n), dtype=positions.dtype)
    group_end[:, :-1] = np.where(new_group[:, 1:], positions[:-1], n)
    group_end[:, -1] = n - 1
    group_end = np.minimum.accumulate(group_end[:, ::-1], axis=1)[:, ::-1]

    events = np.count_nonzero(sorted_y, axis=1)
    both_classes = (events > 0) & (events < n)

    # Descending positions start..end hold ascending ranks n - end .. n - start.
    mid_rank = n - (group_start + group_end) / 2
    rank_sum = np.where(sorted_y, mid_rank, 0.0).sum(axis=1)
    u_statistic = rank_sum - events * (events + 1) / 2
    auroc = _ratio(u_statistic, events * (n - events))

    true_pos = np.cumsum(sorted_y, axis=1)
    precision_at_end = np.take_along_axis(true_pos, group_end, axis=1) / (group_end + 1)
    average_precision = _ratio(np.where(sorted_y, precision_at_end, 0.0).sum(axis=1), events)
    return {
        "auroc": np.where(both_classes, auroc, np.nan),
        "auprc": np.where(both_classes, average_precision, np.nan),
    }


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[tuple[float, float], int]:
    """Percentile bootstrap interval over the finite values, and how many there were."""
    finite = values[np.isfinite(values)]
    if finite.size < 2:
        return (float("nan"), float("nan")), int(finite.size)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return (float(low), float(high)), int(finite.size)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0, without warnings."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out
