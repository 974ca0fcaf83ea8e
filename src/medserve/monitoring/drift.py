"""Drift of one window against the reference profile: PSI per feature and for predicted
risk, the change in the share missing, and the share of levels training never saw.

A small window drawn from the training population itself has a large PSI (about
(bins - 1) / n), so an alert needs two things: a shift big enough to matter (the
threshold) and one beyond chance at the window's size (a G-test of its bin counts against
the reference shares, a binomial test for the share missing). Windows with fewer than
``min_n`` predictions are suppressed whole: no figure from them is shown."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

from medserve.monitoring.profile import FeatureProfile, ReferenceProfile

# The share an empty bin is taken to hold, so PSI and the G-test stay finite.
FLOOR = 1e-4
# PSI below this is stable; from here to the alert threshold, moderate (shown, not alerted).
MODERATE_PSI = 0.1
RISK = "predicted risk"

Metric = Literal["psi", "missing_shift", "unseen_rate", "risk_psi"]


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.25  # PSI at or above: a shift (0.1-0.25 "moderate", shown not alerted)
    missing_shift: float = 0.10  # absolute change in the share missing
    unseen_rate: float = 0.05  # share of a window's values that are levels never seen
    p_value: float = 0.001  # a shift must also be beyond chance at this window's size
    min_n: int = 10  # windows with fewer predictions are suppressed (k)


@dataclass(frozen=True)
class Alert:
    """One shift worth a person's attention, said in a plain sentence."""

    metric: Metric
    feature: str | None  # None for the risk distribution
    value: float
    threshold: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def window_drift(
    profile: ReferenceProfile,
    counts: Mapping[str, Any],
    thresholds: DriftThresholds = DriftThresholds(),
) -> dict[str, Any]:
    """Drift of one window's counts (``windows.batch_counts``, merged) against ``profile``:
    ``{"n", "suppressed", "features": {name: {"psi", "psi_band", "p_value", "missing",
    "unseen_rate"}}, "risk": {...}, "alerts": [...]}``; a window of fewer than
    ``thresholds.min_n`` predictions says only that it is suppressed."""
    n = int(counts.get("n", 0)) if counts else 0
    if n < thresholds.min_n:
        return {
            "n": n,
            "suppressed": True,
            "reason": f"fewer than {thresholds.min_n} predictions in this window",
        }
    alerts: list[Alert] = []
    features = {}
    for name, feature in profile.features.items():
        window = counts.get("features", {}).get(name)
        if window is None:
            continue
        features[name] = _feature_drift(feature, window, n, profile.n, thresholds, alerts)
    risk = _distribution(profile.risk_fractions, counts.get("risk") or [], thresholds)
    if _shifted(risk, thresholds):
        alerts.append(
            Alert(
                "risk_psi", None, risk["psi"], thresholds.psi, _psi_message(RISK, risk, thresholds)
            )
        )
    risk_sum = counts.get("risk_sum")
    risk_summary = {
        **risk,
        "reference_mean": profile.risk_mean,
        "window_mean": None if risk_sum is None else _rounded(risk_sum / n),
    }
    return {
        "n": n,
        "suppressed": False,
        "features": features,
        "risk": risk_summary,
        "alerts": [alert.to_dict() for alert in alerts],
    }


