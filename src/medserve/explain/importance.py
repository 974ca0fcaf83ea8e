"""What the model leans on across a population: mean absolute contribution per column,
and each column's contribution distribution in shared bins (a beeswarm without the rows)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from medserve.data.schema import Schema
from medserve.explain.explainer import Explainer, Explanations
from medserve.modeling.model import TrainedModel

# A column's values → 0 (low) .. 1 (high), NaN where missing.
ValueScale = Callable[[pd.Series], pd.Series]
DISTRIBUTION_BINS = 24
# A bin's mean feature level is shown only when it pools at least this many records.
SMALLEST_SHOWN_BIN = 3


def value_scales(schema: Schema) -> dict[str, ValueScale]:
    """Columns whose values run from low to high, each with its 0..1 scale: numbers by
    percentile; two-level columns by whether the value is the later level (e.g. TRUE, Male)."""
    scales: dict[str, ValueScale] = {}
    for spec in schema.features:
        if spec.type == "numeric":
            scales[spec.name] = lambda v: pd.to_numeric(v, errors="coerce").rank(pct=True)
        elif spec.type == "binary" and spec.categories and len(spec.categories) == 2:
            high = spec.categories[-1]
            scales[spec.name] = lambda v, high=high: (v == high).astype(float).where(v.notna())
        elif spec.type == "binary":  # 0/1 numbers
            scales[spec.name] = lambda v: pd.to_numeric(v, errors="coerce")
    return scales


def global_importance(explanations: Explanations) -> list[dict]:
    """Columns by mean |contribution| (log-odds), largest first."""
    mean_abs = np.abs(explanations.contributions).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    return [
        {"column": explanations.columns[j], "mean_abs": round(float(mean_abs[j]), 6)} for j in order
    ]


def contribution_distribution(
    explanations: Explanations, prepared: pd.DataFrame, scales: dict[str, ValueScale]
) -> list[dict]:
    """Per column: record counts per contribution bin (bins shared by all columns) and, for
    columns with a low-to-high scale, the mean scaled value of the bin's records."""
    contributions = explanations.contributions
    low, high = float(contributions.min()), float(contributions.max())
    if high - low < 1e-12:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, DISTRIBUTION_BINS + 1)
    bins = np.clip(np.digitize(contributions, edges[1:-1]), 0, DISTRIBUTION_BINS - 1)
    distribution = []
    for j, column in enumerate(explanations.columns):
        counts = np.bincount(bins[:, j], minlength=DISTRIBUTION_BINS)
        levels: list[float | None] = [None] * DISTRIBUTION_BINS
        if column in scales:
            level_of = scales[column](prepared[column])
            for b in np.flatnonzero(counts >= SMALLEST_SHOWN_BIN):
                mean = level_of[bins[:, j] == b].mean()
                levels[b] = None if pd.isna(mean) else round(float(mean), 4)
        distribution.append(
            {
                "column": column,
                "edges": [round(float(e), 6) for e in edges],
                "counts": counts.tolist(),
                "value_level": levels,
            }
        )
    return distribution


def report_section(model: TrainedModel, frame: pd.DataFrame) -> dict:
    """The report's explanations: aggregates over ``frame`` (the held-out rows)."""
    explainer = Explainer(model)
    explanations = explainer.explain_frame(frame, sentences=False)  # aggregates only
    scales = value_scales(model.schema)
    return {
        "space": explanations.space,
        "method": explanations.method,
        "n": len(explanations),
        "importance": global_importance(explanations),
        "distribution": contribution_distribution(
            explanations, model.schema.prepare(frame), scales
        ),
    }
