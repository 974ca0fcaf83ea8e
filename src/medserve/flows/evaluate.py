"""External validation: a stored model scored and measured on another site's labelled data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from medserve.config import Settings
from medserve.data import ReadOptions
from medserve.data.disclosure import withheld_columns
from medserve.errors import DataError, Location, option
from medserve.evaluation import Metric, evaluate_predictions
from medserve.evaluation.report import (
    ReportOptions,
    data_section,
    evaluation_report,
    performance_sections,
)
from medserve.flows.common import explanations_of, load_model, result_json, training_report_of
from medserve.flows.notices import warnings_as_notices
from medserve.flows.report import write_report_files
from medserve.flows.tables import Table, read_source
from medserve.modeling.train import labelled_rows
from medserve.storage import ModelVersion, Registry


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
) -> EvaluationOutcome:
    """External validation: score new labelled data with a stored model and measure it.

    ``data`` is a file or a DataFrame (named ``source_name`` in the report, or "DataFrame")."""
    source = read_source(data, source_name, read=read)
    frame = source.frame.reset_index(drop=True)  # rows are counted by position
    with Registry(settings) as registry:
        version, model = load_model(registry, ref)
    outcome = model.schema.outcome
    assert outcome is not None
    if target is not None and target != outcome.column:
        outcome = outcome.model_copy(update={"column": target})
    if outcome.column not in frame.columns:
        raise DataError(
            f"{source.name}: outcome column '{outcome.column}' not found; name it with "
            f"{option('target')}",
            location=Location(file=source.name, column=outcome.column),
        )
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
    notices = [f"{dropped} rows without an outcome were left out"] if dropped else []
    unseen = schema.unseen_rows(rows)
    if unseen:
        counts = ", ".join(f"'{name}' in {len(at)} rows" for name, at in unseen.items())
        notices.append(
            f"levels never seen in training were scored as no known level: {counts}; the "
            "model has learnt nothing about them, so its risks there deserve less trust"
        )
    if labels.min() == labels.max():
        raise DataError(
            f"{source.name}: every row has the same outcome under '{outcome.describe()}'; "
            "external validation needs both events and non-events"
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
        notices=notices,
        report_path=str(report_path),
        report_html=str(report_html),
    )


def _evaluation_report_path(settings: Settings, version: ModelVersion) -> Path:
    """A new file beside the version's training report, named by the time (UTC)."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    relative = Path("reports") / version.name / f"v{version.version}" / f"evaluation-{stamp}.json"
    return (settings.home / relative).resolve()
