"""Risks on the log-odds scale: the one ``risk_logit`` that recalibration, the compiled
scorer, explanations and calibration metrics share; and the bands risks are named by."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import logit

# Risks of exactly 0 or 1 have infinite log-odds; they are clipped this far from 0 and 1.
RISK_CLIP = 1e-7


def risk_logit(risk: np.ndarray) -> np.ndarray:
    """Log-odds of risks clipped to [RISK_CLIP, 1 - RISK_CLIP], in the shape given."""
    return logit(np.clip(np.asarray(risk, dtype=float), RISK_CLIP, 1 - RISK_CLIP))


# The bands a model's risks fall in unless configured: below half its threshold, up to
# its threshold, and at or above it, so that "high" is exactly the label 1.
DEFAULT_BAND_LABELS = ("low", "moderate", "high")


BandLevel = Literal["low", "moderate", "high"]


def band_level(index: int, n_bands: int) -> BandLevel:
    """How band ``index`` of ``n_bands`` ranks, as FHIR's risk-probability codes and a
    card's urgency read it: the lowest "low", the highest "high", any between "moderate"
    (a single band is "low"). ValueError for a band that is not one of them."""
    if n_bands < 1 or not 0 <= index < n_bands:
        raise ValueError(f"band {index} is not one of {n_bands} bands")
    if index == 0:
        return "low"
    return "high" if index == n_bands - 1 else "moderate"


@dataclass(frozen=True, slots=True)
class RiskBands:
    """Named bands of risk: ``labels[i]`` holds risks below ``cuts[i]`` and at or above
    ``cuts[i - 1]``; the last label every risk at or above the last cut. The same bands
    name a risk on every channel: REST, files, FHIR, CDS Hooks."""

    cuts: tuple[float, ...]
    labels: tuple[str, ...] = DEFAULT_BAND_LABELS

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.cuts) + 1:
            raise ValueError(
                f"{len(self.cuts)} band cuts need {len(self.cuts) + 1} labels, "
                f"not {len(self.labels)}"
            )
        if list(self.cuts) != sorted(self.cuts) or len(set(self.cuts)) != len(self.cuts):
            raise ValueError(f"band cuts must rise strictly: {list(self.cuts)}")
        if not all(0 < cut < 1 for cut in self.cuts):
            raise ValueError(f"band cuts must lie strictly between 0 and 1: {list(self.cuts)}")

    @classmethod
    def around(cls, threshold: float, labels: Sequence[str] = DEFAULT_BAND_LABELS) -> RiskBands:
        """The default bands for a model whose threshold is ``threshold``."""
        threshold = min(max(float(threshold), 2 * RISK_CLIP), 1 - RISK_CLIP)
        return cls((threshold / 2, threshold), tuple(labels))

    def index(self, risk: float) -> int:
        """The position of ``risk``'s band, 0 the lowest."""
        return bisect.bisect_right(self.cuts, risk)

    def of(self, risks: Sequence[float]) -> list[str]:
        """Each risk's band label."""
        return [self.labels[bisect.bisect_right(self.cuts, risk)] for risk in risks]
