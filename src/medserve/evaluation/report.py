"""The model report, built as typed sections (``evaluation.report_types``), TRIPOD+AI
style: what was learned from what, how well it discriminates, classifies and is calibrated,
whether it is useful, for whom it works, and what it is for.

Aggregates only: a report is shared widely, so it never holds a patient's row (curves
are point lists of rates, calibration is bins and a smoothed line on a grid, subgroups
are counts and metrics, explanations are importances and binned distributions).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medserve.data.disclosure import shown_tokens, withheld_columns
from medserve.data.schema import ColumnSpec, Schema
from medserve.evaluation.curves import confusion_counts, pr_points, roc_points
from medserve.evaluation.decision import decision_curve
from medserve.evaluation.metrics import Metric
from medserve.evaluation.model_card import (
    IntendedUse,
    ModelCard,
    intended_use_section,
    read_model_card,
)
from medserve.evaluation.reliability import reliability
from medserve.evaluation.report_types import (
    Calibration,
    ChosenModel,
    Classification,
    ClassificationMetrics,
    DataSection,
    DecisionCurve,
    DevelopmentComparison,
    Discrimination,
    Estimate,
    EvaluatedRows,
    EvaluationReport,
    Explanations,
    InternalValidation,
    LeaderboardRow,
    MetricsSection,
    OperatingPoint,
    Performance,
    SampleSize,
    SampleSizeCriterion,
    Split,
    TrainingReport,
    ValidatedModel,
)
from medserve.evaluation.subgroups import check_group_columns, subgroup_table
from medserve.evaluation.tripod import tripod_checklist
from medserve.modeling.families import find_family
from medserve.modeling.sample_size import SampleSizeCheck

CLASSIFICATION_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1", "accuracy")


@dataclass
class ReportOptions:
    """What the user asked the report to cover: subgroup columns, intended use, and the
    model card's text for the TRIPOD+AI items people write."""

    groups: list[str] = field(default_factory=list)
    intended_use: IntendedUse = field(default_factory=IntendedUse)
    card: ModelCard = field(default_factory=ModelCard)

    @classmethod
    def build(
        cls,
        *,
        groups: Sequence[str],
        columns: Sequence[str],
        outcome: str | None,
        source: str,
        intended_use: str | None = None,
        model_card: Path | None = None,
        inherited: IntendedUse | None = None,
        withheld: Collection[str] = (),
    ) -> ReportOptions:
        """Check the options against the data before any work starts (ConfigError if not).

        ``inherited`` is an earlier report's intended-use section, used when neither
        ``intended_use`` nor ``model_card`` is given (external validation of a model).
        ``withheld``: columns whose values may not be published (``data.disclosure``)."""
        chosen = check_group_columns(
            groups, list(columns), outcome=outcome, source=source, withheld=withheld
        )
        card = read_model_card(model_card) if model_card is not None else None
        if card is None and not intended_use and inherited is not None and inherited.supplied:
            return cls(groups=chosen, intended_use=inherited)
        section = intended_use_section(card, intended_use, model_card.name if model_card else None)
        return cls(groups=chosen, intended_use=section, card=card or ModelCard())


def _missing_handling(spec: ColumnSpec, family: str | None) -> str:
    if spec.role != "feature":
        return f"not a feature ({spec.role})"
    # A family that takes missing values as they are (no imputation in its pipeline) says so.
    known = find_family(family)
    native = known.native_missing if known is not None else None
    if spec.numeric_encoded:
        if family is None:
            return "median imputation with a missing indicator (LightGBM: routed natively)"
        if native:
            return f"left missing: {native.by} routes missing values natively"
        return "median imputation with a missing indicator"
    if native and native.levels:
        return f"left missing: {native.by} gives it its own bin"
    return "kept as its own level '(missing)'"


def data_summary(frame: pd.DataFrame, schema: Schema, family: str | None = None) -> dict[str, Any]:
    """Rows, events, event rate and per-column type and missingness; ``family`` says how
    the model handles missing values (both ways are described when it is not known).
    The fields of the report's data section (``data_section`` types them)."""
    summary: dict[str, Any] = {"rows": int(len(frame))}
    if schema.outcome is not None and schema.outcome.column in frame.columns:
        target = frame[schema.outcome.column].dropna()
        events = int(schema.outcome.binarise(target).sum())
        summary.update(
            outcome=schema.outcome.describe(),
            rows_with_outcome=int(len(target)),
            events=events,
            event_rate=events / len(target) if len(target) else None,
        )
    withheld = withheld_columns(schema)
    summary["columns"] = [
        {
            "name": spec.name,
            "type": spec.type,
            "role": spec.role,
            "missing_fraction": round(spec.missing_fraction, 4),
            # What of its tokens may be published (data/disclosure.py).
            "missing_tokens": shown_tokens(spec, withheld),
            "missing_handling": _missing_handling(spec, family),
        }
        for spec in schema.columns
    ]
    return summary


def data_section(
    frame: pd.DataFrame,
    schema: Schema,
    family: str | None = None,
    *,
    source: str,
    sha256: str,
    deidentification: dict[str, Any] | None = None,
) -> DataSection:
    """The report's data section: where the table came from, and its summary."""
    return DataSection(
        source=source,
        sha256=sha256,
        **data_summary(frame, schema, family),
        deidentification=deidentification,
        notes_not_deidentified=list(
            (schema.deidentification or {}).get("notes_not_deidentified") or []
        ),
    )


