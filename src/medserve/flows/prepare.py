"""The first step of training: what was asked, read and checked before any work starts —
the table (de-identified when asked), its schema, and the report and training options."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medserve.config import Settings
from medserve.data import (
    ReadOptions,
    Schema,
    default_target,
    infer_schema,
    read_schema_file,
    table_notices,
)
from medserve.data.disclosure import withheld_columns
from medserve.deid import KEY_PURPOSE as DEID_KEY_PURPOSE
from medserve.deid.training import deidentify_for_training, schema_record
from medserve.errors import ConfigError, option
from medserve.evaluation.report import ReportOptions
from medserve.flows.notes import choose_notes
from medserve.flows.tables import Source, Table, read_source
from medserve.modeling import ThresholdRule, TrainOptions
from medserve.modeling.train import DEFAULT_TIME_LIMIT
from medserve.modeling.validation import DEFAULT_VALIDATION
from medserve.storage.keystore import KeyStore


@dataclass
class TrainRequest:
    # A file (the CLI) or a DataFrame (the Python API); ``source_name`` names a DataFrame in
    # reports and lineage ("DataFrame" by default) and, without ``name``, the model.
    data: Table
    target: str | None = None
    positive: str | None = None
    positive_if: str | None = None
    family: str = "auto"
    name: str | None = None
    schema_file: Path | None = None
    seed: int = 0
    test_size: float = 0.2
    cv: int = 5
    threshold_for: str | None = None
    metric: str = "auroc"  # how `auto` ranks the candidates: auroc, brier or logloss
    validation: str = DEFAULT_VALIDATION  # holdout, cv or bootstrap
    time_limit: float | None = DEFAULT_TIME_LIMIT  # seconds for the candidate search
    missing: dict[str, list[str]] | None = None
    ignore: list[str] | None = None
    groups: list[str] | None = None
    intended_use: str | None = None
    model_card: Path | None = None
    deid: bool = False
    deid_policy: Path | None = None
    source_name: str | None = None
    read: ReadOptions | None = None  # a CSV's delimiter, decimal mark and encoding
    text: list[str] | None = None  # notes columns the model reads (``flows.notes``)
    text_not_deidentified: bool = False  # read notes that did not go through --deid
    parent: str | None = None  # refitting a stored version (flows.refit): NAME:VERSION


@dataclass(frozen=True)
class Prepared:
    """The table as training reads it, and everything checked about the request."""

    request: TrainRequest
    name: str
    frame: pd.DataFrame
    schema: Schema
    data_sha256: str
    # The table's name in reports and lineage: its file name, or the DataFrame's source name.
    source: str
    # The full de-identification report when `--deid` ran (for the model report).
    deidentification: dict[str, Any] | None
    report_options: ReportOptions
    options: TrainOptions


def prepare(settings: Settings, request: TrainRequest) -> Prepared:
    """Read the table, de-identify it when asked, infer its schema and check the options."""
    name = request.name or _model_name_of(request)
    inferred = infer_training_schema(
        request, lambda: KeyStore(settings).purpose_key(DEID_KEY_PURPOSE)
    )
    source, frame, schema = inferred.source, inferred.frame, inferred.schema
    deid_report = inferred.deidentification
    report_options = ReportOptions.build(
        groups=request.groups or [],
        columns=list(frame.columns),
        outcome=schema.outcome.column if schema.outcome else None,
        source=source.name,
        intended_use=request.intended_use,
        model_card=request.model_card,
        withheld=withheld_columns(schema),
    )
    options = TrainOptions(
        family=request.family,
        seed=request.seed,
        test_size=request.test_size,
        cv=request.cv,
        threshold_rule=ThresholdRule.parse(request.threshold_for),
        metric=request.metric,
        validation=request.validation,
        time_limit=request.time_limit,
    )
    return Prepared(
        request=request,
        name=name,
        frame=frame,
        schema=schema,
        data_sha256=source.sha256(),
        source=source.name,
        deidentification=deid_report,
        report_options=report_options,
        options=options,
    )


@dataclass(frozen=True)
class InferredTable:
    """The table as training reads it (de-identified when asked) and the schema inferred."""

    source: Source
    frame: pd.DataFrame
    schema: Schema
    deidentification: dict[str, Any] | None  # the full de-identification report, or None


def infer_training_schema(request: TrainRequest, deid_key: Callable[[], bytes]) -> InferredTable:
    """Read the request's table, de-identify it when asked (``deid_key`` is called only
    then, once the policy has been checked) and infer its schema as `train` does."""
    source = read_source(request.data, request.source_name, read=request.read)
    reading_notices = table_notices(source.frame)
    frame = source.frame.reset_index(drop=True)  # training counts rows by position
    overrides = read_schema_file(request.schema_file) if request.schema_file else None
    target = request.target or (default_target(source.path) if source.path else None)
    deid_report, deid_notices = None, []
    if request.deid or request.deid_policy is not None:
        deidentified = deidentify_for_training(  # the policy is checked before the key
            frame, request.deid_policy, deid_key, target=target
        )
        frame, deid_report = deidentified.frame, deidentified.report
        deid_notices = deidentified.notices
        overrides = _with_column_defaults(overrides, deidentified.overrides)
    schema = infer_schema(
        frame,
        target=target,
        positive=request.positive,
        positive_if=request.positive_if,
        missing_tokens=request.missing,
        ignore=request.ignore,
        overrides=overrides,
    )
    schema.notices[:0] = reading_notices
    if deid_report is not None:
        schema = schema.model_copy(
            update={
                "deidentification": schema_record(deid_report),
                "notices": deid_notices + schema.notices,
            }
        )
    schema = choose_notes(
        schema,
        text=request.text,
        family=request.family,
        deidentified=deid_report,
        not_deidentified=request.text_not_deidentified,
    )
    return InferredTable(source, frame, schema, deid_report)


def preview_schema(request: TrainRequest) -> Schema:
    """The schema `train` would infer for ``request``, writing nothing. De-identification
    runs under a throwaway key, so no deid key is made in the home: the types, roles and
    notices are train's, the pseudonyms and shifted dates (and the key's id) are not."""
    schema = infer_training_schema(request, lambda: secrets.token_bytes(32)).schema
    if schema.deidentification is None:
        return schema
    record = {**schema.deidentification, "key_id": None}  # no key was used for real
    return schema.model_copy(update={"deidentification": record})


def _model_name_of(request: TrainRequest) -> str:
    """The registry name of a request without one: from its file's name, or its source name."""
    if isinstance(request.data, pd.DataFrame):
        if request.source_name is None:
            raise ConfigError(
                f"a DataFrame has no file name to name the model after; give {option('name')}"
            )
        return model_name_from(Path(request.source_name))
    return model_name_from(Path(request.data))


def model_name_from(path: Path) -> str:
    """A registry name from a file name: 'Heart Disease_UCI.csv' → 'heart-disease-uci'."""
    name = re.sub(r"[^a-z0-9.]+", "-", path.stem.lower()).strip("-.")
    return (name or "model")[:63]


def parse_missing(declarations: list[str]) -> dict[str, list[str]]:
    """'--missing chol=0' → {'chol': ['0']}; 'chol=' declares no token (keeps zeros)."""
    tokens: dict[str, list[str]] = {}
    for item in declarations:
        if "=" not in item:
            raise ConfigError(
                f"missing-value declaration '{item}' ({option('missing')}) should look like "
                "COLUMN=VALUE (e.g. chol=0)"
            )
        column, value = item.split("=", 1)
        values = tokens.setdefault(column.strip(), [])
        values.extend(v.strip() for v in value.split(",") if v.strip())
    return tokens


def _with_column_defaults(
    overrides: dict[str, Any] | None, defaults: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Schema overrides with ``defaults`` for columns the user's schema file does not set."""
    merged = dict(overrides or {})
    merged["columns"] = {**defaults, **(merged.get("columns") or {})}
    return merged
