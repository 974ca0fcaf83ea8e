"""LightGBM tuned for clinical tables: shallow trees, strong regularisation, and the
number of trees chosen by early stopping inside every fit (so inside every CV fold).
Missing numbers stay missing (LightGBM routes them); scored by the fast path through the
raw Booster and explained by LightGBM's own TreeSHAP."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from medserve.data.schema import Schema
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    estimator_of,
    first_value,
    matrix_attributor,
    preprocessed,
)
from medserve.modeling.model import TrainedModel

if TYPE_CHECKING:
    import lightgbm as lgb

# Batches up to this size are scored and explained on the calling thread: waking worker
# threads costs more than a few rows of trees (0.07 vs 0.5 ms for one record on a busy
# 2-core host); rows are scored alike either way.
SINGLE_THREAD_ROWS = 64


# Tree capacities ``auto`` cross-validates (its search space), smallest first: from
# depth-2 trees, which small clinical tables favour, past LightGBM's own default of 31
# leaves. The data chooses among them, not the row count: a larger one is tried only
# while the one before it did better than its predecessor (``modeling.train``).
CAPACITIES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "4 leaves": {"num_leaves": 4, "max_depth": 2, "min_child_samples": 20, "reg_lambda": 10.0},
        "8 leaves": {"num_leaves": 8, "max_depth": 3, "min_child_samples": 20, "reg_lambda": 5.0},
        "31 leaves": {"num_leaves": 31, "max_depth": -1, "min_child_samples": 20, "reg_lambda": 1},
        "63 leaves": {"num_leaves": 63, "max_depth": -1, "min_child_samples": 10, "reg_lambda": 1},
        "127 leaves": {"num_leaves": 127, "max_depth": -1, "min_child_samples": 5, "reg_lambda": 1},
    }
)
# A capacity is worth trying only where its leaves can each hold this many training rows.
ROWS_PER_LEAF = 10


def small_data_params(n_rows: int) -> dict:
    """The estimator's capacity when it is given none (``params=None``): grows with the
    table. Training gives it one of ``CAPACITIES``, chosen by cross-validation."""
    if n_rows < 2000:
        return dict(CAPACITIES["4 leaves"])
    if n_rows < 10000:
        return dict(CAPACITIES["8 leaves"])
    return dict(CAPACITIES["31 leaves"])


def capacities_for(n_rows: int) -> Mapping[str, Mapping[str, Any]]:
    """The capacities worth cross-validating on a table of ``n_rows`` rows (at least one)."""
    fitting = {
        label: params
        for label, params in CAPACITIES.items()
        if params["num_leaves"] * ROWS_PER_LEAF <= n_rows
    }
    return fitting or dict(list(CAPACITIES.items())[:1])


class EarlyStoppedLGBMClassifier(ClassifierMixin, BaseEstimator):
    """Finds the tree count on a held-out slice, then refits on everything it was given."""

    def __init__(
        self,
        learning_rate: float = 0.05,
        max_trees: int = 2000,
        early_stopping_rounds: int = 50,
        validation_fraction: float = 0.2,
        params: dict | None = None,
        random_state: int = 0,
        # One thread: on clinical tables (up to tens of thousands of rows) a second one
        # gains little on a quiet host and loses 3x on a busy one (12k rows: 1.6 vs 4.5 s).
        n_jobs: int = 1,
    ) -> None:
        self.learning_rate = learning_rate
        self.max_trees = max_trees
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.params = params
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _booster_params(self, n_rows: int) -> dict:
        return {
            "learning_rate": self.learning_rate,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
            "verbose": -1,
            **(self.params if self.params is not None else small_data_params(n_rows)),
        }

    def fit(self, X, y):
        import lightgbm as lgb

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y).astype(int)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = X.shape[1]
        params = self._booster_params(len(y))
        if self.validation_fraction == 0:  # the tree count fixed: max_trees, no probe
            self.n_trees_ = self.max_trees
            self.booster_ = lgb.LGBMClassifier(n_estimators=self.n_trees_, **params).fit(X, y)
            return self
        X_fit, X_val, y_fit, y_val = train_test_split(
            X, y, test_size=self.validation_fraction, stratify=y, random_state=self.random_state
        )
        probe = lgb.LGBMClassifier(n_estimators=self.max_trees, **params)
        probe.fit(
            X_fit,
            y_fit,
            eval_X=X_val,
            eval_y=y_val,
            eval_metric="binary_logloss",
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        best = probe.best_iteration_ or self.max_trees
        # Refit on all rows; a few more trees since it now sees 1/(1-f) times the data.
        self.n_trees_ = max(10, int(round(best / (1 - self.validation_fraction))))
        self.booster_ = lgb.LGBMClassifier(n_estimators=self.n_trees_, **params).fit(X, y)
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.booster_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


@dataclass(frozen=True)
class BoosterRisk:
    """The raw Booster, skipping the scikit-learn wrapper's input checks."""

    booster: lgb.Booster

    def __call__(self, matrix: np.ndarray) -> np.ndarray:
        if len(matrix) <= SINGLE_THREAD_ROWS:
            return self.booster.predict(matrix, num_threads=1)
        return self.booster.predict(matrix)


@dataclass(frozen=True)
class TreeAttribution:
    """LightGBM's own TreeSHAP (``pred_contrib``): exact Shapley values of the trees."""

    booster: lgb.Booster

    method = "LightGBM pred_contrib (exact TreeSHAP)"

    def __call__(self, matrix: np.ndarray) -> Attribution:
        threads = {"num_threads": 1} if len(matrix) <= SINGLE_THREAD_ROWS else {}
        values = np.asarray(self.booster.predict(matrix, pred_contrib=True, **threads))
        return Attribution(values[:, -1].copy(), values[:, :-1])


def _booster(pipeline: Pipeline) -> lgb.Booster | None:
    estimator = estimator_of(pipeline)
    if isinstance(estimator, EarlyStoppedLGBMClassifier):
        return estimator.booster_.booster_
    return None


class LightGBMFamily:
    name = "lightgbm"
    in_auto = True
    native_missing = NativeMissing(by="LightGBM")
    libraries: Mapping[str, str] = MappingProxyType({"lightgbm": "lightgbm"})

    def variants(self, n_rows: int) -> Mapping[str, Mapping[str, Any]]:
        return capacities_for(n_rows)

    def build(
        self, schema: Schema, *, seed: int = 0, settings: Mapping[str, Any] | None = None
    ) -> Pipeline:
        # LightGBM routes missing values itself and needs no scaling.
        params = dict(settings) if settings is not None else None
        model = EarlyStoppedLGBMClassifier(random_state=seed, params=params)
        return preprocessed(schema, model, impute=False, scale=False)

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> BoosterRisk | None:
        booster = _booster(pipeline)
        return BoosterRisk(booster) if booster is not None else None

    def attribution(self, model: TrainedModel) -> Attributor | None:
        booster = _booster(model.pipeline)
        if booster is None:
            return None
        return matrix_attributor(model.pipeline, TreeAttribution(booster), TreeAttribution.method)

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """Refitting grows as many trees as this fit chose, without early stopping."""
        trees = getattr(estimator_of(pipeline), "n_trees_", None)
        twin = clone(pipeline)
        if trees is not None:
            twin.set_params(model__max_trees=int(trees), model__validation_fraction=0.0)
        return twin

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        estimator = estimator_of(pipeline)
        trees = getattr(estimator, "n_trees_", None)
        if trees is None:
            return {}
        leaves = estimator.booster_.get_params().get("num_leaves")
        return {"n_trees": first_value(trees), "num_leaves": leaves}


FAMILY = LightGBMFamily()
