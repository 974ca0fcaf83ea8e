"""Training, in steps: prepare (read, de-identify, infer the schema, check the options),
check that the registry can be written, fit (search, blend and select, refit, validate
internally), assess (metrics and report sections on what the validation measured), build
the report, register (model, report and row together).

The registry is open only at the two ends, never through the minutes of fitting; warnings
raised while fitting and assessing become notices (``flows.notices``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.data import Schema
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.report import (
    data_section,
    performance_sections,
    sample_size_section,
    training_report,
)
from medserve.evaluation.report_types import (
    Explanations,
    InternalValidation,
    LeaderboardRow,
    OptimismRow,
    Performance,
    TrainingReport,
)
from medserve.flows.common import (
    explanations_of,
    library_versions,
    notes_cached,
    result_json,
)
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
from medserve.modeling.parallel import Parallel
from medserve.modeling.train import MIN_EVENTS, CandidateResult, Progress, TrainResult
from medserve.modeling.validation import Validation
from medserve.monitoring.profile import ReferenceProfile, build_profile
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
    validation: InternalValidation | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.version, self.metrics),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "validation": self.validation.model_dump(mode="json") if self.validation else None,
            "notices": self.notices,
            "report": self.report_file,
            "report_html": self.report_html,
        }


@dataclass(frozen=True)
class Assessment:
    """The trained model measured as its internal validation says."""

    metrics: dict[str, Metric]
    performance: Performance
    explanations: Explanations
    notices: list[str]
    validation: InternalValidation


def train_and_register(
    settings: Settings,
    request: TrainRequest,
    progress: Progress | None = None,
    *,
    parallel: Parallel | None = None,
) -> TrainOutcome:
    """Read, infer the schema, train and select, validate internally, register. The
    search's fits run through ``parallel`` when given (Ray tasks: ``scale.training``);
    the model and its report are the same."""
    prepared = prepare(settings, request)
    check_registry(settings, prepared.name)
    with notes_cached(settings):  # notes are encoded once, kept encrypted (features.text)
        result = fit(prepared, progress, parallel=parallel)
        assessment = assess(prepared, result)
        # What drift is measured against once it serves: aggregates of its training data.
        profile = reference_profile(result.model, prepared.frame)
    libraries = library_versions(result.model)
    params = training_params(request, result)
    report = build_report(prepared, result, assessment, params=params, libraries=libraries)
    registered = register(
        settings,
        prepared,
        result.model,
        metrics=assessment.metrics,
        params=params,
        libraries=libraries,
        report=report,
        profile=profile,
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
        validation=assessment.validation,
    )


def reference_profile(model: TrainedModel, frame: pd.DataFrame) -> ReferenceProfile:
    """The model's reference profile on ``frame``: its features' bins, levels and
    missingness, and the risks it gives the rows (monitoring/profile.py)."""
    return build_profile(model.schema, frame, model.predict_risk(frame))


def fit(
    prepared: Prepared, progress: Progress | None = None, *, parallel: Parallel | None = None
) -> TrainResult:
    """Search the candidates, blend and select, recalibrate, choose the threshold, refit and
    validate; the result's notices include the warnings raised (where the fits ran)."""
    warned: list[str] = []
    with warnings_as_notices("training", warned):
        result = train_model(
            prepared.frame, prepared.schema, prepared.options, progress, parallel=parallel
        )
    return replace(result, notices=result.notices + warned)


def assess(prepared: Prepared, result: TrainResult) -> Assessment:
    """Metrics, report sections and explanations on the rows the validation measured: the
    held-out split, every row's out-of-fold prediction, or (bootstrap) every row, its
    headline metrics corrected for optimism."""
    model, validation, seed = result.model, result.validation, prepared.request.seed
    assert validation is not None
    what = _measured_on(validation)
    warned: list[str] = []
    with warnings_as_notices(f"measuring {what}", warned):
        metrics = evaluate_predictions(validation.y, validation.risk, model.threshold, seed=seed)
        metrics = _corrected(metrics, validation)
        performance = performance_sections(
            rows=validation.rows,
            y=validation.y,
            risk=validation.risk,
            threshold=model.threshold,
            threshold_rule=model.threshold_rule,
            metrics=metrics,
            groups=prepared.report_options.groups,
            seed=seed,
        )
        explanations = explanations_of(model, validation.rows)
    # Two notices where they are small: the rows measured (wide CIs), and the rows the
    # registered model was fitted on (an unstable fit): all of them, or the training split.
    fitted_on = "the training split" if validation.method == "holdout" else "the training data"
    small = [
        small_sample_notice(what, validation.y),
        small_sample_notice(fitted_on, result.split.y_train, DEVELOPMENT_CONSEQUENCE),
    ]
    notices = warned + [notice for notice in small if notice]
    return Assessment(metrics, performance, explanations, notices, internal_validation(validation))


