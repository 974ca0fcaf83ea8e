"""TrainedModel: raw records in, calibrated risk out, with everything needed to serve it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from medserve.data.schema import Schema
from medserve.modeling.recalibration import apply_recalibration

BACKGROUND_ROWS = 100


@dataclass
class TrainedModel:
    """One fitted pipeline plus its schema, optional recalibration and threshold."""

    family: str
    schema: Schema
    pipeline: Pipeline
    threshold: float
    threshold_rule: str
    calibrator: LogisticRegression | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # Up to BACKGROUND_ROWS prepared training rows: the reference population that
    # explanations measure contributions against (kept inside the encrypted artifact).
    background: pd.DataFrame | None = None

    def predict_risk(self, frame: pd.DataFrame) -> np.ndarray:
        """Probability of the event for each raw record (validated against the schema)."""
        prepared = self.schema.prepare(frame)
        risk = self.pipeline.predict_proba(prepared)[:, 1]
        return np.asarray(apply_recalibration(self.calibrator, risk), dtype=float)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        risk = self.predict_risk(frame)
        return np.column_stack([1.0 - risk, risk])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (self.predict_risk(frame) >= self.threshold).astype(int)
