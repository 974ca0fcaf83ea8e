"""Scoring JSON records without pandas: the records encoded as the fitted preprocess step
would (``scoring.encoding``), then the estimator as its family compiles it to a function
of that matrix (``Family.compile``: coefficients, trees, network), then the recalibration.

The reference path, ``TrainedModel.predict_risk``, spends ~7 ms per one-row DataFrame in
pandas and scikit-learn input checks; the estimators themselves need well under 1 ms. The
fast path gives the same risks (tests hold it to the reference on real data); where the
family does not compile (the EBM) or is not installed here, it falls back to the reference,
so the service can always use a ``FastScorer``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from medserve.core.risk import risk_logit
from medserve.modeling.families import Composite, RawRisk, estimator_of, find_family
from medserve.modeling.model import TrainedModel
from medserve.modeling.recalibration import apply_recalibration
from medserve.scoring.encoding import (
    Encoding,
    Record,
    checked_records,
    encoding_of,
    records_frame,
)

# Uncalibrated risk → the model's final risk (identity where it has no calibrator).
Recalibration = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PlattRecalibration:
    """``apply_recalibration`` with its LogisticRegression as numpy (0.3 ms → µs per call):
    expit(logit(risk)·coef + intercept), as LogisticRegression.predict_proba computes it."""

    coef: np.ndarray  # (1, 1)
    intercept: np.ndarray  # (1,)

    def __call__(self, risk: np.ndarray) -> np.ndarray:
        logits = risk_logit(risk).reshape(-1, 1)
        return expit((logits @ self.coef.T + self.intercept).reshape(-1))


@dataclass(frozen=True)
class FastScorer:
    """Risk for JSON records straight from the model's fitted parameters.

    Records should pass ``validate_records`` first; an absent field is scored as not
    measured, and a value that cannot be read raises SchemaError."""

    model: TrainedModel
    encoding: Encoding | None
    raw_risk: RawRisk | None
    recalibrate: Recalibration
    # A blend: its members' own scorers, combined in log-odds (no one matrix to encode).
    composite: CompositeRisk | None = None

    @classmethod
    def from_model(cls, model: TrainedModel) -> FastScorer:
        composite = CompositeRisk.of(model)
        if composite is not None:
            return cls(model, None, None, _recalibration_of(model.calibrator), composite)
        encoding = encoding_of(model)
        raw_risk = _raw_risk_of(model, encoding) if encoding is not None else None
        recalibrate = _recalibration_of(model.calibrator)
        if raw_risk is None:
            return cls(model, None, None, recalibrate)
        return cls(model, encoding, raw_risk, recalibrate)

    @property
    def exact_fast_path(self) -> bool:
        """False where the scorer falls back to the reference pipeline (EBM, unknown steps)."""
        return self.raw_risk is not None

    def matrix(self, records: Sequence[Record]) -> np.ndarray:
        """The model's encoded input matrix, as the fitted preprocess step would build it."""
        if self.encoding is None:
            raise ValueError(
                f"the {self.model.family} model has no fast encoding; use risk(), which "
                "falls back to the reference pipeline"
            )
        return self.encoding.matrix(checked_records(records))

    def risk(self, records: Sequence[Record]) -> np.ndarray:
        """Calibrated risk of the event for each record, equal to ``model.predict_risk``."""
        records = checked_records(records)
        if not records:
            return np.empty(0)
        if self.composite is not None:
            return np.asarray(self.recalibrate(self.composite(records)), dtype=float)
        if self.encoding is None or self.raw_risk is None:
            return self.model.predict_risk(records_frame(self.model.schema, records))
        return self.risk_of_matrix(self.encoding.matrix(records))

    def risk_of_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated risk for rows already encoded by ``matrix()``."""
        if self.raw_risk is None:
            raise ValueError(f"the {self.model.family} model has no fast path; use risk()")
        return np.asarray(self.recalibrate(self.raw_risk(matrix)), dtype=float)


@dataclass(frozen=True)
class CompositeRisk:
    """A composite model's uncalibrated risk: ``expit(intercept + Σ weight · logit(risk))``
    over its members, each scored by its own FastScorer (the fast path where it has one)."""

    intercept: float
    members: tuple[tuple[float, FastScorer], ...]

    @classmethod
    def of(cls, model: TrainedModel) -> CompositeRisk | None:
        family = find_family(model.family)
        found = family.components(model) if isinstance(family, Composite) else None
        if found is None:
            return None
        intercept, components = found
        members = tuple((c.weight, FastScorer.from_model(c.model)) for c in components)
        return cls(intercept, members)

    def __call__(self, records: Sequence[Record]) -> np.ndarray:
        z = np.full(len(records), self.intercept)
        for weight, scorer in self.members:
            z += weight * risk_logit(scorer.risk(records))
        return expit(z)


def _raw_risk_of(model: TrainedModel, encoding: Encoding) -> RawRisk | None:
    """The model's family compiles its estimator to a function of the encoded matrix, where
    the family is installed here and the estimator reads the matrix the encoding builds."""
    family = find_family(model.family)
    estimator = estimator_of(model.pipeline)
    if family is None or getattr(estimator, "n_features_in_", None) != encoding.width:
        return None
    return family.compile(model.pipeline, encoding)


def _recalibration_of(calibrator: LogisticRegression | None) -> Recalibration:
    """Platt scaling mirrored in numpy where it is the usual one-input LogisticRegression;
    the reference function for anything else."""
    if isinstance(calibrator, LogisticRegression) and calibrator.coef_.shape == (1, 1):
        return PlattRecalibration(calibrator.coef_, calibrator.intercept_)
    return partial(apply_recalibration, calibrator)
