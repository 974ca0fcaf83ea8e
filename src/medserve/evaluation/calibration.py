"""Calibration slope and intercept (calibration-in-the-large) of predicted risks.

Both are logistic recalibration fits on the log-odds ``z = logit(risk)``:

* slope: ``logit P(y=1) = a + b z``; the coefficient ``b`` (1 is ideal, < 1 means
  the predictions are too extreme, as from an over-fitted model);
* intercept: ``logit P(y=1) = a + z`` with the slope fixed at 1 (``z`` an offset);
  ``a`` is 0 when the mean risk matches the event rate, > 0 when risks are too low.

The point fits use scikit-learn and scipy; the bootstrap refits the same models on
a whole batch of resamples at once with a Newton solver (``batched_calibration``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from medserve.core.risk import risk_logit
from medserve.evaluation._inputs import check_outcome_and_risk

# The offset-model intercept lies in this bracket: |logit(risk)| <= 16.2 after clipping.
_INTERCEPT_BRACKET = 60.0
_NEWTON_MAX_ITER = 100
_NEWTON_TOL = 1e-7
_MAX_STEP_HALVINGS = 40


class CalibrationFit(NamedTuple):
    """Both recalibration fits: ``slope`` with its own intercept, and the offset intercept."""

    slope: float
    slope_model_intercept: float
    intercept: float


def calibration_slope_intercept(y_true: Any, risk: Any) -> tuple[float, float]:
    """Return ``(slope, intercept)``; ideal calibration gives ``(1, 0)``.

    The slope is NaN when the log-odds separate events from non-events completely:
    the logistic fit then has no finite maximum (the slope runs off to infinity).
    """
    y, risk_values = check_outcome_and_risk(y_true, risk)
    fit = fit_calibration(y, risk_logit(risk_values))
    return fit.slope, fit.intercept


def fit_calibration(y: np.ndarray, z: np.ndarray) -> CalibrationFit:
    """Point fits for a checked boolean outcome (both classes) and log-odds ``z``."""
    if _separated(y[np.newaxis, :], z[np.newaxis, :])[0]:
        slope = slope_model_intercept = float("nan")
    else:
        # C=inf is scikit-learn's spelling of "no penalty" (penalty=None is deprecated).
        model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=100)
        model.fit(z.reshape(-1, 1), y)
        slope, slope_model_intercept = float(model.coef_[0, 0]), float(model.intercept_[0])

    events = float(y.sum())

    def score(intercept: float) -> float:
        # Derivative of the offset model's log-likelihood: observed minus expected events.
        return events - float(expit(intercept + z).sum())

    intercept = float(brentq(score, -_INTERCEPT_BRACKET, _INTERCEPT_BRACKET, xtol=1e-14))
    return CalibrationFit(slope, slope_model_intercept, intercept)


def batched_calibration(
    y: np.ndarray, z: np.ndarray, start: CalibrationFit | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts for each row of a (B, n) batch of resamples.

    ``y`` is boolean, ``z`` the log-odds. Rows with a single class (and, for the
    slope, separated rows) have no finite fit and come back as NaN. ``start``, the
    point fit, is where Newton starts: resamples lie close to it.
    """
    start = _usable_start(start)
    events = y.sum(axis=1)
    both_classes = (events > 0) & (events < y.shape[1])
    y_float = y.astype(float)
    slope_rows = np.flatnonzero(both_classes & ~_separated(y, z))
    slope = _fit_rows(
        y_float, z, slope_rows, fit_slope=True, start=(start.slope_model_intercept, start.slope)
    )[1]
    intercept_rows = np.flatnonzero(both_classes)
    intercept = _fit_rows(
        y_float, z, intercept_rows, fit_slope=False, start=(start.intercept, 1.0)
    )[0]
    return slope, intercept


def _usable_start(start: CalibrationFit | None) -> CalibrationFit:
    """The point fit, or the ideal values where it is missing (e.g. separated data)."""
    if start is None or np.isnan(start.slope):
        ideal = CalibrationFit(1.0, 0.0, 0.0)
        return ideal if start is None else ideal._replace(intercept=start.intercept)
    return start


