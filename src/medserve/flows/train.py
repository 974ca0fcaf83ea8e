"""Training, in steps: prepare (read, de-identify, infer the schema, check the options),
check that the registry can be written, fit (cross-validate, select, refit), assess on the
held-out split, build the report, register (model, report and row together).

The registry is open only at the two ends, never through the minutes of fitting; warnings
raised while fitting and assessing become notices (``flows.notices``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from medserve.config import Settings
from medserve.data import Schema
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.report import data_section, performance_sections, training_report
from medserve.evaluation.report_types import (
    Explanations,
    LeaderboardRow,
    Performance,
    TrainingReport,
)
from medserve.flows.common import explanations_of, library_versions, result_json
from medserve.flows.notices import warnings_as_notices
from medserve.flows.prepare import (
    Prepared,
    TrainRequest,
    model_name_from,
    parse_missing,
    prepare,
)
from medserve.flows.register import check_registry, register
from medserve.modeling import TrainedModel, get_family, train_model
from medserve.modeling.train import MIN_EVENTS, CandidateResult, Progress, TrainResult
from medserve.storage import ModelVersion

# Below this many rows (or MIN_EVENTS events or non-events) a sample's metrics rest on too
# few patients: their 95% CIs are wide (a 40-row model measured on 8 rows says little).
SMALL_SAMPLE_ROWS = 100

__all__ = [
    "Assessment",
    "TrainOutcome",
    "TrainRequest",
    "assess",
    "build_report",
    "fit",
    "model_name_from",
    "parse_missing",
    "prepare",
    "small_sample_notice",
    "train_and_register",
]


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
    report: TrainingReport | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.version, self.metrics),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "notices": self.notices,
            "report": self.report_file,
            "report_html": self.report_html,
        }


@dataclass(frozen=True)
class Assessment:
    """The trained model measured on the held-out test split."""

    metrics: dict[str, Metric]
    performance: Performance
    explanations: Explanations
    notices: list[str]


def train_and_register(
    settings: Settings, request: TrainRequest, progress: Progress | None = None
) -> TrainOutcome:
    """Read, infer the schema, train and select, evaluate on the held-out split, register."""
    prepared = prepare(settings, request)
    check_registry(settings, prepared.name)
    result = fit(prepared, progress)
    assessment = assess(prepared, result)
    libraries = library_versions(result.model.family)
    params = training_params(request, result.model)
    report = build_report(prepared, result, assessment, params=params, libraries=libraries)
    registered = register(
        settings,
        prepared,
        result.model,
        metrics=assessment.metrics,
        params=params,
        libraries=libraries,
        report=report,
    )
    return TrainOutcome(
        version=registered.version,
        schema=prepared.schema,
        metrics=assessment.metrics,
        leaderboard=result.leaderboard,
        notices=report.notices + registered.notices,
        n_train=len(result.split.y_train),
        n_test=len(result.split.y_test),
        report_file=str(registered.json_path.resolve()),
        report_html=str(registered.html_path.resolve()),
        report=report,
    )


def fit(prepared: Prepared, progress: Progress | None = None) -> TrainResult:
    """Cross-validate the candidate families, select one, recalibrate, choose the threshold
    and refit on the training split; the result's notices include the warnings raised."""
    warned: list[str] = []
    with warnings_as_notices("training", warned):
        result = train_model(prepared.frame, prepared.schema, prepared.options, progress)
    return replace(result, notices=result.notices + warned)


def assess(prepared: Prepared, result: TrainResult) -> Assessment:
    """Metrics, report sections and explanations on the held-out test split."""
    model, split, seed = result.model, result.split, prepared.request.seed
    warned: list[str] = []
    with warnings_as_notices("measuring the held-out test split", warned):
        test_risk = model.predict_risk(split.test)
        metrics = evaluate_predictions(split.y_test, test_risk, model.threshold, seed=seed)
        performance = performance_sections(
            rows=split.test,
            y=split.y_test,
            risk=test_risk,
            threshold=model.threshold,
            threshold_rule=model.threshold_rule,
            metrics=metrics,
            groups=prepared.report_options.groups,
            seed=seed,
        )
        explanations = explanations_of(model, split.test)
    small = small_sample_notice("the held-out test split", split.y_test)
    return Assessment(metrics, performance, explanations, warned + ([small] if small else []))


def small_sample_notice(what: str, labels: Any) -> str | None:
    """A notice when ``labels`` (0/1) are too few to measure a model on, else None."""
    n, events = len(labels), int(sum(labels))
    if n >= SMALL_SAMPLE_ROWS and min(events, n - events) >= MIN_EVENTS:
        return None
    return (
        f"{what} is small ({n} rows, {events} events, {n - events} non-events; medserve "
        f"suggests at least {SMALL_SAMPLE_ROWS} rows and {MIN_EVENTS} of each): its metrics' "
        "95% CIs are wide and its estimates unstable; measure the model on more data before "
        "relying on it"
    )


def build_report(
    prepared: Prepared,
    result: TrainResult,
    assessment: Assessment,
    *,
    params: dict[str, Any],
    libraries: dict[str, str],
) -> TrainingReport:
    """The training report: the data, the model chosen and how it did on the test split."""
    model = result.model
    return training_report(
        data=data_section(
            prepared.frame,
            prepared.schema,
            model.family,
            source=prepared.source,
            sha256=prepared.data_sha256,
            deidentification=prepared.deidentification,
        ),
        model=model,
        leaderboard=[LeaderboardRow.model_validate(row.to_dict()) for row in result.leaderboard],
        metrics=assessment.metrics,
        n_train=len(result.split.y_train),
        n_test=len(result.split.y_test),
        notices=prepared.schema.notices + result.notices + assessment.notices,
        performance=assessment.performance,
        explanations=assessment.explanations,
        options=prepared.report_options,
        params=params,
        libraries=libraries,
    )


def training_params(request: TrainRequest, model: TrainedModel) -> dict[str, Any]:
    """What the registry and the report keep of how the model was trained."""
    return {
        "family": model.family,
        "requested_family": request.family,
        "seed": request.seed,
        "test_size": request.test_size,
        "cv_folds": model.info["cv_folds"],
        "threshold_rule": model.threshold_rule,
        "calibration": model.info["calibration"],
        "estimator": _estimator_params(model),
    }


def _estimator_params(model: TrainedModel) -> dict[str, Any]:
    estimator = model.pipeline.named_steps["model"]
    params = {
        k: v
        for k, v in estimator.get_params(deep=False).items()
        # scikit-learn's "deprecated"/"warn" placeholders are not settings that were used
        if _is_plain(v) and v not in ("deprecated", "warn")
    }
    params.update(get_family(model.family).fitted_params(model.pipeline))
    return params


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | tuple | list | dict)
