"""Risks on the log-odds scale: the one ``risk_logit`` that recalibration, the compiled
scorer, explanations and calibration metrics share."""

from __future__ import annotations

import numpy as np
from scipy.special import logit

# Risks of exactly 0 or 1 have infinite log-odds; they are clipped this far from 0 and 1.
RISK_CLIP = 1e-7


def risk_logit(risk: np.ndarray) -> np.ndarray:
    """Log-odds of risks clipped to [RISK_CLIP, 1 - RISK_CLIP], in the shape given."""
    return logit(np.clip(np.asarray(risk, dtype=float), RISK_CLIP, 1 - RISK_CLIP))
