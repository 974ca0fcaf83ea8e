"""Shadow comparison: a candidate model scores the same patients as production, silently,
and once outcomes arrive the two are compared on those patients.

Discrimination is compared with the paired bootstrap of the AUROC difference (shadow
minus production; each resample draws the same patients for both, so the interval is
much narrower than two separate ones suggest). Calibration is compared by O:E: a
candidate that ranks patients better but whose risks run too high or too low would
mislead whoever reads its risks, so it is recalibrated before it is promoted.

The verdict:

* ``favours_shadow``: the AUROC-difference interval lies above 0, and the shadow's
  calibration is no worse: its O:E interval includes 1, or its ``|log O:E|`` exceeds
  production's by at most ``CALIBRATION_MARGIN``.
* ``favours_production``: the AUROC-difference interval lies below 0.
* ``inconclusive``: otherwise; also when the shadow discriminates better but is
  miscalibrated (then ``needs_recalibration`` is true and the sentence says to run
  ``medserve recalibrate`` first), and when too few outcomes are in (suppressed).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from medserve.evaluation.comparison import paired_auroc_difference
from medserve.monitoring.performance import (
    check_live_rows,
    check_options,
    live_performance,
    too_few_reason,
)

Verdict = Literal["favours_shadow", "favours_production", "inconclusive"]
# How much further from 1 (on the log scale) the shadow's O:E may be than production's
# and still count as "no worse": ln(1.1), i.e. about 10% further.
CALIBRATION_MARGIN = math.log(1.1)
# What each model's side of the comparison shows (from ``live_performance``).
SIDE_KEYS = (
    "threshold",
    "auroc",
    "oe_ratio",
    "calibration_slope",
    "calibration_intercept",
    "sensitivity",
    "ppv",
    "net_benefit",
)


def compare_with_shadow(
    y: np.ndarray,
    risk_production: np.ndarray,
    risk_shadow: np.ndarray,
    *,
    threshold_production: float,
    threshold_shadow: float,
    min_n: int = 10,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compare the two models' risks for the same patients (rows aligned with ``y``).

    Returns ``{"n", "events", "suppressed", "auroc_difference", "production", "shadow",
    "verdict", "needs_recalibration", "sentence"}``; ``auroc_difference`` is shadow minus
    production with its paired bootstrap interval, ``production`` and ``shadow`` each
    hold ``SIDE_KEYS`` as ``live_performance`` reports them. With fewer than ``min_n``
    rows, or one outcome class, only ``{"n", "suppressed": True, "reason", "verdict":
    "inconclusive", "sentence"}``. The verdict rule is in the module docstring.
    """
    for threshold in (threshold_production, threshold_shadow):
        check_options(threshold, min_n=min_n, n_resamples=n_resamples)
    y_bool, production = check_live_rows(y, risk_production)
    _, shadow = check_live_rows(y, risk_shadow)
    n = len(y_bool)
    if n < min_n:
        return _suppressed(n, too_few_reason(n, min_n))
    if y_bool.all() or not y_bool.any():
        return _suppressed(
            n, f"all {n} patients with outcomes have the same outcome; comparing needs both"
        )

    difference = paired_auroc_difference(
        y_bool, shadow, production, n_resamples=n_resamples, seed=seed
    )
    sides = {
        name: live_performance(
            y_bool, risk, threshold, min_n=min_n, n_resamples=n_resamples, seed=seed
        )
        for name, risk, threshold in (
            ("production", production, threshold_production),
            ("shadow", shadow, threshold_shadow),
        )
    }
    production_side = {key: sides["production"][key] for key in SIDE_KEYS}
    shadow_side = {key: sides["shadow"][key] for key in SIDE_KEYS}
    low, high = difference.ci95
    calibrated = calibration_no_worse(shadow_side["oe_ratio"], production_side["oe_ratio"])
    better = low > 0  # False for a NaN interval
    verdict: Verdict = "inconclusive"
    if better and calibrated:
        verdict = "favours_shadow"
    elif high < 0:
        verdict = "favours_production"
    return {
        "n": n,
        "events": int(y_bool.sum()),
        "suppressed": False,
        "auroc_difference": difference.to_dict(),
        "production": production_side,
        "shadow": shadow_side,
        "verdict": verdict,
        "needs_recalibration": better and not calibrated,
        "sentence": _sentence(n, difference.estimate, (low, high), verdict, shadow_side, better),
    }


def calibration_no_worse(shadow_oe: dict[str, Any], production_oe: dict[str, Any]) -> bool:
    """Whether the shadow's O:E interval includes 1, or its ``|log O:E|`` is within
    ``CALIBRATION_MARGIN`` of production's. An undefined shadow O:E is not "no worse";
    an undefined production O:E is beaten by any defined one."""
    estimate, (low, high) = shadow_oe["estimate"], shadow_oe["ci95"]
    if estimate is None:
        return False
    if low is not None and high is not None and low <= 1 <= high:
        return True
    production = production_oe["estimate"]
    production_distance = math.inf if production is None else abs(math.log(production))
    return abs(math.log(estimate)) <= production_distance + CALIBRATION_MARGIN


def _sentence(
    n: int,
    estimate: float,
    interval: tuple[float, float],
    verdict: Verdict,
    shadow: dict[str, Any],
    better: bool,
) -> str:
    low, high = interval
    change = (
        "the same to two decimals"
        if round(estimate, 2) == 0
        else f"{abs(estimate):.2f} {'higher' if estimate > 0 else 'lower'}"
    )
    if math.isnan(low) or math.isnan(high):
        said = f"On {n} patients with outcomes, the candidate's AUROC is {change}"
        return (
            f"{said}, but its interval could not be estimated: the evidence does not yet "
            "favour promotion; keep it in shadow until more outcomes arrive."
        )
    said = (
        f"On {n} patients with outcomes, the candidate's AUROC is {change} "
        f"(95% CI {low:.2f} to {high:.2f})"
    )
    if verdict == "favours_shadow":
        return f"{said} and its calibration is no worse: the evidence favours promoting it."
    if verdict == "favours_production":
        return f"{said}: the evidence favours keeping the production model."
    if better:
        oe = shadow["oe_ratio"]
        direction = "too high" if oe["estimate"] is not None and oe["estimate"] < 1 else "too low"
        observed = "undefined" if oe["estimate"] is None else f"{oe['estimate']:.2f}"
        if oe["estimate"] is not None and None not in oe["ci95"]:
            observed += f", 95% CI {oe['ci95'][0]:.2f} to {oe['ci95'][1]:.2f}"
        return (
            f"{said}, but its risks run {direction} (O:E {observed}): recalibrate it "
            "(`medserve recalibrate`) on recent outcomes before promoting it."
        )
    return (
        f"{said}; the interval includes no difference: the evidence does not yet favour "
        "promotion; keep it in shadow until more outcomes arrive."
    )


def _suppressed(n: int, reason: str) -> dict[str, Any]:
    return {
        "n": n,
        "suppressed": True,
        "reason": reason,
        "verdict": "inconclusive",
        "sentence": (
            f"The models cannot be compared yet ({reason}): more outcomes are needed; "
            "keep the candidate in shadow until they arrive."
        ),
    }
