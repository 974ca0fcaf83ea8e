"""Batch scoring of a file or a DataFrame, optionally with explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.data import ReadOptions, write_table
from medserve.data.io import check_output
from medserve.errors import SchemaError, option
from medserve.explain import Explainer, explained
from medserve.flows.common import load_model
from medserve.flows.tables import Table, read_source
from medserve.modeling import TrainedModel
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry


def predict_file(
    settings: Settings,
    ref: str,
    data: Table,
    out: Path,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
    raw_cells: bool = False,
    read: ReadOptions | None = None,
) -> tuple[ModelVersion, int]:
    """Batch scoring: every input column kept, `risk` and `label` added; with ``explain``
    also `risk_band`, `explanation_summary` and `explanation` (a JSON object per row).
    ``data`` is a file or a DataFrame.

    A level never seen in training is refused, as the HTTP API refuses it, unless
    ``score_unseen_levels`` (then it is scored as no known level, and explanations say so)."""
    out = check_output(out)  # before any work: a folder, or one that is not there
    frame = read_source(data, read=read).frame
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
        scored = score_frame(
            settings, model, frame, explain=explain, score_unseen_levels=score_unseen_levels
        )
        write_table(scored, out, raw_cells=raw_cells)  # CSV formulas made inert unless raw
        # Patients' records were scored: the trail says who, with which model, how many.
        record_local_action(
            settings, registry.engine, "predict", model=version.name,
            version=version.version, n_records=len(scored),
        )  # fmt: skip
    return version, len(scored)


def score_frame(
    settings: Settings,
    model: TrainedModel,
    frame: pd.DataFrame,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
) -> pd.DataFrame:
    """``frame`` (its index kept) with the columns `predict_file` adds."""
    scores = risk_scores(settings, model, frame, score_unseen_levels=score_unseen_levels)
    risk = scores["risk"].to_numpy()
    scored = frame.copy()
    scored["risk"] = np.round(risk, 6)
    scored["label"] = scores["label"].to_numpy()
    if explain:
        explanations = Explainer(model).explain_frame(frame)
        bands = scores["risk_band"].tolist()
        records = explained(
            explanations, risk.tolist(), bands, frame.to_dict("records"), model.schema
        )
        scored["risk_band"] = bands
        scored["explanation_summary"] = [record.pop("summary") for record in records]
        scored["explanation"] = [json.dumps(record) for record in records]
    return scored


def risk_scores(
    settings: Settings,
    model: TrainedModel,
    frame: pd.DataFrame,
    *,
    score_unseen_levels: bool = False,
) -> pd.DataFrame:
    """Each row's `risk` (full precision), `label` (1 at or above the model's threshold) and
    `risk_band`, indexed as ``frame``; unseen levels refused as ``refuse_unseen_levels``."""
    refuse_unseen_levels(model, frame, score_unseen_levels)
    risk = model.predict_risk(frame)
    return pd.DataFrame(
        {
            "risk": risk,
            "label": (risk >= model.threshold).astype(int),
            "risk_band": settings.risk_bands(risk.tolist()),
        },
        index=frame.index,
    )


def refuse_unseen_levels(
    model: TrainedModel, frame: pd.DataFrame, score_unseen_levels: bool = False
) -> None:
    """SchemaError at the first level training never saw, unless ``score_unseen_levels``."""
    unseen = None if score_unseen_levels else model.schema.unseen_level(frame)
    if unseen is not None:
        raise SchemaError(
            f"{unseen}; correct the file, or score such levels as never seen with "
            f"{option('score_unseen_levels')}"
        )