def _fit_rows(
    y: np.ndarray, z: np.ndarray, rows: np.ndarray, *, fit_slope: bool, start: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the chosen rows (others stay NaN): plain Newton, then a guarded retry.

    The log-likelihood is strictly concave, so any point where Newton's step vanishes
    is the maximum. Plain Newton from the point fit gets there for nearly every
    resample; the few it does not (divergence, oscillation) are refitted with step
    halving, which costs a log-likelihood evaluation per step.
    """
    a = np.full(len(y), np.nan)
    b = np.full(len(y), np.nan)
    if rows.size == 0:
        return a, b
    everything = rows.size == len(y)
    a[rows], b[rows] = _newton(
        y if everything else y[rows],
        z if everything else z[rows],
        fit_slope=fit_slope,
        start=start,
        guarded=False,
    )
    retry = rows[np.isnan(a[rows])]
    if retry.size:
        a[retry], b[retry] = _newton(
            y[retry], z[retry], fit_slope=fit_slope, start=start, guarded=True
        )
    return a, b


def _separated(y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Per row of a (B, n) batch: do the log-odds (quasi-)separate the two classes?

    With one covariate and an intercept, the maximum-likelihood fit is finite exactly
    when the ranges of ``z`` among events and non-events overlap in their interiors.
    """
    z_events_min = np.where(y, z, np.inf).min(axis=1)
    z_events_max = np.where(y, z, -np.inf).max(axis=1)
    z_nonevents_min = np.where(y, np.inf, z).min(axis=1)
    z_nonevents_max = np.where(y, -np.inf, z).max(axis=1)
    return (z_nonevents_max <= z_events_min) | (z_events_max <= z_nonevents_min)


def _newton(
    y: np.ndarray,
    z: np.ndarray,
    *,
    fit_slope: bool,
    start: tuple[float, float],
    guarded: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood ``(a, b)`` of ``logit P(y) = a + b z`` for every row at once.

    ``y`` is a float (B, n) array of 0/1. With ``fit_slope=False`` the slope stays at
    ``b = 1`` (``z`` is an offset). A row stops once its Newton step is tiny; with
    Newton's quadratic convergence the last step leaves it at the optimum to rounding.
    ``guarded`` halves a step, row by row, while it lowers the log-likelihood.
    Rows that do not converge are NaN.
    """
    rows = len(y)
    a = np.full(rows, float(start[0]))
    b = np.full(rows, float(start[1]))
    converged = np.zeros(rows, dtype=bool)
    # Working arrays hold only the rows still iterating ("live").
    live = np.arange(rows)
    y_live, z_live = y, z
    eta = a[:, None] + b[:, None] * z
    loglik = _loglik(y, eta) if guarded else np.zeros(rows)  # only guarded steps need it

    for _ in range(_NEWTON_MAX_ITER):
        fitted = expit(eta)
        residual = y_live - fitted
        weight = fitted * (1 - fitted)
        grad_a = residual.sum(axis=1)
        hess_aa = weight.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            if fit_slope:
                grad_b = (residual * z_live).sum(axis=1)
                weight_z = weight * z_live
                hess_ab = weight_z.sum(axis=1)
                hess_bb = (weight_z * z_live).sum(axis=1)
                det = hess_aa * hess_bb - hess_ab**2
                step_a = (hess_bb * grad_a - hess_ab * grad_b) / det
                step_b = (hess_aa * grad_b - hess_ab * grad_a) / det
            else:
                step_a = grad_a / hess_aa
                step_b = np.zeros_like(step_a)
        failed = ~(np.isfinite(step_a) & np.isfinite(step_b))
        step_a[failed] = 0.0
        step_b[failed] = 0.0
        tiny = ~failed & (
            np.maximum(np.abs(step_a), np.abs(step_b))
            < _NEWTON_TOL * (1 + np.maximum(np.abs(a[live]), np.abs(b[live])))
        )
        new_eta = eta + step_a[:, None] + step_b[:, None] * z_live
        scale: np.ndarray | float = 1.0
        if guarded:
            scale, loglik, stuck = _halve_steps(
                y_live, z_live, eta, new_eta, loglik, step_a, step_b, search=~tiny & ~failed
            )
            failed |= stuck
        a[live] += scale * step_a
        b[live] += scale * step_b
        converged[live[tiny]] = True
        keep = ~tiny & ~failed
        if not keep.any():
            break
        if keep.all():
            eta = new_eta
        else:
            live, y_live, z_live = live[keep], y_live[keep], z_live[keep]
            eta, loglik = new_eta[keep], loglik[keep]

    a[~converged] = np.nan
    b[~converged] = np.nan
    return a, b


def _halve_steps(
    y: np.ndarray,
    z: np.ndarray,
    eta: np.ndarray,
    new_eta: np.ndarray,
    loglik: np.ndarray,
    step_a: np.ndarray,
    step_b: np.ndarray,
    *,
    search: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Halve each searched row's step until its log-likelihood does not drop.

    Updates ``new_eta`` in place; returns the step scales, the new log-likelihoods
    and the rows where no step size helped.
    """
    scale = np.ones(len(y))
    new_loglik = loglik.copy()
    pending = np.flatnonzero(search)
    for _ in range(_MAX_STEP_HALVINGS):
        if pending.size == 0:
            break
        trial = _loglik(y[pending], new_eta[pending])
        new_loglik[pending] = trial
        old = loglik[pending]
        # Accept unless the log-likelihood drops by more than rounding noise.
        pending = pending[~(trial >= old - 1e-9 * np.abs(old))]
        scale[pending] /= 2
        new_eta[pending] = (
            eta[pending]
            + (scale[pending] * step_a[pending])[:, None]
            + (scale[pending] * step_b[pending])[:, None] * z[pending]
        )
    stuck = np.zeros(len(y), dtype=bool)
    stuck[pending] = True
    return scale, new_loglik, stuck


def _loglik(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return (y * eta - np.logaddexp(0.0, eta)).sum(axis=1)
