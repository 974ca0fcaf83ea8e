"""The reliability (calibration) curve: binned and smoothed observed risk against predicted
risk, the observed/expected ratio, and the distribution of predicted risks.

* Binned: quantile groups of predicted risk (deciles when there are enough rows), each
  with its mean predicted risk, observed event rate and a Wilson 95% interval.
* Smoothed: LOWESS of the outcome on the predicted risk (statsmodels, ``frac=2/3``, no
  robustness iterations, as for binary outcomes in Austin & Steyerberg 2014), read off on
  a grid between the 1st and 99th percentiles of predicted risk: only there is it
  supported by data.
* O:E: observed events over the sum of predicted risks, with the usual interval
  ``exp(ln(O/E) ± 1.96 / sqrt(O))`` (Debray et al. 2017).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

SMOOTHER = "LOWESS (statsmodels; frac 2/3, no robustness iterations)"
LOWESS_FRACTION = 2 / 3
GRID_POINTS = 50
MAX_BINS = 10
ROWS_PER_BIN = 20
HISTOGRAM_BINS = 20


def reliability(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    """Binned and smoothed calibration curves, O:E and the predicted-risk histogram."""
    y = np.asarray(y, dtype=float)
    risk = np.asarray(risk, dtype=float)
    return {
        "binned": binned_curve(y, risk),
        "smoothed": smoothed_curve(y, risk),
        "oe_ratio": observed_expected(y, risk),
        "risk_histogram": risk_histogram(y, risk),
    }


def binned_curve(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    bins = int(np.clip(len(y) // ROWS_PER_BIN, 3, MAX_BINS))
    groups = pd.qcut(risk, q=bins, duplicates="drop")
    table = (
        pd.DataFrame({"risk": risk, "y": y, "bin": groups})
        .groupby("bin", observed=True)
        .agg(mean_risk=("risk", "mean"), n=("y", "size"), events=("y", "sum"))
    )
    # statsmodels loads in ~1 s: imported when a report is built, not with the package.
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(table["events"], table["n"], alpha=0.05, method="wilson")
    points = [
        {
            "mean_risk": round(float(row.mean_risk), 5),
            "observed": round(float(row.events / row.n), 5),
            "n": int(row.n),
            "events": int(row.events),
            "ci95": [round(float(lo), 5), round(float(hi), 5)],
        }
        for row, lo, hi in zip(table.itertuples(), low, high, strict=True)
    ]
    return {"strategy": "quantiles of predicted risk", "bins": points}


def smoothed_curve(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    start, stop = np.percentile(risk, [1, 99])
    grid = np.linspace(start, stop, GRID_POINTS) if stop > start else np.array([start])
    from statsmodels.nonparametric.smoothers_lowess import lowess

    observed = lowess(y, risk, frac=LOWESS_FRACTION, it=0, xvals=grid)
    return {
        "method": SMOOTHER,
        "risk": [round(float(v), 5) for v in grid],
        "observed": [round(float(v), 5) for v in np.clip(observed, 0, 1)],
    }


def observed_expected(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    observed, expected = int(y.sum()), float(risk.sum())
    if observed == 0 or expected == 0:
        return {"estimate": None, "ci95": [None, None], "observed": observed, "expected": expected}
    ratio = observed / expected
    half_width = 1.96 / math.sqrt(observed)
    return {
        "estimate": ratio,
        "ci95": [ratio * math.exp(-half_width), ratio * math.exp(half_width)],
        "observed": observed,
        "expected": round(expected, 3),
    }


def risk_histogram(y: np.ndarray, risk: np.ndarray) -> dict[str, Any]:
    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    events, _ = np.histogram(risk[y == 1], bins=edges)
    non_events, _ = np.histogram(risk[y == 0], bins=edges)
    return {
        "edges": [round(float(e), 3) for e in edges],
        "events": events.tolist(),
        "non_events": non_events.tolist(),
    }
