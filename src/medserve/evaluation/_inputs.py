"""Checks shared by every evaluation function: a binary outcome and a risk per row."""

from __future__ import annotations

from typing import Any

import numpy as np

from medserve.errors import DataError


def check_outcome_and_risk(y_true: Any, risk: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(y, risk)`` as a boolean and a float array, or raise ``DataError``.

    The outcome may come as bool, int or float (0/1); risks must be probabilities.
    Both outcome classes must be present: discrimination and calibration need
    events and non-events.
    """
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise DataError(f"the outcome must be one column of 0/1 values, got shape {y.shape}")
    try:
        risk_values = np.asarray(risk, dtype=float)
    except (TypeError, ValueError) as error:
        raise DataError(f"the predicted risks are not all numbers ({error})") from None
    if risk_values.ndim != 1:
        raise DataError(
            f"the predicted risks must be one column of probabilities, got shape "
            f"{risk_values.shape}"
        )
    if len(y) != len(risk_values):
        raise DataError(
            f"the outcome has {len(y)} rows but there are {len(risk_values)} predicted risks; "
            "they must match row for row"
        )
    if len(y) == 0:
        raise DataError("the evaluation data is empty: there are no rows to evaluate")
    y_bool = _as_binary_outcome(y)

    missing = np.flatnonzero(np.isnan(risk_values))
    if missing.size:
        raise DataError(
            f"{missing.size} predicted risk(s) are missing (NaN), first at row {missing[0]}"
        )
    outside = np.flatnonzero((risk_values < 0) | (risk_values > 1))
    if outside.size:
        row = outside[0]
        raise DataError(
            f"{outside.size} predicted risk(s) lie outside [0, 1], first at row {row} "
            f"({risk_values[row]!r}); risks must be probabilities"
        )

    events = int(y_bool.sum())
    if events == 0 or events == len(y_bool):
        which = "events (1)" if events else "non-events (0)"
        raise DataError(
            f"the evaluation data has only one outcome class (all {len(y_bool)} rows are "
            f"{which}); metrics such as AUROC need both events and non-events"
        )
    return y_bool, risk_values


def _as_binary_outcome(y: np.ndarray) -> np.ndarray:
    if y.dtype == bool:
        return y
    if y.dtype.kind not in "iuf":
        raise DataError(f"the outcome must be 0/1 (or true/false), got values of type {y.dtype}")
    not_binary = np.flatnonzero((y != 0) & (y != 1))  # NaN is caught here too
    if not_binary.size:
        row = not_binary[0]
        raise DataError(f"the outcome must be 0/1 (or true/false); row {row} holds {y[row]!r}")
    return y == 1
