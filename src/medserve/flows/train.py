"""Training: read, optionally de-identify, infer the schema, train and select, evaluate
on the held-out split, report, register."""

from __future__ import annotations

import getpass
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medserve.config import Settings
from medserve.data import (
    Schema,
    default_target,
    file_sha256,
    infer_schema,
    read_schema_file,
    read_table,
)
from medserve.deid import KEY_PURPOSE as DEID_KEY_PURPOSE
from medserve.deid.training import deidentify_for_training, schema_record
from medserve.errors import ConfigError
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.report import (
    ReportOptions,
    data_summary,
    performance_sections,
    training_report,
)
from medserve.explain import report_section
from medserve.flows.common import library_versions, result_json
from medserve.modeling import ThresholdRule, TrainedModel, TrainOptions, train_model
from medserve.modeling.train import CandidateResult, Progress
from medserve.reporting.html import write_html_report
from medserve.storage import ModelVersion, Registry
from medserve.storage.keystore import KeyStore


@dataclass
class TrainRequest:
    data: Path
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
    missing: dict[str, list[str]] | None = None
    ignore: list[str] | None = None
    groups: list[str] | None = None
    intended_use: str | None = None
    model_card: Path | None = None
    deid: bool = False
    deid_policy: Path | None = None


@dataclass
class TrainOutcome:
    version: ModelVersion
    schema: Schema
    metrics: dict[str, Metric]
    leaderboard: list[CandidateResult]
    notices: list[str]
    n_train: int
    n_test: int
    report_file: str | None
    report_html: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.version, self.metrics),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "report": self.report_file,
            "report_html": self.report_html,
        }


def model_name_from(path: Path) -> str:
    """A registry name from a file name: 'Heart Disease_UCI.csv' → 'heart-disease-uci'."""
    name = re.sub(r"[^a-z0-9.]+", "-", path.stem.lower()).strip("-.")
    return (name or "model")[:63]


def train_and_register(
    settings: Settings, request: TrainRequest, progress: Progress | None = None
) -> TrainOutcome:
    """Read, infer the schema, train and select, evaluate on the held-out split, register."""
    frame = read_table(request.data)
    overrides = read_schema_file(request.schema_file) if request.schema_file else None
    target = request.target or default_target(request.data)
    deid_report, deid_notices = None, []
    if request.deid or request.deid_policy is not None:
        deidentified = deidentify_for_training(  # the policy is checked before the key
            frame,
            request.deid_policy,
            lambda: KeyStore(settings).purpose_key(DEID_KEY_PURPOSE),
            target=target,
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
    if deid_report is not None:
        schema = schema.model_copy(
            update={
                "deidentification": schema_record(deid_report),
                "notices": deid_notices + schema.notices,
            }
        )
    report_options = ReportOptions.build(  # checked before any training starts
        groups=request.groups or [],
        columns=list(frame.columns),
        outcome=schema.outcome.column if schema.outcome else None,
        source=request.data.name,
        intended_use=request.intended_use,
        model_card=request.model_card,
    )
    options = TrainOptions(
        family=request.family,
        seed=request.seed,
        test_size=request.test_size,
        cv=request.cv,
        threshold_rule=ThresholdRule.parse(request.threshold_for),
    )
    name = request.name or model_name_from(request.data)
    with Registry(settings) as registry:  # opened first: an unusable registry fails fast
        result = train_model(frame, schema, options, progress)
        model = result.model
        test_risk = model.predict_risk(result.split.test)
        metrics = evaluate_predictions(
            result.split.y_test, test_risk, model.threshold, seed=request.seed
        )
        data_sha256 = file_sha256(request.data)
        notices = schema.notices + result.notices
        params = {
            "family": model.family,
            "requested_family": request.family,
            "seed": request.seed,
            "test_size": request.test_size,
            "cv_folds": model.info["cv_folds"],
            "threshold_rule": model.threshold_rule,
            "calibration": model.info["calibration"],
            "estimator": _estimator_params(model),
        }
        libraries = library_versions()
        report = training_report(
            source=request.data.name,
            data_sha256=data_sha256,
            summary=data_summary(frame, schema, model.family),
            schema=schema,
            model=model,
            leaderboard=[row.to_dict() for row in result.leaderboard],
            metrics=metrics,
            n_train=len(result.split.y_train),
            n_test=len(result.split.y_test),
            notices=notices,
            performance=performance_sections(
                rows=result.split.test,
                y=result.split.y_test,
                risk=test_risk,
                threshold=model.threshold,
                threshold_rule=model.threshold_rule,
                metrics=metrics,
                groups=report_options.groups,
                seed=request.seed,
            ),
            explanations=report_section(model, result.split.test),
            options=report_options,
            params=params,
            libraries=libraries,
        )
        if deid_report is not None:
            report["data"]["deidentification"] = deid_report
        version = registry.register(
            name,
            model,
            family=model.family,
            schema=schema.model_dump(mode="json"),
            metrics={k: m.to_dict() for k, m in metrics.items()},
            threshold=model.threshold,
            params=params,
            lineage={
                "data_file": request.data.name,
                "data_sha256": data_sha256,
                "libraries": libraries,
                "trained_by": _user(),
            },
            data_sha256=data_sha256,
            created_by=_user(),
            report=report,
        )
    report_html = None
    if version.report_path:
        report_html = write_html_report(settings.home / version.report_path, report, version.ref)
    return TrainOutcome(
        version=version,
        schema=schema,
        metrics=metrics,
        leaderboard=result.leaderboard,
        notices=notices,
        n_train=len(result.split.y_train),
        n_test=len(result.split.y_test),
        report_file=str((settings.home / version.report_path).resolve())
        if version.report_path
        else None,
        report_html=str(report_html.resolve()) if report_html else None,
    )


def _with_column_defaults(
    overrides: dict[str, Any] | None, defaults: dict[str, dict[str, str]]
) -> dict[str, Any]:
    """Schema overrides with ``defaults`` for columns the user's schema file does not set."""
    merged = dict(overrides or {})
    merged["columns"] = {**defaults, **(merged.get("columns") or {})}
    return merged


def parse_missing(declarations: list[str]) -> dict[str, list[str]]:
    """'--missing chol=0' → {'chol': ['0']}; 'chol=' declares no token (keeps zeros)."""
    tokens: dict[str, list[str]] = {}
    for item in declarations:
        if "=" not in item:
            raise ConfigError(f"--missing '{item}' should look like COLUMN=VALUE (e.g. chol=0)")
        column, value = item.split("=", 1)
        values = tokens.setdefault(column.strip(), [])
        values.extend(v.strip() for v in value.split(",") if v.strip())
    return tokens


def _estimator_params(model: TrainedModel) -> dict[str, Any]:
    estimator = model.pipeline.named_steps["model"]
    params = {
        k: v
        for k, v in estimator.get_params(deep=False).items()
        # scikit-learn's "deprecated"/"warn" placeholders are not settings that were used
        if _is_plain(v) and v not in ("deprecated", "warn")
    }
    for fitted in ("C_", "n_trees_", "n_epochs_"):
        value = getattr(estimator, fitted, None)
        if value is not None:
            params[fitted.rstrip("_")] = np.asarray(value).ravel().tolist()[0]
    return params


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | tuple | list | dict)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
