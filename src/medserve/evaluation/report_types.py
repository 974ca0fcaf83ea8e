"""The model report as typed documents: one pydantic model per section, a training report
and an external-validation report, told apart by ``kind``.

These models are the report's contract. The builder (``evaluation.report``) returns them,
the HTML page (``reporting.html``) reads them, and their JSON schema is published beside
the page's template (``reporting/report.schema.json``) for the dashboard and the FHIR
channel. Sections that reports written before the full report lack are optional.

Aggregates only: no field holds a patient's row (curves are rates, calibration is bins and
a smoothed line on a grid, subgroups are counts and metrics, explanations are importances
and binned distributions).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from medserve.data.schema import ColumnType, Role
from medserve.evaluation.metrics import Metric
from medserve.evaluation.model_card import IntendedUse


class Section(BaseModel):
    """A part of a report: unknown keys are refused, and it is not changed once built."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Estimate(Section):
    """A point estimate with its 95% interval; null where undefined, with the reason.

    ``ci_method`` says how the interval was computed ("bootstrap": percentile bootstrap
    over the rows; "wilson": Wilson score interval of a proportion); null in reports
    written before it was recorded (bootstrap)."""

    estimate: float | None
    ci95: tuple[float | None, float | None] = (None, None)
    ci_method: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, metric: Metric) -> Estimate:
        """The metric's JSON form as an estimate (keys the report does not hold, such as
        resample counts, are left out)."""
        fields = metric.to_dict()
        return cls.model_validate({k: v for k, v in fields.items() if k in cls.model_fields})


class ObservedExpected(Estimate):
    """Observed events over the sum of predicted risks (O:E), with both counts."""

    observed: int
    expected: float


# --- data ----------------------------------------------------------------------------------


class ColumnSummary(Section):
    name: str
    type: ColumnType
    role: Role
    missing_fraction: float
    missing_tokens: list[str] = []
    missing_handling: str


class DataSection(Section):
    """The table the report measures: where it came from, its size, outcome and columns."""

    source: str
    sha256: str
    rows: int
    outcome: str | None = None
    rows_with_outcome: int | None = None
    events: int | None = None
    event_rate: float | None = None
    columns: list[ColumnSummary] = []
    # The de-identification report of `train --deid` (its shape is deid's); null otherwise.
    deidentification: dict[str, Any] | None = None
    # Notes the model reads as written, not de-identified (`--text-not-deidentified`): the
    # model is then not Safe Harbor de-identified.
    notes_not_deidentified: list[str] = []


class Split(Section):
    n_train: int
    n_test: int


# --- internal validation and sample size ---------------------------------------------------


class OptimismRow(Section):
    """A metric as measured on the rows the model was fitted on (apparent), its bootstrap
    estimate of optimism, and the optimism-corrected value (apparent − optimism)."""

    metric: str
    apparent: float
    optimism: float
    corrected: float


class InternalValidation(Section):
    """How performance was estimated on the development data (TRIPOD+AI 12a, 12c), and what
    the registered model was fitted on."""

    method: Literal["holdout", "cv", "bootstrap"]
    description: str
    measured_on: str
    final_model: str
    n_rows: int
    folds: int | None = None
    resamples: int | None = None
    optimism: list[OptimismRow] = []

    @model_validator(mode="after")
    def _optimism_is_bootstrap_only(self) -> InternalValidation:
        if self.optimism and self.method != "bootstrap":
            raise ValueError(f"optimism rows come from the bootstrap, not from {self.method}")
        return self


class SampleSizeCriterion(Section):
    key: str
    description: str
    minimum_rows: int


class SampleSize(Section):
    """Riley et al. (BMJ 2020) minimum sample size for developing the model (TRIPOD+AI 10),
    the development data's rows and events against it, and what training did about it."""

    method: str = "the pmsampsize criteria for a binary outcome (BMJ 2020;368:m441)"
    n_parameters: int
    prevalence: float
    r2_cs: float
    r2_source: str
    max_r2_cs: float
    criteria: list[SampleSizeCriterion]
    minimum_rows: int
    minimum_events: int
    minimum_events_per_parameter: float
    n_rows: int
    events: int
    events_per_parameter: float
    meets: bool
    shortfall: str | None = None
    consequence: str | None = None