def psi(reference: Sequence[float], window: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins, empty bins
    taken to hold ``FLOOR``."""
    r = _floored(np.asarray(reference, dtype=np.float64))
    w = _floored(np.asarray(window, dtype=np.float64))
    return float(np.sum((w - r) * np.log(w / r)))


def g_test_p_value(reference: Sequence[float], counts: Sequence[int]) -> float:
    """The chance of bin counts at least this far from the reference shares (a G-test,
    log-likelihood ratio, which stays sane where an expected count is tiny)."""
    observed = np.asarray(counts, dtype=np.float64)
    if len(observed) < 2 or observed.sum() == 0:
        return 1.0
    expected = _floored(np.asarray(reference, dtype=np.float64)) * observed.sum()
    result = stats.power_divergence(observed, expected, lambda_="log-likelihood")
    return float(result.pvalue)


def _feature_drift(
    feature: FeatureProfile,
    window: Mapping[str, Any],
    n: int,
    profile_n: int,
    thresholds: DriftThresholds,
    alerts: list[Alert],
) -> dict[str, Any]:
    distribution = _distribution(feature.fractions, window["bins"], thresholds)
    if _shifted(distribution, thresholds):
        message = _psi_message(feature.name, distribution, thresholds)
        alerts.append(Alert("psi", feature.name, distribution["psi"], thresholds.psi, message))
    missing = int(window["missing"])
    share = missing / n
    shift = share - feature.missing
    missing_p = _binomial_p_value(missing, n, feature.missing, profile_n)
    if abs(shift) >= thresholds.missing_shift and missing_p < thresholds.p_value:
        change = "rose" if shift > 0 else "fell"
        message = (
            f"{feature.name}: the share missing {change} from {_percent(feature.missing)} to "
            f"{_percent(share)} (threshold {thresholds.missing_shift * 100:g} points)"
        )
        alerts.append(
            Alert("missing_shift", feature.name, shift, thresholds.missing_shift, message)
        )
    unseen_rate = None
    if feature.kind == "levels":
        unseen = int(window["unseen"])
        present = unseen + sum(window["bins"])
        unseen_rate = unseen / present if present else None
        if unseen_rate is not None and unseen_rate >= thresholds.unseen_rate and unseen >= 2:
            message = (
                f"{feature.name}: {_percent(unseen_rate)} of values are levels never seen in "
                f"training (threshold {_percent(thresholds.unseen_rate)})"
            )
            alerts.append(
                Alert("unseen_rate", feature.name, unseen_rate, thresholds.unseen_rate, message)
            )
    return {
        **distribution,
        "missing": {
            "reference": _rounded(feature.missing),
            "window": _rounded(share),
            "shift": _rounded(shift),
            "p_value": missing_p,
        },
        "unseen_rate": None if unseen_rate is None else _rounded(unseen_rate),
    }


def _binomial_p_value(missing: int, n: int, reference: float, reference_n: int) -> float:
    """The chance of at least this far from the reference share missing in ``n`` values.
    A share of exactly 0 or 1 in training is taken as half a row off it: "never missing
    in 600 rows" is not "never missing", and one missing value should not be a certainty."""
    half_row = 0.5 / max(reference_n, 1)
    share = min(max(reference, half_row), 1 - half_row)
    return float(stats.binomtest(missing, n, share).pvalue)


def _distribution(
    reference: Sequence[float], counts: Sequence[int], thresholds: DriftThresholds
) -> dict[str, Any]:
    """PSI, its band and the G-test p-value of the non-missing values' bin counts; None
    where either side has no values to compare."""
    total = sum(counts)
    if total == 0 or sum(reference) == 0:
        return {"psi": None, "psi_band": None, "p_value": None}
    window = np.asarray(counts, dtype=np.float64) / total
    value = psi(reference, window)
    return {
        "psi": _rounded(value),
        "psi_band": _band(value, thresholds.psi),
        "p_value": g_test_p_value(reference, counts),
    }


def _shifted(distribution: Mapping[str, Any], thresholds: DriftThresholds) -> bool:
    value, p_value = distribution["psi"], distribution["p_value"]
    return value is not None and value >= thresholds.psi and p_value < thresholds.p_value


def _band(value: float, shift: float) -> str:
    return "shift" if value >= shift else "moderate" if value >= MODERATE_PSI else "stable"


def _psi_message(name: str, distribution: Mapping[str, Any], thresholds: DriftThresholds) -> str:
    return (
        f"{name}: the distribution shifted from training (PSI {distribution['psi']:.2f}, "
        f"threshold {thresholds.psi:g})"
    )


def _floored(shares: np.ndarray) -> np.ndarray:
    floored = np.maximum(shares, FLOOR)
    return floored / floored.sum()


def _percent(share: float) -> str:
    return f"{share * 100:.0f}%"


def _rounded(value: float) -> float:
    return round(float(value), 6)
