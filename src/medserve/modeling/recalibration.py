"""Recalibration: Platt scaling in training, used only where cross-validation shows it
helps; and local updating of a stored model to a new site's outcomes."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit
from scipy.stats import chi2
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from medserve.core.risk import risk_logit

# Recalibrate only when it cuts out-of-fold log-loss by more than this share.
MIN_RELATIVE_GAIN = 0.01


def _logit_column(risk: np.ndarray) -> np.ndarray:
    """Risks as the one-column matrix of log-odds that the Platt scaler reads."""
    return risk_logit(risk).reshape(-1, 1)


def fit_recalibration(
    y_true: np.ndarray, oof_risk: np.ndarray, *, folds: int, seed: int
) -> tuple[LogisticRegression | None, dict, np.ndarray]:
    """Platt scaling on the logit of out-of-fold risks, judged by its own inner CV.

    Also returns the out-of-fold risks as the model would give them: recalibrated by
    scalers fitted on the other folds only (cross-fitted) where Platt is kept, as they
    are otherwise; measured on these, calibration is not fitted to the rows it scores."""
    z = _logit_column(oof_risk)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scaler = LogisticRegression()
    inner = cross_val_predict(scaler, z, y_true, cv=splitter, method="predict_proba")[:, 1]
    raw_loss = float(log_loss(y_true, oof_risk))
    calibrated_loss = float(log_loss(y_true, inner))
    helps = calibrated_loss < raw_loss * (1 - MIN_RELATIVE_GAIN)
    info = {
        "method": "platt" if helps else "none",
        "oof_log_loss_raw": raw_loss,
        "oof_log_loss_calibrated": calibrated_loss,
    }
    if not helps:
        return None, info, np.asarray(oof_risk, dtype=float)
    return scaler.fit(z, y_true), info, inner


def apply_recalibration(calibrator: LogisticRegression | None, risk: np.ndarray) -> np.ndarray:
    if calibrator is None:
        return risk
    return calibrator.predict_proba(_logit_column(risk))[:, 1]


# Local updating (TRIPOD+AI item 24): the slope is re-estimated only when a likelihood-ratio
# test against intercept-only recalibration says so at this level.
SLOPE_EVIDENCE_P = 0.05
Method = Literal["auto", "intercept", "slope"]


@dataclass(frozen=True)
class LocalRecalibration:
    """``logit(new risk) = intercept + slope * logit(risk)``, fitted on local outcomes;
    ``method`` "intercept" (slope fixed at 1) or "intercept+slope"; ``slope_p`` is the
    likelihood-ratio test of the slope against 1."""

    intercept: float
    slope: float
    method: str
    slope_p: float

    def apply(self, risk: np.ndarray) -> np.ndarray:
        return expit(self.intercept + self.slope * risk_logit(risk))


def fit_local_recalibration(
    y_true: np.ndarray, risk: np.ndarray, method: Method = "auto"
) -> LocalRecalibration:
    """Logistic recalibration of ``risk`` to the observed ``y_true``: the intercept only
    (calibration-in-the-large), or intercept and slope, "auto" choosing the slope only when
    the data's evidence for it passes SLOPE_EVIDENCE_P."""
    import statsmodels.api as sm

    y = np.asarray(y_true, dtype=float)
    z = risk_logit(risk)
    ones = np.ones((len(y), 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shifted = sm.GLM(y, ones, family=sm.families.Binomial(), offset=z).fit()
        free = sm.GLM(y, np.column_stack([ones, z]), family=sm.families.Binomial()).fit()
    statistic = max(0.0, 2.0 * (float(free.llf) - float(shifted.llf)))
    slope_p = float(chi2.sf(statistic, df=1))
    with_slope = method == "slope" or (method == "auto" and slope_p < SLOPE_EVIDENCE_P)
    if with_slope:
        intercept, slope = (float(value) for value in free.params)
        return LocalRecalibration(intercept, slope, "intercept+slope", slope_p)
    return LocalRecalibration(float(shifted.params[0]), 1.0, "intercept", slope_p)


def composed_calibrator(
    calibrator: LogisticRegression | None, update: LocalRecalibration
) -> LogisticRegression:
    """One Platt scaler doing ``calibrator`` then ``update`` (both linear on the log-odds
    of the uncalibrated risk), so the fast scorer and the explanations read it as any."""
    slope, intercept = 1.0, 0.0
    if calibrator is not None:
        slope, intercept = float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
    scaler = LogisticRegression()
    scaler.classes_ = np.array([0, 1])
    scaler.coef_ = np.array([[update.slope * slope]])
    scaler.intercept_ = np.array([update.intercept + update.slope * intercept])
    scaler.n_features_in_ = 1
    scaler.n_iter_ = np.array([0])
    return scaler
