"""External validation: a stored model scored and measured on another site's labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medserve.config import Settings
from medserve.data import ReadOptions, table_notices
from medserve.data.disclosure import withheld_columns
from medserve.data.outcome import Outcome, resolve_outcome
from medserve.errors import DataError, Location, option
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.report import (
    ReportOptions,
    data_section,
    evaluation_report,
    performance_sections,
)
from medserve.evaluation.report_types import Estimate, TrainingReport
from medserve.flows.common import explanations_of, load_model, result_json, training_report_of
from medserve.flows.notices import warnings_as_notices
from medserve.flows.report import write_report_files
from medserve.flows.tables import Table, read_source
from medserve.flows.train import small_sample_notice
from medserve.modeling.train import labelled_rows
from medserve.scoring.validation import RecordValidator, frame_problems, problems_notice
from medserve.storage import ModelVersion, Registry

# The metrics shown beside the development ones (as the training report measured them).
COMPARED_METRICS = ("auroc", "brier", "calibration_slope", "calibration_intercept")
# An event rate this many times the development one (or its inverse) is a prevalence shift:
# calibration-in-the-large, PPV and NPV will not carry over.
PREVALENCE_SHIFT = 1.5


@dataclass(frozen=True)
class DevelopmentComparison:
    """The training report's metrics beside the external ones."""

    # Development: the rows the training report's metrics were measured on (the held-out
    # split, or every row out of fold), what they were, and the training data's event
    # rate (None when the version has no readable training report).
    development_rows: int | None
    development_event_rate: float | None
    external_rows: int
    external_event_rate: float
    # metric name → (development, external) estimates with their 95% CIs
    metrics: dict[str, tuple[Estimate | None, Estimate]]
    development_split: str | None = None

    def notices(self) -> list[str]:
        """Warnings on calibration-in-the-large and on a shift of the event rate."""
        said = []
        intercept = self.metrics["calibration_intercept"][1]
        low, high = intercept.ci95
        if intercept.estimate is not None and low is not None and high is not None:
            if low > 0 or high < 0:
                direction = "too low" if intercept.estimate > 0 else "too high"
                said.append(
                    f"calibration-in-the-large is off: the calibration intercept is "
                    f"{intercept.estimate:.2f} (95% CI {low:.2f} to {high:.2f}), so 0 is "
                    f"outside its interval: the model's risks run {direction} on this data; "
                    "recalibrate it here before relying on its risks"
                )
        before, now = self.development_event_rate, self.external_event_rate
        if before and now and not 1 / PREVALENCE_SHIFT <= now / before <= PREVALENCE_SHIFT:
            said.append(
                f"the event rate differs from development: {now:.1%} here against "
                f"{before:.1%} in the training data ({now / before:.2f} times); calibration, "
                "PPV and NPV do not carry over a prevalence shift"
            )
        return said

    def to_json(self) -> dict[str, Any]:
        def side(rows: int | None, rate: float | None, index: int) -> dict[str, Any]:
            estimates = {
                name: pair[index].model_dump(mode="json") if pair[index] else None
                for name, pair in self.metrics.items()
            }
            return {"rows": rows, "event_rate": rate, "metrics": estimates}

        return {
            "development": {
                "split": self.development_split,
                **side(self.development_rows, self.development_event_rate, 0),
            },
            "external": side(self.external_rows, self.external_event_rate, 1),
        }


def compare_with_development(
    trained: TrainingReport | None, metrics: dict[str, Metric], labels: np.ndarray
) -> DevelopmentComparison:
    """The external ``metrics`` beside the training report's metrics."""
    developed = trained.metrics if trained is not None else None
    measured = None
    if trained is not None:
        measured = trained.evaluated_rows.n if trained.evaluated_rows else trained.split.n_test
    return DevelopmentComparison(
        development_split=developed.split if developed is not None else None,
        development_rows=measured,
        development_event_rate=trained.data.event_rate if trained is not None else None,
        external_rows=len(labels),
        external_event_rate=float(np.mean(labels)),
        metrics={
            name: (
                getattr(developed, name) if developed is not None else None,
                Estimate.of(metrics[name]),
            )
            for name in COMPARED_METRICS
        },
    )


@dataclass
class EvaluationOutcome:
    version: ModelVersion
    metrics: dict[str, Metric]
    n_rows: int
    n_events: int
    notices: list[str]
    report_path: str
    report_html: str
    comparison: DevelopmentComparison | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            **result_json(self.version, self.metrics),
            "n_rows": self.n_rows,
            "n_events": self.n_events,
            "comparison": self.comparison.to_json() if self.comparison else None,
            "notices": self.notices,
            "report": self.report_path,
            "report_html": self.report_html,
        }


