"""Recalibration, used only where cross-validation shows it helps."""

from __future__ import annotations

import numpy as np
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
