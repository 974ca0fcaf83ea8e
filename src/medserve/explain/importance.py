"""What the model leans on across a population: mean absolute contribution per column,
and each column's contribution distribution in shared bins (a beeswarm without the rows)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medserve.explain.explainer import Explainer, Explanations
from medserve.modeling.model import TrainedModel

DISTRIBUTION_BINS = 24
# A bin's mean feature level is shown only when it pools at least this many records.
SMALLEST_SHOWN_BIN = 3


def global_importance(explanations: Explanations) -> list[dict]:
    """Columns by mean |contribution| (log-odds), largest first."""
    mean_abs = np.abs(explanations.contributions).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")
    return [
        {"column": explanations.columns[j], "mean_abs": round(float(mean_abs[j]), 6)} for j in order
    ]


def contribution_distribution(
    explanations: Explanations, prepared: pd.DataFrame, numeric: set[str]
) -> list[dict]:
    """Per column: record counts per contribution bin (bins shared by all columns) and, for
    numeric columns, the mean percentile of the column's value among the bin's records."""
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
        if column in numeric:
            percentile = pd.to_numeric(prepared[column], errors="coerce").rank(pct=True)
            for b in np.flatnonzero(counts >= SMALLEST_SHOWN_BIN):
                mean = percentile[bins[:, j] == b].mean()
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
    explanations = explainer.explain_frame(frame)
    numeric = {spec.name for spec in model.schema.features if spec.type == "numeric"}
    return {
        "space": explanations.space,
        "method": explanations.method,
        "n": len(explanations),
        "importance": global_importance(explanations),
        "distribution": contribution_distribution(
            explanations, model.schema.prepare(frame), numeric
        ),
    }
