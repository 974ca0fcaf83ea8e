"""What every family's explanation shares: the family's attribution over its estimator's
inputs (``Family.attribution``) summed back to raw columns and carried through the model's
recalibration, all in log-odds.

The attributions themselves (exact linear, TreeSHAP, DeepLIFT, EBM terms) belong to their
families, in medserve.modeling.families."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression


def raw_column_grouping(parts: Sequence[Mapping[str, float]], columns: Sequence[str]) -> np.ndarray:
    """(inputs, columns): ``contributions @ grouping`` sums each input's contribution into
    the raw columns it comes from, with their shares."""
    grouping = np.zeros((len(parts), len(columns)))
    position = {name: j for j, name in enumerate(columns)}
    for i, shares in enumerate(parts):
        for name, share in shares.items():
            grouping[i, position[name]] = share
    return grouping


def platt_of(calibrator: LogisticRegression | None) -> tuple[float, float]:
    """Platt scaling is linear in log-odds: calibrated = scale × raw + shift.

    (Raw log-odds beyond ±16 are clipped before scaling; risks there are 0 or 1.)"""
    if calibrator is None:
        return 1.0, 0.0
    return float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
