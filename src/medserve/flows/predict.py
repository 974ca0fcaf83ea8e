"""Batch scoring of a file, optionally with explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medserve.config import Settings
from medserve.data import read_table, write_table
from medserve.errors import SchemaError, option
from medserve.explain import Explainer, explained
from medserve.flows.common import load_model
from medserve.storage import ModelVersion, Registry


def predict_file(
    settings: Settings,
    ref: str,
    data: Path,
    out: Path,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
    raw_cells: bool = False,
) -> tuple[ModelVersion, int]:
    """Batch scoring: every input column kept, `risk` and `label` added; with ``explain``
    also `risk_band`, `explanation_summary` and `explanation` (a JSON object per row).

    A level never seen in training is refused, as the HTTP API refuses it, unless
    ``score_unseen_levels`` (then it is scored as no known level, and explanations say so)."""
    frame = read_table(data)
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
    unseen = None if score_unseen_levels else model.schema.unseen_level(frame)
    if unseen is not None:
        raise SchemaError(
            f"{unseen}; correct the file, or score such levels as never seen with "
            f"{option('score_unseen_levels')}"
        )
    risk = model.predict_risk(frame)
    scored = frame.copy()
    scored["risk"] = np.round(risk, 6)
    scored["label"] = (risk >= model.threshold).astype(int)
    if explain:
        explanations = Explainer(model).explain_frame(frame)
        bands = settings.risk_bands(risk.tolist())
        records = explained(
            explanations, risk.tolist(), bands, frame.to_dict("records"), model.schema
        )
        scored["risk_band"] = bands
        scored["explanation_summary"] = [record.pop("summary") for record in records]
        scored["explanation"] = [json.dumps(record) for record in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(scored, out, raw_cells=raw_cells)  # CSV formulas made inert unless raw_cells
    return version, len(scored)
