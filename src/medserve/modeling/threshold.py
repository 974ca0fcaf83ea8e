"""Choosing the decision threshold on out-of-fold predictions."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_curve

from medserve.errors import ConfigError, option

_TARGET_RULE = re.compile(r"^\s*(sensitivity|specificity)\s*=\s*(0?\.\d+|1(\.0+)?)\s*$")


@dataclass(frozen=True)
class ThresholdRule:
    """'youden' (maximise sensitivity + specificity − 1) or a floor on one of them."""

    kind: str = "youden"
    target: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> ThresholdRule:
        if text is None or text.strip().lower() == "youden":
            return cls()
        match = _TARGET_RULE.match(text.lower())
        if match is None:
            raise ConfigError(
                f"threshold rule '{text}' ({option('threshold_for')}) is not understood; "
                "write sensitivity=0.90, specificity=0.95 or youden"
            )
        return cls(kind=match.group(1), target=float(match.group(2)))

    @classmethod
    def described(cls, text: str | None) -> ThresholdRule:
        """The rule ``describe`` wrote (as a trained model keeps it); Youden's when the text
        names no floor."""
        match = re.search(r"with (sensitivity|specificity) ≥ ([0-9.]+)", text or "")
        return cls(kind=match.group(1), target=float(match.group(2))) if match else cls()

    def spelled(self) -> str:
        """The rule as ``parse`` reads it: youden, sensitivity=0.90, specificity=0.95."""
        return "youden" if self.kind == "youden" else f"{self.kind}={self.target}"

    def describe(self) -> str:
        if self.kind == "youden":
            return "maximises Youden's J (sensitivity + specificity − 1) on out-of-fold predictions"
        return f"highest threshold with {self.kind} ≥ {self.target:.2f} on out-of-fold predictions"


def choose_threshold(y_true: np.ndarray, risk: np.ndarray, rule: ThresholdRule) -> float:
    fpr, tpr, thresholds = roc_curve(y_true, risk)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if rule.kind == "youden":
        best = int(np.argmax(tpr - fpr))
    elif rule.kind == "sensitivity":
        # thresholds fall as tpr rises: the first that reaches the target is the highest.
        best = int(np.flatnonzero(tpr >= rule.target)[0])
    else:
        best = int(np.flatnonzero(1 - fpr >= rule.target)[-1])
    return float(thresholds[best])
