"""Batch scoring of a file or a DataFrame, optionally with explanations."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.core.risk import RiskBands
from medserve.data import ReadOptions, table_notices, write_table
from medserve.data.io import check_output
from medserve.errors import ConfigError, SchemaError, option
from medserve.explain import Explainer, explained
from medserve.flows.common import load_model, notes_cached
from medserve.flows.tables import Table, read_source
from medserve.modeling import TrainedModel
from medserve.scoring.validation import (
    RecordProblem,
    RecordValidator,
    frame_problems,
    problem_detail,
    problems_notice,
    rules_broken,
)
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry


@dataclass(frozen=True)
class PredictOutcome:
    """What `predict_file` did: the model, how many rows it wrote, and what it noticed."""

    version: ModelVersion
    n_rows: int
    # Rows holding a value the HTTP API refuses (the `validation` column names the rules).
    n_flagged: int = 0
    notices: list[str] = field(default_factory=list)


def predict_file(
    settings: Settings,
    ref: str,
    data: Table,
    out: Path,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
    strict: bool = False,
    raw_cells: bool = False,
    read: ReadOptions | None = None,
) -> PredictOutcome:
    """Batch scoring: every input column kept, `validation`, `risk` and `label` added; with
    ``explain`` also `risk_band`, `explanation_summary` and `explanation` (a JSON object per
    row). ``data`` is a file or a DataFrame.

    Each row is checked by the HTTP API's rule (``scoring.validation``): `validation` names
    the rules a row breaks ("age: range"), empty when it fits, and a notice counts them.
    With ``strict`` a file with any such row is refused, as HTTP refuses such a record.
    Otherwise a value out of the plausible range is scored; a level never seen in training
    is refused unless ``score_unseen_levels`` (then it is scored as no known level, and
    explanations say so); a value that cannot be read is always refused."""
    check_strictness(strict, score_unseen_levels)
    out = check_output(out)  # before any work: a folder, or one that is not there
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
        # An .npy of exactly the model's features is scored without a label column.
        frame = read_source(data, read=read, npy_features=len(model.schema.features)).frame
        with notes_cached(settings):  # a model that reads notes: encoded once, kept encrypted
            scored, problems = score_batch(
                settings.bands_for(version.name, model.threshold), model, frame,
                explain=explain, score_unseen_levels=score_unseen_levels, strict=strict,
            )  # fmt: skip
        # Patients' records were scored: the trail says who, with which model, how many,
        # before the scores are written (no record, no file: fail closed).
        record_local_action(settings, registry.engine, "predict", version, n_records=len(scored))
        write_table(scored, out, raw_cells=raw_cells)  # CSV formulas made inert unless raw
    notice = problems_notice(problems, len(frame))
    return PredictOutcome(
        version=version,
        n_rows=len(scored),
        n_flagged=len({problem.record for problem in problems}),
        notices=table_notices(frame) + ([notice] if notice else []),
    )


def score_batch(
    bands: RiskBands,
    model: TrainedModel,
    frame: pd.DataFrame,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
    strict: bool = False,
) -> tuple[pd.DataFrame, list[RecordProblem]]:
    """``frame`` scored as ``predict_file`` scores a file (`validation`, `risk`, `label`,
    with ``explain`` the explanation columns), and the HTTP API's problems in its rows
    (record = row position). The one scoring step of a whole file here and of each batch
    on Ray (``scale.batch``), so both write the same columns."""
    problems = frame_problems(RecordValidator(model.schema), frame)
    if strict:
        refuse_problems(problems)
    scored = score_frame(
        bands,
        model,
        frame,
        explain=explain,
        score_unseen_levels=score_unseen_levels,
        validation=rules_broken(problems, len(frame)),
    )
    return scored, problems


def flagged_notice(n_flagged: int, n_rows: int) -> str | None:
    """The notice of rows the HTTP API would refuse, counted from the `validation` column
    alone (when the problems themselves were found elsewhere: on Ray's workers)."""
    if not n_flagged:
        return None
    return (
        f"{n_flagged} of {n_rows} rows hold values the HTTP API refuses (422) and were "
        "scored anyway (the validation column names the rules); their risks deserve less trust"
    )


def check_strictness(strict: bool, score_unseen_levels: bool) -> None:
    """ConfigError for ``strict`` with ``score_unseen_levels``: one refuses what the other
    would score."""
    if strict and score_unseen_levels:
        raise ConfigError(
            f"{option('strict')} refuses what the HTTP API refuses, unseen levels included; "
            f"drop {option('score_unseen_levels')} or {option('strict')}"
        )


def refuse_problems(problems: list[RecordProblem]) -> None:
    """SchemaError naming the first row the HTTP API would refuse, and how many there are."""
    if not problems:
        return
    first = problems[0]
    flagged = len({problem.record for problem in problems})
    others = f"; {flagged} rows hold such values" if flagged > 1 else ""
    raise SchemaError(
        f"column '{first.field}' row {first.record + 1}: {problem_detail(first)}{others}; "
        f"correct the file, or score it with a notice per row without {option('strict')}"
    )


def score_frame(
    bands: RiskBands,
    model: TrainedModel,
    frame: pd.DataFrame,
    *,
    explain: bool = False,
    score_unseen_levels: bool = False,
    validation: list[str] | None = None,
) -> pd.DataFrame:
    """``frame`` (its index kept) with the columns `predict_file` adds; `validation` (the
    rules each row breaks, see ``predict_file``) only when given."""
    scores = risk_scores(bands, model, frame, score_unseen_levels=score_unseen_levels)
    risk = scores["risk"].to_numpy()
    scored = frame.copy()
    if validation is not None:
        scored["validation"] = validation
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
    bands: RiskBands,
    model: TrainedModel,
    frame: pd.DataFrame,
    *,
    score_unseen_levels: bool = False,
) -> pd.DataFrame:
    """Each row's `risk` (full precision), `label` (1 at or above the model's threshold) and
    `risk_band` (of ``bands``), indexed as ``frame``; unseen levels refused as
    ``refuse_unseen_levels``."""
    refuse_unseen_levels(model, frame, score_unseen_levels)
    risk = model.predict_risk(frame)
    return pd.DataFrame(
        {
            "risk": risk,
            "label": (risk >= model.threshold).astype(int),
            "risk_band": bands.of(risk.tolist()),
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
