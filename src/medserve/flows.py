"""The user-facing workflows (train, evaluate, predict) as library functions: the CLI and
the HTTP app are thin shells over these."""

from __future__ import annotations

import getpass
import json
import platform
import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medserve import __version__
from medserve.config import Settings
from medserve.data import (
    Schema,
    default_target,
    file_sha256,
    infer_schema,
    read_schema_file,
    read_table,
    write_table,
)
from medserve.deid import KEY_PURPOSE as DEID_KEY_PURPOSE
from medserve.deid.training import deidentify_for_training, schema_record
from medserve.errors import ConfigError, DataError, ModelNotFound
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.html import html_for_json_file, write_html_report
from medserve.evaluation.report import (
    ReportOptions,
    data_summary,
    evaluation_report,
    performance_sections,
    training_report,
)
from medserve.explain import Explainer, explained, report_section
from medserve.modeling import ThresholdRule, TrainedModel, TrainOptions, train_model
from medserve.modeling.train import CandidateResult, Progress, labelled_rows
from medserve.registry import ModelVersion, Registry
from medserve.registry.artifacts import resolve_in_home
from medserve.registry.files import write_file_atomic
from medserve.registry.keystore import KeyStore

LIBRARIES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "lightgbm",
    "torch",
    "interpret-core",
    "scipy",
    "shap",
    "statsmodels",
    "matplotlib",
)


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


def result_json(version: ModelVersion, metrics: dict[str, Metric]) -> dict[str, Any]:
    """The fields `train --json` and `evaluate --json` share."""
    return {
        "model": version.name,
        "version": version.version,
        "family": version.family,
        "threshold": version.threshold,
        "metrics": {k: m.to_dict() for k, m in metrics.items()},
    }


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


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "medserve": __version__}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return versions


def train_and_register(
    settings: Settings, request: TrainRequest, progress: Progress | None = None
) -> TrainOutcome:
    """Read, infer the schema, train and select, evaluate on the held-out split, register."""
    frame = read_table(request.data)
    overrides = read_schema_file(request.schema_file) if request.schema_file else None
    target = request.target or default_target(request.data)
    deid_report, deid_notices = None, []
    if request.deid or request.deid_policy is not None:
        key = KeyStore(settings).purpose_key(DEID_KEY_PURPOSE)
        frame, deid_report, deid_notices = deidentify_for_training(frame, request.deid_policy, key)
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


def load_model(registry: Registry, ref: str) -> tuple[ModelVersion, TrainedModel]:
    version = registry.get(ref)
    model = registry.load(version)
    if not isinstance(model, TrainedModel):
        raise DataError(f"{version.ref}: the stored artifact is not a medserve model")
    return version, model


@dataclass
class EvaluationOutcome:
    version: ModelVersion
    metrics: dict[str, Metric]
    n_rows: int
    n_events: int
    notices: list[str]
    report_path: str
    report_html: str

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.version, self.metrics),
            "n_rows": self.n_rows,
            "n_events": self.n_events,
            "report": self.report_path,
            "report_html": self.report_html,
        }


def evaluate_stored(
    settings: Settings,
    ref: str,
    data: Path,
    target: str | None = None,
    seed: int = 0,
    *,
    groups: list[str] | None = None,
    intended_use: str | None = None,
    model_card: Path | None = None,
) -> EvaluationOutcome:
    """External validation: score new labelled data with a stored model and measure it."""
    frame = read_table(data)
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
    outcome = model.schema.outcome
    assert outcome is not None
    if target is not None and target != outcome.column:
        outcome = outcome.model_copy(update={"column": target})
    if outcome.column not in frame.columns:
        raise DataError(
            f"{data.name}: outcome column '{outcome.column}' not found; name it with --target"
        )
    schema = model.schema.model_copy(update={"outcome": outcome})
    report_options = ReportOptions.build(
        groups=groups or [],
        columns=list(frame.columns),
        outcome=outcome.column,
        source=data.name,
        intended_use=intended_use,
        model_card=model_card,
        inherited=_training_report_of(settings, version).get("intended_use"),
    )
    rows, labels, dropped = labelled_rows(frame, schema)
    notices = [f"{dropped} rows without an outcome were left out"] if dropped else []
    if labels.min() == labels.max():
        raise DataError(
            f"{data.name}: every row has the same outcome under '{outcome.describe()}'; "
            "external validation needs both events and non-events"
        )
    risk = model.predict_risk(rows)
    metrics = evaluate_predictions(labels, risk, model.threshold, seed=seed)
    report = evaluation_report(
        version=version,
        source=data.name,
        data_sha256=file_sha256(data),
        summary=data_summary(frame, schema, version.family),
        metrics=metrics,
        notices=notices,
        performance=performance_sections(
            rows=rows,
            y=labels,
            risk=risk,
            threshold=model.threshold,
            threshold_rule=model.threshold_rule,
            metrics=metrics,
            groups=report_options.groups,
            seed=seed,
        ),
        explanations=report_section(model, rows),
        options=report_options,
    )
    report_path = _write_evaluation_report(settings, version, report)
    report_html = write_html_report(report_path, report, version.ref)
    return EvaluationOutcome(
        version=version,
        metrics=metrics,
        n_rows=len(labels),
        n_events=int(labels.sum()),
        notices=notices,
        report_path=str(report_path),
        report_html=str(report_html),
    )


@dataclass
class StoredReport:
    """A version's report: the JSON file, and the HTML beside it (rendered if missing)."""

    version: ModelVersion
    json_path: Path
    html_path: Path


def stored_report(registry: Registry, settings: Settings, ref: str) -> StoredReport:
    """The training report of ``ref``; ModelNotFound when it was registered without one."""
    version = registry.get(ref)
    json_path = resolve_in_home(settings, version.report_path) if version.report_path else None
    if json_path is None or not json_path.is_file():
        raise ModelNotFound(
            f"{version.ref} has no report (it was registered without one); "
            "train it again with `medserve train` to get one"
        )
    return StoredReport(version, json_path, html_for_json_file(json_path, version.ref))


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
        records = explained(explanations, risk.tolist(), bands, frame.to_dict("records"))
        scored["risk_band"] = bands
        scored["explanation_summary"] = [record.pop("summary") for record in records]
        scored["explanation"] = [json.dumps(record) for record in records]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_table(scored, out)
    return version, len(scored)


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


def _write_evaluation_report(settings: Settings, version: ModelVersion, report: dict) -> Path:
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    relative = Path("reports") / version.name / f"v{version.version}" / f"evaluation-{stamp}.json"
    write_file_atomic(settings.home / relative, json.dumps(report, indent=2).encode())
    return (settings.home / relative).resolve()


def _training_report_of(settings: Settings, version: ModelVersion) -> dict[str, Any]:
    """The version's training report, or {} when it has none (or it cannot be read)."""
    if not version.report_path:
        return {}
    try:
        path = resolve_in_home(settings, version.report_path)
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _estimator_params(model: TrainedModel) -> dict[str, Any]:
    estimator = model.pipeline.named_steps["model"]
    params = {k: v for k, v in estimator.get_params(deep=False).items() if _is_plain(v)}
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
