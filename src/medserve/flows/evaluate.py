"""External validation: a stored model scored and measured on another site's labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medserve.config import Settings
from medserve.data import ReadOptions, table_notices
from medserve.data.disclosure import withheld_columns
from medserve.data.outcome import Outcome, resolve_outcome
from medserve.errors import ConfigError, DataError, Location, option
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.comparison import compare_with_development
from medserve.evaluation.report import (
    ReportOptions,
    data_section,
    evaluation_report,
    performance_sections,
)
from medserve.evaluation.report_types import DevelopmentComparison
from medserve.flows.common import explanations_of, load_model, result_json, training_report_of
from medserve.flows.notices import warnings_as_notices
from medserve.flows.predict import refuse_problems
from medserve.flows.report import write_report_files
from medserve.flows.tables import Table, read_source
from medserve.flows.train import small_sample_notice
from medserve.modeling.train import labelled_rows
from medserve.scoring.validation import RecordValidator, frame_problems, problems_notice
from medserve.security.local_audit import record_local_action
from medserve.storage import ModelVersion, Registry

__all__ = ["DevelopmentComparison", "EvaluationOutcome", "evaluate_stored"]


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
            "comparison": self.comparison.model_dump(mode="json") if self.comparison else None,
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
    strict: bool = False,
    channel: str = "cli",
) -> EvaluationOutcome:
    """External validation: score new labelled data with a stored model and measure it.

    ``data`` is a file or a DataFrame (named ``source_name`` in the report, or "DataFrame").
    ``positive`` (the event's value) or ``positive_if`` (a rule such as '>0') define the
    event where the data codes the outcome differently from the training data.

    Each labelled row is checked by the HTTP API's rule (``scoring.validation``): a notice
    counts the rows it would refuse, or with ``strict`` such a file is refused (the first
    such row named) before anything is scored. The audit trail records the evaluation
    (``channel`` "cli" or "python") before the report is written: no record, no report."""
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
    # The HTTP API's rule, as `medserve predict` applies it: counted, never silent; with
    # `strict`, refused. Checked on the whole frame so that a problem names the file's row.
    labelled = set(rows.index)
    problems = [p for p in frame_problems(RecordValidator(schema), frame) if p.record in labelled]
    if strict:
        refuse_problems(problems)
    checked = problems_notice(problems, len(rows))
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
    notices.extend(([small] if small else []) + comparison.warnings)
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
        comparison=comparison,
    )
    # Patients' labelled records were scored: the trail says who, with which model and how
    # many, before the report is written (no record, no report: fail closed).
    with Registry(settings) as registry:
        record_local_action(
            settings, registry.engine, "evaluate", version, n_records=len(rows), channel=channel
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
    if trained is None and target is None:  # an imported model whose schema file has none
        raise ConfigError(
            "this model has no outcome definition (its schema file names no target): name "
            f"the outcome column with {option('target')} and the event's value with "
            f"{option('positive')}"
        )
    outcome = trained or Outcome(column=str(target), positive="1")
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
