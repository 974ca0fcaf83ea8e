"""Logistic regression: L2 strength chosen by inner CV, imputed and scaled inputs; scored by
the fast path as expit(X·coef + intercept) and explained exactly against the background."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.pipeline import Pipeline

from medserve.data.schema import Schema
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    encoded_background,
    estimator_of,
    first_value,
    matrix_attributor,
    preprocessed,
)
from medserve.modeling.model import TrainedModel


@dataclass(frozen=True)
class LinearRisk:
    """expit(X·coef + intercept), as LogisticRegression.predict_proba computes it."""

    coef: np.ndarray  # (1, inputs)
    intercept: np.ndarray  # (1,)

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        return expit((matrix @ self.coef.T + self.intercept).reshape(-1))


@dataclass(frozen=True)
class LinearAttribution:
    """Coefficient × (value − background mean), exact by construction (the interventional
    SHAP values of a linear model, as shap.LinearExplainer gives)."""

    coef: np.ndarray  # (inputs,)
    intercept: float
    reference: np.ndarray  # (inputs,) mean encoded background row

    method = "exact linear attribution: coefficient × (value − training background mean)"

    def __call__(self, matrix: np.ndarray) -> Attribution:
        contributions = (matrix - self.reference) * self.coef
        base = self.intercept + float(self.reference @ self.coef)
        return Attribution(np.full(len(matrix), base), contributions)


def _binary_linear(pipeline: Pipeline) -> LogisticRegression | None:
    estimator = estimator_of(pipeline)
    if isinstance(estimator, LogisticRegression) and estimator.coef_.shape[0] == 1:
        return estimator
    return None


class LogisticFamily:
    name = "logistic"
    in_auto = True
    native_missing: NativeMissing | None = None
    libraries: Mapping[str, str] = MappingProxyType({})  # scikit-learn only

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        # L2 strength picked by inner 5-fold CV on log-loss: well regularised on small data.
        # Newton-Cholesky: exact and fast when rows far outnumber encoded columns.
        estimator = LogisticRegressionCV(
            Cs=12,
            cv=5,
            scoring="neg_log_loss",
            solver="newton-cholesky",
            max_iter=500,
            random_state=seed,
        )
        return preprocessed(schema, estimator)

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> LinearRisk | None:
        estimator = _binary_linear(pipeline)
        if estimator is None:
            return None
        return LinearRisk(estimator.coef_, estimator.intercept_)

    def attribution(self, model: TrainedModel) -> Attributor | None:
        estimator = _binary_linear(model.pipeline)
        if estimator is None:
            return None
        attribute = LinearAttribution(
            coef=estimator.coef_[0].astype(np.float64),
            intercept=float(estimator.intercept_[0]),
            reference=encoded_background(model).mean(axis=0),
        )
        return matrix_attributor(model.pipeline, attribute, LinearAttribution.method)

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """Refitting keeps the L2 strength this fit chose (no inner CV)."""
        strength = getattr(estimator_of(pipeline), "C_", None)
        twin = clone(pipeline)
        if strength is not None:
            estimator = LogisticRegression(
                C=first_value(strength), solver="newton-cholesky", max_iter=500
            )
            twin.set_params(model=estimator)
        return twin

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        strength = getattr(estimator_of(pipeline), "C_", None)
        return {} if strength is None else {"C": first_value(strength)}


FAMILY = LogisticFamily()
