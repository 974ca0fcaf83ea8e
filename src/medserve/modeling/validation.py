"""Internal validation: how the trained model's performance is estimated.

* ``holdout``: a stratified test split is held out; the model is fitted without it and
  measured on it.
* ``cv``: the model is measured on the out-of-fold predictions of the cross-validation
  that chose it (every row predicted by a model that did not see it), then refitted on
  all rows.
* ``bootstrap``: Harrell's optimism-corrected bootstrap (Steyerberg, *Clinical Prediction
  Models*, 2nd ed., ch. 17): the model refitted on all rows is measured on them (the
  apparent performance); the same specification is refitted on each bootstrap resample,
  measured on that resample and on the original rows, and the mean difference (the
  optimism) is subtracted from the apparent performance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline

from medserve.core.risk import risk_logit
from medserve.errors import ConfigError, DataError, option

VALIDATION_METHODS = ("holdout", "cv", "bootstrap")
DEFAULT_VALIDATION = "cv"
BOOTSTRAP_RESAMPLES = 50
# A resample of a table with fewer rows than this in its smaller outcome class too often
# holds too few of them to refit a model and measure it.
BOOTSTRAP_MIN_EVENTS = 20


def check_method(method: str) -> None:
    if method not in VALIDATION_METHODS:
        raise ConfigError(
            f"unknown validation method '{method}' ({option('validation')}); choose one of "
            f"{', '.join(VALIDATION_METHODS)}"
        )


def check_bootstrappable(y: np.ndarray) -> None:
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < BOOTSTRAP_MIN_EVENTS:
        raise DataError(
            f"the table is too small to bootstrap ({option('validation')} bootstrap): its "
            f"smaller outcome class has {minority} rows, and resamples of it would often "
            f"hold too few to refit the model and measure it (medserve needs at least "
            f"{BOOTSTRAP_MIN_EVENTS}); use {option('validation')} cv"
        )


@dataclass(frozen=True)
class Optimism:
    """One metric: apparent (the final model on its own training rows), the bootstrap's
    mean optimism, and apparent − optimism."""

    metric: str
    apparent: float
    optimism: float

    @property
    def corrected(self) -> float:
        return self.apparent - self.optimism


@dataclass
class Validation:
    """What the performance figures are measured on, and how."""

    method: str
    rows: pd.DataFrame  # the rows the figures are measured on
    y: np.ndarray
    risk: np.ndarray  # the risk they are measured with
    n_final: int  # rows the registered model was fitted on
    folds: int
    resamples: int | None = None
    optimism: list[Optimism] = field(default_factory=list)


def _slope(y: np.ndarray, risk: np.ndarray) -> float:
    """Calibration slope: the coefficient of logit(risk) in an unpenalised logistic fit, as
    ``evaluation.calibration`` fits it (C=inf is scikit-learn's "no penalty")."""
    model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=1e-12, max_iter=100)
    fit = model.fit(risk_logit(risk).reshape(-1, 1), y)
    return float(fit.coef_[0, 0])


SCORES: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "auroc": lambda y, risk: float(roc_auc_score(y, risk)),
    "brier": lambda y, risk: float(brier_score_loss(y, risk)),
    "calibration_slope": _slope,
}


def bootstrap_optimism(
    pipeline: Pipeline,
    recalibrate: Callable[[np.ndarray], np.ndarray],
    X: pd.DataFrame,
    y: np.ndarray,
    apparent_risk: np.ndarray,
    *,
    resamples: int,
    seed: int,
    tick: Callable[[str], None],
) -> list[Optimism]:
    """Harrell's optimism of each of ``SCORES`` for the (unfitted) ``pipeline``.

    ``apparent_risk`` is the final model's risk on ``X``; each refit's risks go through
    ``recalibrate`` (the final model's recalibration, fixed like its other settings), so
    that apparent and refitted figures are of the same kind of model. Resamples that draw
    a single outcome class are drawn again."""
    rng = np.random.default_rng(seed)
    differences: dict[str, list[float]] = {name: [] for name in SCORES}
    done = 0
    while done < resamples:
        index = rng.integers(0, len(y), len(y))
        if len(np.unique(y[index])) < 2:
            continue
        fitted = clone(pipeline).fit(X.iloc[index], y[index])
        on_resample = recalibrate(fitted.predict_proba(X.iloc[index])[:, 1])
        on_original = recalibrate(fitted.predict_proba(X)[:, 1])
        for name, score in SCORES.items():
            differences[name].append(score(y[index], on_resample) - score(y, on_original))
        done += 1
        tick("bootstrapping the optimism")
    return [
        Optimism(name, SCORES[name](y, apparent_risk), float(np.mean(differences[name])))
        for name in SCORES
    ]