def performance_sections(
    *,
    rows: pd.DataFrame,
    y: np.ndarray,
    risk: np.ndarray,
    threshold: float,
    threshold_rule: str,
    metrics: dict[str, Metric],
    groups: Sequence[str] = (),
    seed: int = 0,
) -> Performance:
    """Discrimination, classification, calibration, decision curve and subgroups."""
    y = np.asarray(y, dtype=int)
    risk = np.asarray(risk, dtype=float)
    sensitivity = metrics["sensitivity"].estimate
    specificity = metrics["specificity"].estimate
    return Performance(
        evaluated_rows=EvaluatedRows(n=int(len(y)), events=int(y.sum())),
        discrimination=Discrimination(
            auroc=Estimate.of(metrics["auroc"]),
            auprc=Estimate.of(metrics["auprc"]),
            roc=roc_points(y, risk),
            pr=pr_points(y, risk),
            operating_point=OperatingPoint(
                fpr=_finite(1 - specificity),
                tpr=_finite(sensitivity),
                precision=_finite(metrics["ppv"].estimate),
            ),
        ),
        classification=Classification(
            threshold=threshold,
            threshold_rule=threshold_rule,
            confusion=confusion_counts(y, risk, threshold),
            metrics=ClassificationMetrics(
                **{name: Estimate.of(metrics[name]) for name in CLASSIFICATION_METRICS}
            ),
        ),
        calibration=Calibration(
            slope=Estimate.of(metrics["calibration_slope"]),
            intercept=Estimate.of(metrics["calibration_intercept"]),
            brier=Estimate.of(metrics["brier"]),
            **reliability(y, risk),
        ),
        decision_curve=DecisionCurve(**decision_curve(y, risk), model_threshold=threshold),
        subgroups=subgroup_table(rows, y, risk, threshold, groups, seed=seed),
    )


def sample_size_section(check: SampleSizeCheck, consequence: str | None = None) -> SampleSize:
    """The report's sample-size section from Riley et al.'s check (``modeling.sample_size``);
    ``consequence`` says what training did about it (e.g. kept to simpler families)."""
    return SampleSize(
        n_parameters=check.n_parameters,
        prevalence=check.prevalence,
        r2_cs=check.r2_cs,
        r2_source=check.r2_source,
        max_r2_cs=check.max_r2_cs,
        criteria=[
            SampleSizeCriterion(
                key=criterion.key,
                description=criterion.description,
                minimum_rows=criterion.minimum_rows,
            )
            for criterion in check.criteria
        ],
        minimum_rows=check.minimum_rows,
        minimum_events=check.minimum_events,
        minimum_events_per_parameter=check.minimum_events_per_parameter,
        n_rows=check.n_rows,
        events=check.events,
        events_per_parameter=check.events_per_parameter,
        meets=check.meets,
        shortfall=check.shortfall_notice(),
        consequence=consequence,
    )


def training_report(
    *,
    data: DataSection,
    model: Any,
    leaderboard: Sequence[LeaderboardRow],
    metrics: dict[str, Metric],
    n_train: int,
    n_test: int,
    notices: list[str],
    performance: Performance | None = None,
    explanations: Explanations | None = None,
    options: ReportOptions | None = None,
    params: dict[str, Any] | None = None,
    libraries: dict[str, str] | None = None,
    validation: InternalValidation | None = None,
    sample_size: SampleSize | None = None,
) -> TrainingReport:
    """The report of a training run: ``model`` is the trained model (its family, threshold
    and training record), measured on the held-out test split, or as ``validation`` says
    (cross-validation or bootstrap on all rows). The TRIPOD+AI checklist is built from the
    finished report and the model card of ``options``."""
    options = options or ReportOptions()
    params = params or {}
    split = validation.measured_on if validation is not None else "held-out test"
    report = TrainingReport(
        created_at=datetime.now(UTC),
        data=data,
        split=Split(n_train=n_train, n_test=n_test),
        model=ChosenModel(
            family=model.family,
            threshold=model.threshold,
            threshold_rule=model.threshold_rule,
            calibration=model.info.get("calibration"),
            cv_folds=model.info.get("cv_folds"),
            selection=params.get("selection"),
            leaderboard=list(leaderboard),
            hyperparameters=params.get("estimator", {}),
            seed=params.get("seed"),
            libraries=libraries or {},
        ),
        metrics=MetricsSection.of(split, metrics),
        **_sections(performance),
        explanations=explanations,
        intended_use=options.intended_use,
        notices=notices,
        validation=validation,
        sample_size=sample_size,
    )
    return report.model_copy(update={"tripod": tripod_checklist(report, options.card)})


def evaluation_report(
    *,
    version: Any,
    data: DataSection,
    metrics: dict[str, Metric],
    notices: list[str],
    performance: Performance | None = None,
    explanations: Explanations | None = None,
    options: ReportOptions | None = None,
    comparison: DevelopmentComparison | None = None,
) -> EvaluationReport:
    """The report of an external validation of the stored ``version`` (a ModelVersion),
    with ``comparison``: its development performance beside the external one."""
    options = options or ReportOptions()
    return EvaluationReport(
        created_at=datetime.now(UTC),
        model=ValidatedModel(
            name=version.name,
            version=version.version,
            family=version.family,
            threshold=version.threshold,
            trained_at=version.created_at,
            training_data_sha256=version.data_sha256,
            hyperparameters=version.params.get("estimator", {}),
            libraries=version.lineage.get("libraries", {}),
        ),
        data=data,
        metrics=MetricsSection.of("all labelled rows", metrics),
        **_sections(performance),
        explanations=explanations,
        intended_use=options.intended_use,
        notices=notices,
        comparison=comparison,
    )


def _sections(performance: Performance | None) -> dict[str, Any]:
    """The performance sections as report fields (none: a report without them)."""
    return dict(performance) if performance is not None else {}


def _finite(value: float) -> float | None:
    return None if not np.isfinite(value) else float(value)
