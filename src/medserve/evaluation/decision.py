"""Decision-curve analysis: net benefit of the model against treat-all and treat-none.

Net benefit at threshold probability ``pt`` (Vickers & Elkin 2006) counts true
positives and charges each false positive the odds ``pt / (1 - pt)`` a clinician
accepts at that threshold::

    net benefit = TP/n - FP/n * pt / (1 - pt)

Treat-all flags everyone (TP = events, FP = non-events); treat-none has net benefit 0.
(``dcurves`` implements the same formula but pins pandas below 3, which medserve uses.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

METHOD = "net benefit = TP/n − FP/n · pt/(1 − pt) (Vickers & Elkin 2006)"
THRESHOLD_GRID = np.round(np.arange(0.01, 1.0, 0.01), 2)


def net_benefit(y: np.ndarray, risk: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Net benefit of flagging ``risk >= pt`` for each threshold probability ``pt``."""
    order = np.argsort(risk, kind="stable")
    sorted_risk = np.asarray(risk, dtype=float)[order]
    events_below = np.concatenate([[0], np.cumsum(np.asarray(y, dtype=bool)[order])])
    first_flagged = np.searchsorted(sorted_risk, thresholds, side="left")
    flagged = len(sorted_risk) - first_flagged
    true_pos = events_below[-1] - events_below[first_flagged]
    false_pos = flagged - true_pos
    return (true_pos - false_pos * thresholds / (1 - thresholds)) / len(sorted_risk)


def decision_curve(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    """Net benefit of the model, treat-all and treat-none on a 0.01-step threshold grid."""
    y = np.asarray(y, dtype=bool)
    prevalence = float(y.mean())
    odds = THRESHOLD_GRID / (1 - THRESHOLD_GRID)
    treat_all = prevalence - (1 - prevalence) * odds
    return {
        "method": METHOD,
        "thresholds": THRESHOLD_GRID.tolist(),
        "model": [round(float(v), 5) for v in net_benefit(y, risk, THRESHOLD_GRID)],
        "treat_all": [round(float(v), 5) for v in treat_all],
        "treat_none": [0.0] * len(THRESHOLD_GRID),
        "prevalence": prevalence,
    }
