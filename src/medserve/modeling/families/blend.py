"""A blend of cross-validated families in log-odds: ``intercept + Σ wₖ · logit(riskₖ)``,
with non-negative weights fitted on out-of-fold predictions (a stack whose second level
is a logistic regression on the members' log-odds).

Each member keeps its own pipeline (its preprocessing, its missing-value handling), so a
blend of models of any families is itself a model. Sums of additive explanations are
additive: a blend's contribution of a column is the weighted sum of its members', and its
base value the intercept plus the weighted members' bases, so explanations stay exact.
The fast path scores each member its own way (``Composite``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit, log_expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from medserve.core.risk import risk_logit
from medserve.data.schema import Schema
from medserve.errors import ConfigError, DataError
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    Component,
    EncodedInput,
    Freezable,
    NativeMissing,
    RawRisk,
    auto_candidates,
    estimator_of,
    find_family,
    make_pipeline,
)
from medserve.modeling.model import TrainedModel

NAME = "blend"
# Weights below this are dropped from the blend (the member is not kept or scored).
MIN_WEIGHT = 1e-3
# A light ridge on the weights: near-collinear members share weight instead of
# trading large opposite ones.
RIDGE = 1e-3


@dataclass(frozen=True)
class Member:
    """One blended model: the candidate's label, its family and its (fitted) pipeline."""

    label: str
    family: str
    pipeline: Pipeline


