"""The model families: each a scikit-learn pipeline from the prepared frame to a risk."""

from __future__ import annotations

from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import Pipeline

from medserve.data.schema import Schema
from medserve.errors import ConfigError
from medserve.modeling.boosting import EarlyStoppedLGBMClassifier
from medserve.modeling.mlp import TorchMLPClassifier
from medserve.modeling.preprocess import build_preprocessor

FAMILIES = ("logistic", "lightgbm", "mlp", "ebm")
# EBM matches the others on the bundled data at ~30x their fit time: opt-in, not in auto.
AUTO_CANDIDATES = ("logistic", "lightgbm", "mlp")


def make_pipeline(family: str, schema: Schema, *, seed: int = 0) -> Pipeline:
    """An unfitted pipeline for one family (preprocessing first, so it is fitted per fold)."""
    if family == "logistic":
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
        return Pipeline([("preprocess", build_preprocessor(schema)), ("model", estimator)])
    if family == "lightgbm":
        return Pipeline(
            [
                ("preprocess", build_preprocessor(schema, impute=False, scale=False)),
                ("model", EarlyStoppedLGBMClassifier(random_state=seed)),
            ]
        )
    if family == "mlp":
        return Pipeline(
            [
                ("preprocess", build_preprocessor(schema)),
                ("model", TorchMLPClassifier(random_state=seed)),
            ]
        )
    if family == "ebm":
        from interpret.glassbox import ExplainableBoostingClassifier

        # EBM reads the typed frame itself: levels stay whole terms, missing stays missing.
        estimator = ExplainableBoostingClassifier(
            feature_names=schema.feature_names,
            feature_types=[
                "continuous" if c.numeric_encoded else "nominal" for c in schema.features
            ],
            random_state=seed,
            n_jobs=2,
        )
        return Pipeline([("preprocess", "passthrough"), ("model", estimator)])
    raise ConfigError(
        f"unknown model family '{family}'; choose auto or one of {', '.join(FAMILIES)}"
    )