# --- the TRIPOD+AI checklist ---------------------------------------------------------------


class TripodItem(Section):
    """One TRIPOD+AI item: where the report answers it (a dotted path into the report, or
    ``model_card.KEY`` for text people write), and the short answer where it is a fact."""

    item: str
    title: str
    status: Literal["answered", "to be written", "not applicable"]
    where: str | None = None
    answer: str | None = None


class TripodChecklist(Section):
    guideline: str = "TRIPOD+AI (BMJ 2024;385:e078378)"
    items: list[TripodItem]


# --- the model -----------------------------------------------------------------------------


class LeaderboardRow(Section):
    """One candidate family's cross-validation on the training split (null when it failed)."""

    family: str
    auroc_mean: float | None = None
    auroc_sd: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    fit_seconds: float = 0.0
    selected: bool = False
    error: str | None = None


class Recalibration(Section):
    method: str
    oof_log_loss_raw: float | None = None
    oof_log_loss_calibrated: float | None = None


class ChosenModel(Section):
    """What training chose: the family, threshold, recalibration and settings."""

    family: str
    threshold: float
    threshold_rule: str | None = None
    calibration: Recalibration | None = None
    cv_folds: int | None = None
    # How the leaderboard's candidates were ranked (None in reports before it was kept).
    selection: str | None = None
    leaderboard: list[LeaderboardRow] = []
    hyperparameters: dict[str, Any] = {}
    seed: int | None = None
    libraries: dict[str, str] = {}


class ValidatedModel(Section):
    """The stored version an external validation measured."""

    name: str
    version: int
    family: str
    threshold: float
    trained_at: datetime
    training_data_sha256: str
    hyperparameters: dict[str, Any] = {}
    libraries: dict[str, str] = {}


# --- performance ---------------------------------------------------------------------------


class MetricsSection(Section):
    """Every metric with its interval, and which rows they were measured on."""

    split: str
    auroc: Estimate | None = None
    auprc: Estimate | None = None
    brier: Estimate | None = None
    accuracy: Estimate | None = None
    sensitivity: Estimate | None = None
    specificity: Estimate | None = None
    ppv: Estimate | None = None
    npv: Estimate | None = None
    f1: Estimate | None = None
    calibration_slope: Estimate | None = None
    calibration_intercept: Estimate | None = None

    @classmethod
    def of(cls, split: str, metrics: dict[str, Metric]) -> MetricsSection:
        return cls(split=split, **{name: Estimate.of(m) for name, m in metrics.items()})


class EvaluatedRows(Section):
    n: int
    events: int


class RocCurve(Section):
    fpr: list[float]
    tpr: list[float]


class PrecisionRecallCurve(Section):
    recall: list[float]
    precision: list[float]
    prevalence: float


class OperatingPoint(Section):
    """Where the chosen threshold lies on the ROC and precision-recall curves."""

    fpr: float | None
    tpr: float | None
    precision: float | None


class Discrimination(Section):
    auroc: Estimate
    auprc: Estimate
    roc: RocCurve
    pr: PrecisionRecallCurve
    operating_point: OperatingPoint


class Confusion(Section):
    tp: int
    fp: int
    fn: int
    tn: int


class ClassificationMetrics(Section):
    sensitivity: Estimate
    specificity: Estimate
    ppv: Estimate
    npv: Estimate
    f1: Estimate
    accuracy: Estimate


class Classification(Section):
    threshold: float
    threshold_rule: str
    confusion: Confusion
    metrics: ClassificationMetrics


class CalibrationBin(Section):
    mean_risk: float
    observed: float
    n: int
    events: int
    ci95: tuple[float, float]


class BinnedCalibration(Section):
    strategy: str
    bins: list[CalibrationBin]


class SmoothedCalibration(Section):
    method: str
    risk: list[float]
    observed: list[float]


class RiskHistogram(Section):
    edges: list[float]
    events: list[int]
    non_events: list[int]


class Calibration(Section):
    slope: Estimate
    intercept: Estimate
    brier: Estimate
    binned: BinnedCalibration
    smoothed: SmoothedCalibration
    oe_ratio: ObservedExpected
    risk_histogram: RiskHistogram


