"""Recalibration, used only where cross-validation shows it helps."""

from __future__ import annotations

import numpy as np
from scipy.special import logit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import StratifiedKFold, cross_val_predict

RISK_EPSILON = 1e-7
# Recalibrate only when it cuts out-of-fold log-loss by more than this share.
MIN_RELATIVE_GAIN = 0.01


def risk_logit(risk: np.ndarray) -> np.ndarray:
    """Risks as a one-column matrix of log-odds (clipped away from 0 and 1)."""
    return logit(np.clip(risk, RISK_EPSILON, 1 - RISK_EPSILON)).reshape(-1, 1)


def fit_recalibration(
    y_true: np.ndarray, oof_risk: np.ndarray, *, folds: int, seed: int
) -> tuple[LogisticRegression | None, dict]:
    """Platt scaling on the logit of out-of-fold risks, judged by its own inner CV."""
    z = risk_logit(oof_risk)
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
    return (scaler.fit(z, y_true) if helps else None), info


def apply_recalibration(calibrator: LogisticRegression | None, risk: np.ndarray) -> np.ndarray:
    if calibrator is None:
        return risk
    return calibrator.predict_proba(risk_logit(risk))[:, 1]