def evaluate_stored(
    settings: Settings,
    ref: str,
    data: Table,
    target: str | None = None,
    seed: int = 0,
    *,
    groups: list[str] | None = None,
    intended_use: str | None = None,
    model_card: Path | None = None,
    source_name: str | None = None,
    read: ReadOptions | None = None,
    positive: str | None = None,
    positive_if: str | None = None,
) -> EvaluationOutcome:
    """External validation: score new labelled data with a stored model and measure it.

    ``data`` is a file or a DataFrame (named ``source_name`` in the report, or "DataFrame").
    ``positive`` (the event's value) or ``positive_if`` (a rule such as '>0') define the
    event where the data codes the outcome differently from the training data."""
    source = read_source(data, source_name, read=read)
    frame = source.frame.reset_index(drop=True)  # rows are counted by position
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
    outcome = _external_outcome(model.schema.outcome, frame, source.name, target)
    if positive is not None or positive_if is not None:
        outcome = resolve_outcome(frame[outcome.column], outcome.column, positive, positive_if)
    schema = model.schema.model_copy(update={"outcome": outcome})
    trained = training_report_of(settings, version)
    report_options = ReportOptions.build(
        groups=groups or [],
        columns=list(frame.columns),
        outcome=outcome.column,
        source=source.name,
        intended_use=intended_use,
        model_card=model_card,
        inherited=trained.intended_use if trained is not None else None,
        withheld=withheld_columns(schema),
    )
    rows, labels, dropped = labelled_rows(frame, schema)
    notices = list(table_notices(source.frame))  # how the file was read (delimiter, …)
    if dropped:
        notices.append(f"{dropped} rows without an outcome were left out")
    unseen = schema.unseen_rows(rows)
    if unseen:
        counts = ", ".join(f"'{name}' in {len(at)} rows" for name, at in unseen.items())
        notices.append(
            f"levels never seen in training were scored as no known level: {counts}; the "
            "model has learnt nothing about them, so its risks there deserve less trust"
        )
    # The HTTP API's rule, as `medserve predict` applies it: counted, never silent.
    checked = problems_notice(frame_problems(RecordValidator(schema), rows), len(rows))
    notices += [checked] if checked else []
    if labels.min() == labels.max():
        raise DataError(
            f"{source.name}: every row has the same outcome under '{outcome.describe()}' "
            f"(the training definition, unless redefined); '{outcome.column}' holds "
            f"{_values_found(frame[outcome.column])}. If this data codes the outcome "
            f"differently, name the event's value with {option('positive')} or give a rule "
            f"with {option('positive_if')}; external validation needs both events and "
            "non-events",
            location=Location(file=source.name, column=outcome.column),
        )
    with warnings_as_notices(f"measuring {source.name}", notices):
        risk = model.predict_risk(rows)
        metrics = evaluate_predictions(labels, risk, model.threshold, seed=seed)
        performance = performance_sections(
            rows=rows,
            y=labels,
            risk=risk,
            threshold=model.threshold,
            threshold_rule=model.threshold_rule,
            metrics=metrics,
            groups=report_options.groups,
            seed=seed,
        )
        explanations = explanations_of(model, rows)
    small = small_sample_notice(f"{source.name} (the external data)", labels)
    comparison = compare_with_development(trained, metrics, labels)
    notices.extend(([small] if small else []) + comparison.notices())
    report = evaluation_report(
        version=version,
        data=data_section(
            frame, schema, version.family, source=source.name, sha256=source.sha256()
        ),
        metrics=metrics,
        notices=notices,
        performance=performance,
        explanations=explanations,
        options=report_options,
    )
    report_path = _evaluation_report_path(settings, version)
    report_html = write_report_files(report_path, report, version.ref)
    return EvaluationOutcome(
        version=version,
        metrics=metrics,
        n_rows=len(labels),
        n_events=int(labels.sum()),
        comparison=comparison,
        notices=notices,
        report_path=str(report_path),
        report_html=str(report_html),
    )


def _external_outcome(
    trained: Outcome | None, frame: pd.DataFrame, source: str, target: str | None
) -> Outcome:
    """The training outcome definition on ``target`` (default: the training column),
    which must be a column of the external data."""
    assert trained is not None
    outcome = trained
    if target is not None and target != outcome.column:
        outcome = outcome.model_copy(update={"column": target})
    if outcome.column not in frame.columns:
        raise DataError(
            f"{source}: outcome column '{outcome.column}' not found; name it with "
            f"{option('target')}",
            location=Location(file=source, column=outcome.column),
        )
    return outcome


def _values_found(values: pd.Series, limit: int = 8) -> str:
    """The distinct values of an outcome column, for a message: "yes (120), no (80)"."""
    counts = values.dropna().astype(str).str.strip().value_counts()
    if counts.empty:
        return "no values"
    shown = ", ".join(f"'{value}' ({n})" for value, n in counts.head(limit).items())
    return shown + (", …" if len(counts) > limit else "")


def _evaluation_report_path(settings: Settings, version: ModelVersion) -> Path:
    """A new file beside the version's training report, named by the time (UTC)."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    relative = Path("reports") / version.name / f"v{version.version}" / f"evaluation-{stamp}.json"
    return (settings.home / relative).resolve()