class DecisionCurve(Section):
    method: str
    thresholds: list[float]
    model: list[float]
    treat_all: list[float]
    treat_none: list[float]
    prevalence: float
    model_threshold: float | None = None


class SubgroupMetrics(Section):
    """The core metrics within one level; null where the level cannot estimate them."""

    auroc: Estimate | None = None
    sensitivity: Estimate | None = None
    specificity: Estimate | None = None
    ppv: Estimate | None = None
    npv: Estimate | None = None
    brier: Estimate | None = None
    oe_ratio: Estimate | None = None


class SubgroupLevel(Section):
    level: str
    n: int
    events: int
    event_rate: float
    judged: bool
    note: str | None = None
    metrics: SubgroupMetrics = SubgroupMetrics()


class SubgroupColumn(Section):
    column: str
    quartiles: bool
    levels: list[SubgroupLevel]


class Subgroups(Section):
    min_rows: int
    min_events: int
    rule: str
    groups: list[SubgroupColumn] = []


class Performance(Section):
    """What the predictions on the evaluated rows show, section by section."""

    evaluated_rows: EvaluatedRows
    discrimination: Discrimination
    classification: Classification
    calibration: Calibration
    decision_curve: DecisionCurve
    subgroups: Subgroups


# --- explanations --------------------------------------------------------------------------


class Importance(Section):
    column: str
    mean_abs: float


class ContributionBins(Section):
    """A column's contributions binned (edges shared by all columns), and per bin the mean
    scaled value (0 low .. 1 high) of its records, null where not shown."""

    column: str
    edges: list[float]
    counts: list[int]
    value_level: list[float | None]


class Explanations(Section):
    space: str
    method: str
    n: int
    importance: list[Importance]
    distribution: list[ContributionBins]


# --- external validation beside development -----------------------------------------------

# The metrics an external validation shows beside the development ones.
ComparedMetric = Literal["auroc", "brier", "calibration_slope", "calibration_intercept"]


class DevelopmentPerformance(Section):
    """The model as its training report measured it: on which rows (``split``), how many,
    the training data's event rate, and the compared metrics; null throughout when the
    version has no readable training report."""

    split: str | None = None
    rows: int | None = None
    event_rate: float | None = None
    metrics: dict[ComparedMetric, Estimate | None] = {}


class ExternalPerformance(Section):
    """The model on the external data: its labelled rows, their event rate and the metrics."""

    rows: int
    event_rate: float
    metrics: dict[ComparedMetric, Estimate]


class DevelopmentComparison(Section):
    """Development beside external performance, each metric with its 95% CI, and the
    warnings on what does not carry over (calibration-in-the-large off, the event rate
    shifted)."""

    development: DevelopmentPerformance
    external: ExternalPerformance
    warnings: list[str] = []


# --- the reports ---------------------------------------------------------------------------


class _Report(Section):
    kind: str
    created_at: datetime
    data: DataSection
    metrics: MetricsSection
    evaluated_rows: EvaluatedRows | None = None
    discrimination: Discrimination | None = None
    classification: Classification | None = None
    calibration: Calibration | None = None
    decision_curve: DecisionCurve | None = None
    subgroups: Subgroups | None = None
    explanations: Explanations | None = None
    intended_use: IntendedUse = IntendedUse()
    notices: list[str] = []


class TrainingReport(_Report):
    """A model measured on the data it was developed on, as ``validation`` says (out of
    fold, optimism-corrected, or a held-out split; reports before it: a held-out split)."""

    kind: Literal["training"] = "training"
    split: Split
    model: ChosenModel
    validation: InternalValidation | None = None
    sample_size: SampleSize | None = None
    tripod: TripodChecklist | None = None


class EvaluationReport(_Report):
    """A stored model measured on another site's or period's labelled data."""

    kind: Literal["external validation"] = "external validation"
    model: ValidatedModel
    # Null in reports written before it was kept.
    comparison: DevelopmentComparison | None = None


Report = TrainingReport | EvaluationReport
ReportDocument = Annotated[Report, Field(discriminator="kind")]
REPORT_DOCUMENT: TypeAdapter[Report] = TypeAdapter(ReportDocument)


def parse_report(document: Any) -> Report:
    """A stored report's JSON (a dict) as its typed report; pydantic's ValidationError if it
    is not one."""
    return REPORT_DOCUMENT.validate_python(document)
