"""The Explainable Boosting Machine (interpret): a glass-box additive model that reads the
typed frame itself, so levels stay whole terms and missing stays missing. Opt-in: it
matches the others on the bundled data at ~30x their fit time, so ``auto`` skips it.
No fast path (it reads the frame, not the encoded matrix); explained by its own terms."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from medserve.data.schema import Schema
from medserve.errors import ConfigError, option
from medserve.modeling.families.base import (
    Attribution,
    Attributor,
    EncodedInput,
    NativeMissing,
    RawRisk,
    estimator_of,
)
from medserve.modeling.model import TrainedModel


@dataclass(frozen=True)
class TermAttribution:
    """The additive terms' own scores (``eval_terms``) on the prepared frame."""

    ebm: Any  # interpret's ExplainableBoostingClassifier

    method = "EBM term scores (exact; a pair term is split equally between its columns)"

    def __call__(self, frame: pd.DataFrame) -> Attribution:
        scores = np.asarray(self.ebm.eval_terms(frame), dtype=np.float64)
        base = float(np.ravel(self.ebm.intercept_)[0])
        return Attribution(np.full(len(frame), base), scores)


class EBMFamily:
    name = "ebm"
    in_auto = False
    native_missing = NativeMissing(by="the EBM", levels=True)
    libraries: Mapping[str, str] = MappingProxyType({"interpret-core": "interpret"})

    def build(self, schema: Schema, *, seed: int = 0) -> Pipeline:
        from interpret.glassbox import ExplainableBoostingClassifier

        if any(spec.type == "text" for spec in schema.features):
            raise ConfigError(
                "the ebm family reads the table as it is and cannot read notes; train it "
                f"without {option('text')}, or choose the text family for the notes"
            )
        # The typed frame goes in as it is: levels stay whole terms, missing stays missing.
        estimator = ExplainableBoostingClassifier(
            feature_names=schema.feature_names,
            feature_types=[
                "continuous" if c.numeric_encoded else "nominal" for c in schema.features
            ],
            random_state=seed,
            n_jobs=2,
        )
        return Pipeline([("preprocess", "passthrough"), ("model", estimator)])

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        return None  # it reads the prepared frame: the service scores it by the pipeline

    def attribution(self, model: TrainedModel) -> Attributor | None:
        from interpret.glassbox import ExplainableBoostingClassifier

        estimator = estimator_of(model.pipeline)
        if not isinstance(estimator, ExplainableBoostingClassifier):
            return None
        names = list(estimator.feature_names_in_)
        parts = tuple(
            {names[f]: 1.0 / len(term) for f in term} for term in estimator.term_features_
        )
        return Attributor(
            TermAttribution(estimator), TermAttribution.method, parts, reads_matrix=False
        )

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        """Not offered: the EBM early-stops each of its bags on an internal split, which a
        bootstrap resample's repeated rows would leak into, and it has no setting to fit a
        fixed number of rounds per term."""
        raise ConfigError(
            f"the EBM cannot be refitted on bootstrap resamples ({option('validation')} "
            "bootstrap): its own early stopping would see copies of the rows it fits; use "
            f"{option('validation')} cv"
        )

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        return {}


FAMILY = EBMFamily()
