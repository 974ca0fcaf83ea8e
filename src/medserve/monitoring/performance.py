"""Live performance: how a deployed model does on the predictions whose outcomes arrived.

The numbers are the evaluation package's (``metrics_where_defined``, ``observed_expected``,
``net_benefit``), so a live AUROC means exactly what the validation report's AUROC means.
Two things differ from a validation report:

* Few rows are normal (a quiet week, outcomes that take a month to arrive). Below
  ``min_n`` rows nothing is reported, not even the number of events: a count of events
  among five named admissions can identify a patient, and any estimate on so few rows
  is noise.
* One outcome class is normal too (a week without an event). It is no error: what needs
  both classes (AUROC, calibration) is ``None`` with the reason, the rest is reported.

Every value is a dict with ``estimate``, ``ci95`` and ``reason`` (why the estimate or
interval is missing, else ``None``). Net benefit at the model's threshold (Vickers &
Elkin 2006) gets a percentile bootstrap interval over the same resamples as the other
metrics, and the treat-all net benefit beside it for reference.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from medserve.errors import ConfigError, DataError
from medserve.evaluation.bootstrap import resample_indices
from medserve.evaluation.decision import net_benefit
from medserve.evaluation.metrics import bootstrap_metric, metrics_where_defined
from medserve.evaluation.reliability import observed_expected

CONFIDENCE = 0.95
# The metrics a live window reports, from ``metrics_where_defined``.
LIVE_METRICS = ("auroc", "calibration_slope", "calibration_intercept", "sensitivity", "ppv")
# Resamples scored at once for the net-benefit interval: (chunk, n) arrays stay small.
_CHUNK = 200


def live_performance(
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    *,
    min_n: int = 10,
    n_resamples: int = 500,
    seed: int = 0,
) -> dict[str, Any]:
    """Performance of the predictions whose outcomes arrived (``y`` 0/1, ``risk`` the
    predicted probabilities, row for row; flagged means ``risk >= threshold``).

    Below ``min_n`` rows: ``{"n", "suppressed": True, "reason"}`` and no numbers.
    Otherwise ``{"n", "events", "suppressed": False, "threshold", "auroc", "oe_ratio",
    "calibration_slope", "calibration_intercept", "sensitivity", "ppv", "net_benefit"}``,
    each metric a dict with ``estimate``, ``ci95`` and ``reason``; ``net_benefit`` also
    has ``treat_all``. Raises DataError for unusable rows, ConfigError for bad options.
    """
    check_options(threshold, min_n=min_n, n_resamples=n_resamples)
    y_bool, risk_values = check_live_rows(y, risk)
    n = len(y_bool)
    if n < min_n:
        return {"n": n, "suppressed": True, "reason": too_few_reason(n, min_n)}
    metrics = metrics_where_defined(
        y_bool, risk_values, threshold, n_resamples=n_resamples, seed=seed, confidence=CONFIDENCE
    )
    result: dict[str, Any] = {
        "n": n,
        "events": int(y_bool.sum()),
        "suppressed": False,
        "threshold": float(threshold),
        "auroc": metrics["auroc"].to_dict(),
        "oe_ratio": oe_ratio(y_bool, risk_values),
    }
    for name in LIVE_METRICS[1:]:
        result[name] = metrics[name].to_dict()
    result["net_benefit"] = net_benefit_with_interval(
        y_bool, risk_values, threshold, n_resamples=n_resamples, seed=seed
    )
    return result


def rolling_performance(
    made_at: Sequence[datetime],
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    *,
    window: timedelta,
    now: datetime,
    n_windows: int = 6,
    min_n: int = 10,
    n_resamples: int = 500,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """``live_performance`` per window of prediction time, oldest window first (the order
    a chart reads left to right).

    The ``n_windows`` consecutive windows each last ``window`` and the last one ends at
    ``now``; a window holds the predictions made at or after its start and before its
    end (``start <= made_at < end``), whenever their outcomes arrived. Predictions made
    before the first window or at or after ``now`` are left out. Each entry is
    ``{"start": iso, "end": iso, **live_performance(...)}``.
    """
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise ConfigError(f"the window must be a positive length of time, got {window!r}")
    if isinstance(n_windows, bool) or not isinstance(n_windows, int) or n_windows < 1:
        raise ConfigError(f"n_windows must be a whole number of at least 1, got {n_windows!r}")
    check_options(threshold, min_n=min_n, n_resamples=n_resamples)
    y_bool, risk_values = check_live_rows(y, risk)
    times = list(made_at)
    if len(times) != len(y_bool):
        raise DataError(
            f"there are {len(times)} prediction times for {len(y_bool)} outcomes; "
            "they must match row for row"
        )
    _check_same_kind_of_time(times, now)

    first_start = now - n_windows * window
    # Which window each prediction falls in (-1: outside them all).
    slot = np.array(
        [(t - first_start) // window if first_start <= t < now else -1 for t in times],
        dtype=int,
    )
    windows = []
    for index in range(n_windows):
        start = first_start + index * window
        rows = slot == index
        windows.append(
            {
                "start": start.isoformat(),
                "end": (start + window).isoformat(),
                **live_performance(
                    y_bool[rows],
                    risk_values[rows],
                    threshold,
                    min_n=min_n,
                    n_resamples=n_resamples,
                    seed=seed,
                ),
            }
        )
    return windows


def oe_ratio(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    """Observed over expected events with its interval (``observed_expected``), with a
    reason when it is undefined."""
    ratio = observed_expected(y, risk)
    reason = None
    if ratio["estimate"] is None:
        reason = (
            "no events in these rows: O:E is 0 and its interval is not defined"
            if ratio["observed"] == 0
            else "every predicted risk is 0, so no events were expected"
        )
    return {"estimate": ratio["estimate"], "ci95": ratio["ci95"], "reason": reason}


def net_benefit_with_interval(
    y: np.ndarray, risk: np.ndarray, threshold: float, *, n_resamples: int, seed: int
) -> dict[str, Any]:
    """Net benefit of flagging ``risk >= threshold``, with a percentile bootstrap
    interval, and the net benefit of treating everyone at the same threshold."""
    odds = threshold / (1 - threshold)
    estimate = float(net_benefit(y, risk, np.array([threshold]))[0])
    flagged = risk >= threshold
    # Per row: +1 for a true positive, -odds for a false positive, 0 when not flagged;
    # a resample's net benefit is the mean of its rows' values.
    row_value = np.where(flagged, np.where(y, 1.0, -odds), 0.0)
    indices = resample_indices(len(y), n_resamples, seed)
    resampled = np.concatenate(
        [
            row_value[indices[start : start + _CHUNK]].mean(axis=1)
            for start in range(0, n_resamples, _CHUNK)
        ]
    )
    metric = bootstrap_metric(estimate, resampled, CONFIDENCE)
    prevalence = float(y.mean())
    return {**metric.to_dict(), "treat_all": prevalence - (1 - prevalence) * odds}


def check_live_rows(y: Any, risk: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(y, risk)`` as a boolean and a float array, or DataError naming the problem.

    As the evaluation package's ``check_outcome_and_risk``, except that empty data and
    one outcome class are allowed: live windows are often small and without events.
    """
    outcome = np.asarray(y)
    try:
        risk_values = np.asarray(risk, dtype=float)
    except (TypeError, ValueError) as error:
        raise DataError(f"the predicted risks are not all numbers ({error})") from None
    if outcome.ndim != 1 or risk_values.ndim != 1:
        raise DataError(
            "the outcomes and the predicted risks must each be one column, got shapes "
            f"{outcome.shape} and {risk_values.shape}"
        )
    if len(outcome) != len(risk_values):
        raise DataError(
            f"there are {len(outcome)} outcomes but {len(risk_values)} predicted risks; "
            "they must match row for row"
        )
    if outcome.dtype != bool:
        if outcome.dtype.kind not in "iuf":
            raise DataError(f"the outcome must be 0/1 (or true/false), got type {outcome.dtype}")
        not_binary = np.flatnonzero((outcome != 0) & (outcome != 1))  # NaN included
        if not_binary.size:
            raise DataError(f"the outcome must be 0/1; row {not_binary[0]} is not")
    bad = np.flatnonzero(~((risk_values >= 0) & (risk_values <= 1)))  # NaN included
    if bad.size:
        raise DataError(
            f"{bad.size} predicted risk(s) are missing or outside [0, 1], first at row "
            f"{bad[0]}; risks must be probabilities"
        )
    return outcome.astype(bool), risk_values


