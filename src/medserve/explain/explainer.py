"""Explanations on the model's raw input columns: the family's attribution over its
estimator's inputs, summed back per raw column (a level's one-hot parts, a number's
missing indicator), then carried through the model's recalibration, all in log-odds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit

from medserve.errors import ExplanationUnavailable
from medserve.explain.attribution import platt_of, raw_column_grouping
from medserve.explain.sentences import METHOD as SENTENCES_METHOD
from medserve.explain.sentences import SentenceEffect, sentence_effects
from medserve.modeling.families import Attribution, find_family
from medserve.modeling.model import TrainedModel

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
    # Per record, per note column: its sentences' effects (``explain.sentences``), where
    # the model reads notes and the records were explained from raw rows.
    sentences: tuple[dict[str, list[SentenceEffect]], ...] | None = None

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
        record = {
            "space": self.space,
            "method": self.method,
            "base_value": float(self.base_value[index]),
            "contributions": dict(
                zip(self.columns, self.contributions[index].tolist(), strict=True)
            ),
            "summary": summary,
        }
        if self.sentences is not None:
            record["sentences"] = {
                column: [effect.to_dict() for effect in effects]
                for column, effects in self.sentences[index].items()
            }
            record["sentences_method"] = SENTENCES_METHOD
        return record


class Explainer:
    """Built once per loaded model; explains prepared frames or encoded matrices."""

    def __init__(self, model: TrainedModel) -> None:
        self.columns = tuple(model.schema.feature_names)
        self.schema = model.schema
        self.family = model.family
        family = find_family(model.family)
        attributor = family.attribution(model) if family is not None else None
        if attributor is None:
            raise ExplanationUnavailable(f"no explainer for the {model.family} family")
        self._attribute = attributor.attribute
        self._reads_matrix = attributor.reads_matrix
        self._encode: Callable[[pd.DataFrame], Any] = (
            model.pipeline.named_steps["preprocess"].transform
            if attributor.reads_matrix
            else _prepared_frame
        )
        self._grouping = raw_column_grouping(attributor.parts, self.columns)
        self._scale, self._shift = platt_of(model.calibrator)
        self._notes = [spec.name for spec in model.schema.features if spec.type == "text"]
        self._risk_of = model.predict_risk
        self.method = attributor.method + (
            ", carried through Platt recalibration" if self._scale != 1.0 else ""
        )

    def explain_frame(self, frame: pd.DataFrame, *, sentences: bool = True) -> Explanations:
        """Explain raw records (validated and typed by the schema first); a model that reads
        notes also finds each note's sentence effects, unless not ``sentences`` (each
        sentence costs the note rescored: a report's aggregate needs none)."""
        prepared = self.schema.prepare(frame)
        explanations = self._explain(self._attribute(self._encode(prepared)))
        if not self._notes or not sentences:
            return explanations
        effects = sentence_effects(self._risk_of, frame, self._notes)
        return replace(explanations, sentences=tuple(effects))

    def explain_matrix(self, matrix: np.ndarray) -> Explanations:
        """Explain records already encoded as the fitted preprocess step would (fast path)."""
        if not self._reads_matrix:
            raise ValueError(f"the {self.family} model reads the prepared frame: use explain_frame")
        return self._explain(self._attribute(matrix))

    @property
    def takes_matrix(self) -> bool:
        return self._reads_matrix

    def _explain(self, attribution: Attribution) -> Explanations:
        contributions = attribution.contributions @ self._grouping
        return Explanations(
            space=SPACE,
            method=self.method,
            columns=self.columns,
            base_value=self._scale * attribution.base + self._shift,
            contributions=self._scale * contributions,
        )


def _prepared_frame(prepared: pd.DataFrame) -> pd.DataFrame:
    return prepared
