"""Each family's own exact attribution of its log-odds to the columns it reads.

All three work in the estimator's log-odds space, before any recalibration, and are
additive: ``base + contributions.sum(axis=1)`` is the estimator's log-odds for the row."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch

# LightGBM explains batches up to this size on the calling thread (as the fast path scores).
SINGLE_THREAD_ROWS = 64


@dataclass(frozen=True)
class Attribution:
    """Per row: where the log-odds start (``base``) and what each input adds."""

    base: np.ndarray  # (rows,)
    contributions: np.ndarray  # (rows, inputs)


@dataclass(frozen=True)
class LinearAttribution:
    """Logistic regression: coefficient × (value − background mean), exact by construction
    (the interventional SHAP values of a linear model, as shap.LinearExplainer gives)."""

    coef: np.ndarray  # (inputs,)
    intercept: float
    reference: np.ndarray  # (inputs,) mean encoded background row
    method: str = "exact linear attribution: coefficient × (value − training background mean)"

    def __call__(self, matrix: np.ndarray) -> Attribution:
        contributions = (matrix - self.reference) * self.coef
        base = self.intercept + float(self.reference @ self.coef)
        return Attribution(np.full(len(matrix), base), contributions)


@dataclass(frozen=True)
class TreeAttribution:
    """LightGBM's own TreeSHAP (``pred_contrib``): exact Shapley values of the trees."""

    booster: lgb.Booster
    method: str = "LightGBM pred_contrib (exact TreeSHAP)"

    def __call__(self, matrix: np.ndarray) -> Attribution:
        threads = {"num_threads": 1} if len(matrix) <= SINGLE_THREAD_ROWS else {}
        values = np.asarray(self.booster.predict(matrix, pred_contrib=True, **threads))
        return Attribution(values[:, -1].copy(), values[:, :-1])


@dataclass
class DeepAttribution:
    """The MLP through SHAP's DeepExplainer (DeepLIFT rescale rule), in float64 so the
    contributions add up to the network's log-odds to ~1e-12."""

    network: torch.nn.Module
    background: np.ndarray  # (rows, inputs) encoded background sample
    method: str = "SHAP DeepExplainer (DeepLIFT) against a training background sample"
    _explainer: Any = field(default=None, init=False, repr=False)
    _base: float = field(default=0.0, init=False, repr=False)

    def __call__(self, matrix: np.ndarray) -> Attribution:
        import shap  # a 2-second import: only MLP explanations need it

        if self._explainer is None:
            network = copy.deepcopy(self.network).double().eval()
            reference = torch.from_numpy(np.asarray(self.background, dtype=np.float64))
            self._explainer = shap.DeepExplainer(network, reference)
            self._base = float(np.ravel(self._explainer.expected_value)[0])
        values = self._explainer.shap_values(
            torch.from_numpy(np.asarray(matrix, dtype=np.float64)), check_additivity=False
        )
        contributions = np.asarray(values, dtype=np.float64).reshape(len(matrix), -1)
        return Attribution(np.full(len(matrix), self._base), contributions)


@dataclass(frozen=True)
class TermAttribution:
    """EBM: the additive terms' own scores (``eval_terms``) on the prepared frame."""

    ebm: Any  # interpret's ExplainableBoostingClassifier
    method: str = "EBM term scores (exact; a pair term is split equally between its columns)"

    def __call__(self, frame: pd.DataFrame) -> Attribution:
        scores = np.asarray(self.ebm.eval_terms(frame), dtype=np.float64)
        base = float(np.ravel(self.ebm.intercept_)[0])
        return Attribution(np.full(len(frame), base), scores)