def check_options(threshold: float, *, min_n: int, n_resamples: int) -> None:
    """ConfigError unless the threshold is in [0, 1) (net benefit divides by 1 - t) and
    ``min_n`` and ``n_resamples`` are whole numbers of at least 1."""
    if not (isinstance(threshold, int | float | np.number) and 0 <= threshold < 1):
        raise ConfigError(f"the threshold must be a probability in [0, 1), got {threshold!r}")
    for name, value in (("min_n", min_n), ("n_resamples", n_resamples)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")


def too_few_reason(n: int, min_n: int) -> str:
    """Why a result with ``n`` rows is suppressed."""
    return (
        f"only {n} prediction(s) with outcomes; at least {min_n} are needed before any "
        "performance is shown"
    )


def _check_same_kind_of_time(times: Sequence[datetime], now: datetime) -> None:
    """ConfigError when time zones are mixed: naive and aware times cannot be compared."""
    aware = now.tzinfo is not None
    mixed = next((i for i, t in enumerate(times) if (t.tzinfo is not None) != aware), None)
    if mixed is not None:
        kind = "timezone-aware" if aware else "naive (no time zone)"
        raise ConfigError(
            f"`now` is {kind} but prediction time {mixed} is not; give all times with "
            "a time zone (UTC), or all without"
        )