def _measured_on(validation: Validation) -> str:
    n = len(validation.y)
    if validation.method == "holdout":
        return f"the held-out test split ({n} rows)"
    if validation.method == "cv":
        return f"out-of-fold predictions of {validation.folds}-fold cross-validation ({n} rows)"
    return (
        f"all {n} rows (apparent), AUROC, Brier and calibration slope corrected for "
        f"optimism by {validation.resamples} bootstrap resamples"
    )


def internal_validation(validation: Validation) -> InternalValidation:
    """The report's account of how performance was estimated."""
    method, n = validation.method, len(validation.y)
    descriptions = {
        "holdout": "A stratified test split was held out; the model was chosen and fitted "
        "without it and measured on it.",
        "cv": f"The candidates were cross-validated on the same {validation.folds} folds; the "
        "chosen model is measured on its out-of-fold predictions (each row predicted by a "
        "model that did not see it, and any recalibration fitted on the other folds; the "
        "threshold was chosen on these predictions), then refitted on all rows.",
        "bootstrap": f"The optimism-corrected bootstrap: the chosen specification was "
        f"refitted on each of {validation.resamples} bootstrap resamples and measured on it "
        "and on the original rows; the mean difference (the optimism) is subtracted from the "
        "final model's apparent performance. The candidate search is not repeated per "
        "resample (each refit keeps the chosen settings and recalibration), so the optimism "
        "is a lower bound. Corrected intervals are the apparent ones moved by the optimism "
        "(its own uncertainty is not in them); the other figures (sensitivity, specificity, "
        "PPV, NPV, calibration intercept, the curves) are apparent.",
    }
    return InternalValidation(
        method=method,  # type: ignore[arg-type]
        description=descriptions[method],
        measured_on=_measured_on(validation),
        final_model="the training split" + f" ({validation.n_final} rows)"
        if method == "holdout"
        else f"all {validation.n_final} rows",
        n_rows=n,
        folds=validation.folds,
        resamples=validation.resamples,
        optimism=[
            OptimismRow(
                metric=o.metric, apparent=o.apparent, optimism=o.optimism, corrected=o.corrected
            )
            for o in validation.optimism
        ],
    )


def _corrected(metrics: dict[str, Metric], validation: Validation) -> dict[str, Metric]:
    """Bootstrap: the headline metrics moved by their optimism (intervals with them)."""
    corrected = dict(metrics)
    for row in validation.optimism:
        metric = metrics.get(row.metric)
        if metric is None or not np.isfinite(metric.estimate):
            continue
        low, high = metric.ci95
        bounded = (0.0, 1.0) if row.metric in ("auroc", "brier") else (-np.inf, np.inf)
        corrected[row.metric] = replace(
            metric,
            estimate=float(np.clip(metric.estimate - row.optimism, *bounded)),
            ci95=(
                float(np.clip(low - row.optimism, *bounded)),
                float(np.clip(high - row.optimism, *bounded)),
            ),
        )
    return corrected


MEASURE_CONSEQUENCE = (
    "its metrics' 95% CIs are wide and its estimates unstable; measure the model on more "
    "data before relying on it"
)
DEVELOPMENT_CONSEQUENCE = (
    "a model fitted on so few patients is unstable (another sample of the same size could "
    "give other coefficients and risks) and overfits easily; develop it on more data before "
    "relying on it"
)


def small_sample_notice(
    what: str, labels: Any, consequence: str = MEASURE_CONSEQUENCE
) -> str | None:
    """A notice when ``labels`` (0/1) are too few to measure a model on (or, with the
    development ``consequence``, to fit one on), else None."""
    n, events = len(labels), int(sum(labels))
    if n >= SMALL_SAMPLE_ROWS and min(events, n - events) >= MIN_EVENTS:
        return None
    return (
        f"{what} is small ({n} rows, {events} events, {n - events} non-events; medserve "
        f"suggests at least {SMALL_SAMPLE_ROWS} rows and {MIN_EVENTS} of each): {consequence}"
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
        validation=assessment.validation,
        sample_size=(
            sample_size_section(result.sample_size, result.sample_size_consequence)
            if result.sample_size is not None
            else None
        ),
        performance=assessment.performance,
        explanations=assessment.explanations,
        options=prepared.report_options,
        params=params,
        libraries=libraries,
    )


def training_params(request: TrainRequest, result: TrainResult) -> dict[str, Any]:
    """What the registry and the report keep of how the model was trained."""
    model = result.model
    return {
        "family": model.family,
        "requested_family": request.family,
        "seed": request.seed,
        "validation": request.validation,
        "test_size": request.test_size if request.validation == "holdout" else None,
        "time_limit": request.time_limit,
        "candidate": model.info.get("candidate"),
        "selection": result.selection,
        "cv_folds": model.info["cv_folds"],
        "threshold_rule": model.threshold_rule,
        "calibration": model.info["calibration"],
        "estimator": _estimator_params(model),
        # A model that reads notes: its encoder, the weights' sha256 checked before use.
        **({"notes_encoder": model.info["notes_encoder"]} if "notes_encoder" in model.info else {}),
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
    if isinstance(value, tuple | list):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return value is None or isinstance(value, str | int | float | bool)