def fit_weights(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Intercept and non-negative weights minimising the log-loss of
    ``expit(intercept + logits @ weights)`` (``logits``: rows × members)."""
    n, k = logits.shape
    y = np.asarray(y, dtype=np.float64)

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = theta[0] + logits @ theta[1:]
        value = -np.mean(y * log_expit(z) + (1 - y) * log_expit(-z))
        residual = (expit(z) - y) / n
        gradient = np.concatenate([[residual.sum()], logits.T @ residual])
        value += RIDGE * float(theta[1:] @ theta[1:])
        gradient[1:] += 2 * RIDGE * theta[1:]
        return value, gradient

    start = np.concatenate([[0.0], np.full(k, 1.0 / k)])
    bounds = [(None, None)] + [(0.0, None)] * k
    fitted = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    weights = np.where(fitted.x[1:] < MIN_WEIGHT, 0.0, fitted.x[1:])
    return float(fitted.x[0]), weights


def cross_fitted_risk(logits: np.ndarray, y: np.ndarray, folds: Sequence[np.ndarray]) -> np.ndarray:
    """The blend's out-of-fold risk: each fold's rows blended with weights fitted on the
    other folds' rows only, so that the weights never saw the rows they score."""
    risk = np.zeros(len(y))
    for valid in folds:
        train = np.setdiff1d(np.arange(len(y)), valid)
        intercept, weights = fit_weights(logits[train], y[train])
        risk[valid] = expit(intercept + logits[valid] @ weights)
    return risk


class LogOddsBlend(ClassifierMixin, BaseEstimator):
    """``members`` blended in log-odds. ``fit`` refits every member on the rows it is given;
    with ``weights=None`` it first fits the weights on ``folds``-fold out-of-fold
    predictions of the members, otherwise it keeps the weights it was given."""

    def __init__(
        self,
        members: tuple[Member, ...] = (),
        weights: tuple[float, ...] | None = None,
        intercept: float = 0.0,
        folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.members = members
        self.weights = weights
        self.intercept = intercept
        self.folds = folds
        self.random_state = random_state

    def fit(self, X, y):
        y = np.asarray(y).astype(int)
        if not self.members:
            raise ConfigError("a blend needs at least one member")
        if self.weights is None:
            splitter = StratifiedKFold(self.folds, shuffle=True, random_state=self.random_state)
            logits = np.zeros((len(y), len(self.members)))
            for train, valid in splitter.split(X, y):
                for j, member in enumerate(self.members):
                    fitted = clone(member.pipeline).fit(X.iloc[train], y[train])
                    logits[valid, j] = risk_logit(fitted.predict_proba(X.iloc[valid])[:, 1])
            intercept, weights = fit_weights(logits, y)
        else:
            intercept, weights = self.intercept, np.asarray(self.weights, dtype=np.float64)
        kept = [(m, float(w)) for m, w in zip(self.members, weights, strict=True) if w > 0]
        if not kept:
            raise DataError(
                "no member of the blend predicts the outcome better than its overall rate "
                "(every weight is 0): the table shows no signal these families can use"
            )
        refitted = [Member(m.label, m.family, clone(m.pipeline).fit(X, y)) for m, _ in kept]
        self._fitted(refitted, [w for _, w in kept], intercept)
        return self

    def _fitted(self, members: Sequence[Member], weights: Sequence[float], intercept: float):
        self.members_ = tuple(members)
        self.weights_ = np.asarray(weights, dtype=np.float64)
        self.intercept_ = float(intercept)
        self.classes_ = np.array([0, 1])

    def decision_function(self, X) -> np.ndarray:
        check_is_fitted(self, "members_")
        z = np.full(len(X), self.intercept_)
        for member, weight in zip(self.members_, self.weights_, strict=True):
            z += weight * risk_logit(member.pipeline.predict_proba(X)[:, 1])
        return z

    def predict_proba(self, X) -> np.ndarray:
        risk = expit(self.decision_function(X))
        return np.column_stack([1.0 - risk, risk])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def blend_pipeline(blend: LogOddsBlend) -> Pipeline:
    """The model's pipeline: the prepared frame goes to each member's own pipeline."""
    return Pipeline([("preprocess", "passthrough"), ("model", blend)])


def weighted_blend(
    members: Sequence[Member], weights: Sequence[float], intercept: float, *, seed: int = 0
) -> Pipeline:
    """An unfitted blend of unfitted ``members`` whose weights are already chosen: fitting
    it fits the members (those of weight > 0) and keeps the weights."""
    kept = [(m, float(w)) for m, w in zip(members, weights, strict=True) if w > 0]
    blend = LogOddsBlend(
        tuple(m for m, _ in kept), tuple(w for _, w in kept), intercept, random_state=seed
    )
    return blend_pipeline(blend)


def _blend_of(model: TrainedModel) -> LogOddsBlend | None:
    estimator = estimator_of(model.pipeline)
    return (
        estimator
        if isinstance(estimator, LogOddsBlend) and hasattr(estimator, "members_")
        else None
    )


def _member_model(model: TrainedModel, member: Member) -> TrainedModel:
    return TrainedModel(
        family=member.family,
        schema=model.schema,
        pipeline=member.pipeline,
        threshold=model.threshold,
        threshold_rule=model.threshold_rule,
        background=model.background,
    )


@dataclass(frozen=True)
class BlendAttribution:
    """The members' attributions, each on its own inputs, weighted and laid side by side
    (the parts list each member's inputs in turn)."""

    intercept: float
    members: tuple[tuple[float, Attributor, Pipeline], ...]

    def __call__(self, frame: pd.DataFrame) -> Attribution:
        base = np.full(len(frame), self.intercept)
        blocks = []
        for weight, attributor, pipeline in self.members:
            inputs = (
                pipeline.named_steps["preprocess"].transform(frame)
                if attributor.reads_matrix
                else frame
            )
            attribution = attributor.attribute(inputs)
            contributions = _as_blended(attribution)
            base = base + weight * attribution.base
            blocks.append(weight * contributions)
        return Attribution(base, np.hstack(blocks))


def _as_blended(attribution: Attribution) -> np.ndarray:
    """A member's contributions as the blend counts them. The blend reads each member's
    log-odds through ``risk_logit``, which holds a risk within 1e-7 of 0 or 1 at ±16.1;
    where a member's own log-odds lie beyond, its contributions are scaled so that they
    add up to the value the blend used (their proportions kept)."""
    contributions = attribution.contributions
    total = contributions.sum(axis=1)
    own = attribution.base + total
    used = risk_logit(expit(own))  # what the blend's predict_proba reads of this member
    beyond = np.abs(own - used) > 1e-9
    if not np.any(beyond):
        return contributions
    scale = np.ones(len(total))
    moved = beyond & (np.abs(total) > 0)
    scale[moved] = (used[moved] - attribution.base[moved]) / total[moved]
    return contributions * scale[:, None]


class BlendFamily:
    name = NAME
    in_auto = False  # ``auto`` builds a blend of its candidates itself, from their CV
    native_missing: NativeMissing | None = None  # each member handles missing its own way
    libraries: Mapping[str, str] = MappingProxyType({})  # the members' families name theirs

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        """A blend of the ``auto`` families, its weights fitted by inner CV when fitted."""
        members = tuple(
            Member(name, name, make_pipeline(name, schema, seed=seed))
            for name in auto_candidates(schema)
        )
        return blend_pipeline(LogOddsBlend(members, random_state=seed))

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        return None  # the fast path scores its components one by one

    def components(self, model: TrainedModel) -> tuple[float, tuple[Component, ...]] | None:
        blend = _blend_of(model)
        if blend is None:
            return None
        parts = tuple(
            Component(float(weight), _member_model(model, member))
            for member, weight in zip(blend.members_, blend.weights_, strict=True)
        )
        return blend.intercept_, parts

    def attribution(self, model: TrainedModel) -> Attributor | None:
        found = self.components(model)
        if found is None:
            return None
        intercept, components = found
        members = []
        for component in components:
            family = find_family(component.model.family)
            attributor = family.attribution(component.model) if family is not None else None
            if attributor is None:
                return None
            members.append((component.weight, attributor, component.model.pipeline))
        method = "log-odds blend of exact attributions: " + "; ".join(
            f"{weight:.2f} × {attributor.method}" for weight, attributor, _ in members
        )
        parts = tuple(part for _, attributor, _ in members for part in attributor.parts)
        return Attributor(
            BlendAttribution(intercept, tuple(members)), method, parts, reads_matrix=False
        )

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """Refitting refits each member with its own settings fixed, the weights kept."""
        blend = estimator_of(pipeline)
        if not isinstance(blend, LogOddsBlend) or not hasattr(blend, "members_"):
            return clone(pipeline)
        members = []
        for member in blend.members_:
            family = find_family(member.family)
            twin = (
                family.frozen(member.pipeline)
                if isinstance(family, Freezable)
                else clone(member.pipeline)
            )
            members.append(Member(member.label, member.family, twin))
        return weighted_blend(members, blend.weights_, blend.intercept_, seed=blend.random_state)

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        """The members as one line each: weight × candidate, with what its fit chose."""
        blend = estimator_of(pipeline)
        if not isinstance(blend, LogOddsBlend) or not hasattr(blend, "members_"):
            return {}
        members = []
        for member, weight in zip(blend.members_, blend.weights_, strict=True):
            family = find_family(member.family)
            fitted = family.fitted_params(member.pipeline) if family is not None else {}
            chose = ", ".join(f"{key} {_plain(value)}" for key, value in fitted.items())
            members.append(f"{weight:.3f} × {member.label}" + (f" ({chose})" if chose else ""))
        return {"intercept": blend.intercept_, "weights": "; ".join(members)}


def _plain(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


FAMILY = BlendFamily()
