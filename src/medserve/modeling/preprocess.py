"""Preprocessing inside the model pipeline: imputation with missing indicators, one-hot
encoding that tolerates unseen levels, and scaling where the family needs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from medserve.data.schema import Schema

MISSING_LEVEL = "(missing)"
# The ColumnTransformer's name for a notes column's step: NOTES_STEP + the column.
NOTES_STEP = "notes:"


def build_preprocessor(
    schema: Schema,
    *,
    impute: bool = True,
    scale: bool = True,
    notes: Callable[[], Any] | None = None,
):
    """A ColumnTransformer from the prepared feature frame to the model's numeric matrix.

    ``impute=False`` keeps NaN for families that route missing values themselves
    (LightGBM); ``scale=False`` skips standardisation (trees; the reference network in bench/).
    Text features are read by the families that read notes: ``notes`` makes each one's
    step (``features.embedding.NoteEmbedding``); without it they are left out."""
    numeric = [c.name for c in schema.features if c.numeric_encoded]
    levels = [c for c in schema.features if not c.numeric_encoded and c.type != "text"]
    texts = [c.name for c in schema.features if c.type == "text"]
    steps = []
    if impute:
        steps.append(("impute", SimpleImputer(strategy="median", add_indicator=True)))
    if scale:
        steps.append(("scale", StandardScaler()))
    numeric_step = Pipeline(steps) if steps else "passthrough"
    categorical_step = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_LEVEL)),
            (
                "onehot",
                OneHotEncoder(
                    categories=[[*c.categories, MISSING_LEVEL] for c in levels],
                    handle_unknown="ignore",
                    dtype=np.float64,
                ),
            ),
        ]
    )
    transformers = []
    if numeric:
        transformers.append(("numeric", numeric_step, numeric))
    if levels:
        transformers.append(("levels", categorical_step, [c.name for c in levels]))
    if notes is not None:
        transformers.extend((f"{NOTES_STEP}{name}", notes(), [name]) for name in texts)
    return ColumnTransformer(transformers, sparse_threshold=0.0, verbose_feature_names_out=False)


def encoded_sources(preprocessor: ColumnTransformer) -> list[str]:
    """For each column of the fitted preprocessor's output, the raw column it came from."""
    sources: list[str] = []
    for name, step, columns in preprocessor.transformers_:
        if name == "numeric":
            sources.extend(columns)
            imputer = step.named_steps.get("impute") if isinstance(step, Pipeline) else None
            if imputer is not None and imputer.indicator_ is not None:
                sources.extend(columns[i] for i in imputer.indicator_.features_)
        elif name == "levels":
            encoder = step.named_steps["onehot"]
            for column, categories in zip(columns, encoder.categories_, strict=True):
                sources.extend([column] * len(categories))
        elif name.startswith(NOTES_STEP):
            sources.extend([columns[0]] * step.width_)
    return sources
