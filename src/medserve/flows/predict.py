"""Batch scoring of a file, optionally with explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from medserve.config import Settings
from medserve.data import read_table, write_table
from medserve.explain import Explainer, explained
from medserve.flows.common import load_model
from medserve.storage import ModelVersion, Registry


def predict_file(
    settings: Settings, ref: str, data: Path, out: Path, *, explain: bool = False
) -> tuple[ModelVersion, int]:
    """Batch scoring: every input column kept, `risk` and `label` added; with ``explain``
    also `risk_band`, `explanation_summary` and `explanation` (a JSON object per row)."""
    frame = read_table(data)
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
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
    write_table(scored, out)
    return version, len(scored)
