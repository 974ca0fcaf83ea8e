"""Explanations on the model's raw input columns: the family's attribution over encoded
columns, summed back per raw column (a level's one-hot parts, a number's missing
indicator), then carried through the model's recalibration, all in log-odds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression

from medserve.errors import ExplanationUnavailable
from medserve.explain.attribution import (
    Attribution,
    DeepAttribution,
    LinearAttribution,
    TermAttribution,
    TreeAttribution,
)
from medserve.modeling.boosting import EarlyStoppedLGBMClassifier
from medserve.modeling.mlp import TorchMLPClassifier
from medserve.modeling.model import TrainedModel
from medserve.modeling.preprocess import encoded_sources

SPACE = "log-odds"


@dataclass(frozen=True)
class Explanations:
    """A batch of explained records: ``base_value + contributions.sum(axis=1)`` is each
    record's log-odds of the event, exactly the model's risk on the logit scale."""

    space: str
    method: str
    columns: tuple[str, ...]
    base_value: np.ndarray  # (records,)
    contributions: np.ndarray  # (records, columns)

    @property
    def log_odds(self) -> np.ndarray:
        return self.base_value + self.contributions.sum(axis=1)

    @property
    def risk(self) -> np.ndarray:
        return expit(self.log_odds)

    def __len__(self) -> int:
        return len(self.base_value)

    def record(self, index: int, summary: str) -> dict:
        """One record's explanation as the HTTP API and `predict --explain` write it."""
        return {
            "space": self.space,
            "method": self.method,
            "base_value": float(self.base_value[index]),
            "contributions": dict(
                zip(self.columns, self.contributions[index].tolist(), strict=True)
            ),
            "summary": summary,
        }


class Explainer:
    """Built once per loaded model; explains prepared frames or encoded matrices."""

    def __init__(self, model: TrainedModel) -> None:
        self.columns = tuple(model.schema.feature_names)
        self.schema = model.schema
        preprocess = model.pipeline.named_steps.get("preprocess")
        estimator = model.pipeline.named_steps["model"]
        self._encode: Callable[[pd.DataFrame], object]
        if isinstance(preprocess, ColumnTransformer):
            self._encode = preprocess.transform
            self._attribute = _encoded_attribution(model, preprocess, estimator)
            sources = encoded_sources(preprocess)
            weights = [{source: 1.0} for source in sources]
        elif model.family == "ebm":
            self._encode = lambda prepared: prepared
            self._attribute = TermAttribution(estimator)
            names = list(estimator.feature_names_in_)
            weights = [
                {names[f]: 1.0 / len(term) for f in term} for term in estimator.term_features_
            ]
        else:
            raise ExplanationUnavailable(f"no explainer for the {model.family} family")
        self._grouping = np.zeros((len(weights), len(self.columns)))
        position = {name: j for j, name in enumerate(self.columns)}
        for i, parts in enumerate(weights):
            for name, weight in parts.items():
                self._grouping[i, position[name]] = weight
        self._scale, self._shift = _platt_of(model.calibrator)
        self.method = self._attribute.method + (
            ", carried through Platt recalibration" if self._scale != 1.0 else ""
        )

    def explain_frame(self, frame: pd.DataFrame) -> Explanations:
        """Explain raw records (validated and typed by the schema first)."""
        prepared = self.schema.prepare(frame)
        return self._explain(self._attribute(self._encode(prepared)))

    def explain_matrix(self, matrix: np.ndarray) -> Explanations:
        """Explain records already encoded as the fitted preprocess step would (fast path)."""
        if isinstance(self._attribute, TermAttribution):
            raise ValueError("an EBM reads the prepared frame: use explain_frame")
        return self._explain(self._attribute(matrix))

    @property
    def takes_matrix(self) -> bool:
        return not isinstance(self._attribute, TermAttribution)

    def _explain(self, attribution: Attribution) -> Explanations:
        contributions = attribution.contributions @ self._grouping
        return Explanations(
            space=SPACE,
            method=self.method,
            columns=self.columns,
            base_value=self._scale * attribution.base + self._shift,
            contributions=self._scale * contributions,
        )


def _encoded_attribution(model: TrainedModel, preprocess: ColumnTransformer, estimator):
    if isinstance(estimator, EarlyStoppedLGBMClassifier):
        return TreeAttribution(estimator.booster_.booster_)
    if model.background is None:
        raise ExplanationUnavailable(
            f"this {model.family} model was stored without a background sample (trained "
            "before explanations existed); retrain it to explain its predictions"
        )
    background = np.asarray(preprocess.transform(model.schema.prepare(model.background)))
    if isinstance(estimator, LogisticRegression) and estimator.coef_.shape[0] == 1:
        return LinearAttribution(
            coef=estimator.coef_[0].astype(np.float64),
            intercept=float(estimator.intercept_[0]),
            reference=background.mean(axis=0),
        )
    if isinstance(estimator, TorchMLPClassifier):
        return DeepAttribution(estimator.network_, background)
    raise ExplanationUnavailable(f"no explainer for the {model.family} family")


def _platt_of(calibrator: LogisticRegression | None) -> tuple[float, float]:
    """Platt scaling is linear in log-odds: calibrated = scale × raw + shift.

    (Raw log-odds beyond ±16 are clipped before scaling; risks there are 0 or 1.)"""
    if calibrator is None:
        return 1.0, 0.0
    return float(calibrator.coef_[0, 0]), float(calibrator.intercept_[0])
