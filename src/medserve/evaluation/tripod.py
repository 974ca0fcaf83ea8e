"""The TRIPOD+AI checklist of a training report (Collins GS, Moons KGM, Dhiman P, et al.
TRIPOD+AI statement: updated guidance for reporting clinical prediction models that use
regression or machine learning methods. BMJ 2024;385:e078378).

Each item the software can answer points to where the report answers it (a dotted path
into the report's JSON) with a short answer where it is a fact. Items that people write
(background, ethics, funding, interpretation, …) point to the model-card key that answers
them (``model_card.KEY``, see ``model_card.ModelCard``) and are "to be written" until the
card supplies it; a card may also say "not applicable".
Titles are short paraphrases of the items, not the guideline's wording.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from medserve.evaluation.model_card import ModelCard
from medserve.evaluation.report_types import (
    Estimate,
    TrainingReport,
    TripodChecklist,
    TripodItem,
)

Status = Literal["answered", "to be written", "not applicable"]
# An item's status, where the report answers it, and the short answer.
_Answer = tuple[Status, str | None, str | None]

_NOT_APPLICABLE = {"not applicable", "n/a"}
_SHOWN_PREDICTORS = 12
# Hyper-parameters by which a family weights or resamples the rarer class.
_IMBALANCE_PARAMETERS = ("class_weight", "is_unbalance", "scale_pos_weight", "sample_weight")


@dataclass(frozen=True)
class _Written:
    """An item people write, answered by the model-card key ``key``."""

    item: str
    title: str
    key: str


@dataclass(frozen=True)
class _Filled:
    """An item the software answers from the report."""

    item: str
    title: str
    answer: Callable[[TrainingReport], _Answer]


def _answered(where: str, answer: str | None) -> _Answer:
    return ("answered", where, answer)


def _to_write(where: str) -> _Answer:
    return ("to be written", where, None)


def _not_applicable(where: str | None, why: str) -> _Answer:
    return ("not applicable", where, why)


def _split_where(report: TrainingReport) -> str:
    return "validation" if report.validation is not None else "split"


def _data_source(report: TrainingReport) -> _Answer:
    data = report.data
    return _answered("data", f"{data.source}: {data.rows:,} rows (SHA-256 {data.sha256[:12]}…)")


def _preparation(report: TrainingReport) -> _Answer:
    answer = "each column's type inferred and every value read against it; missingness per column"
    deid = report.data.deidentification
    if deid is not None:
        answer += f"; de-identified before training ({deid.get('standard', 'medserve deid')})"
    return _answered("data.columns", answer)


def _outcome(report: TrainingReport) -> _Answer:
    if report.data.outcome is None:
        return _to_write("data.outcome")
    return _answered("data.outcome", f"outcome: {report.data.outcome}")


def _predictor_names(report: TrainingReport) -> list[str]:
    return [column.name for column in report.data.columns if column.role == "feature"]


def _predictors(report: TrainingReport) -> _Answer:
    names = _predictor_names(report)
    if not names:
        return _to_write("data.columns")
    shown = ", ".join(names[:_SHOWN_PREDICTORS])
    more = f" and {len(names) - _SHOWN_PREDICTORS} more" if len(names) > _SHOWN_PREDICTORS else ""
    noun = "predictor" if len(names) == 1 else "predictors"
    return _answered("data.columns", f"{len(names)} candidate {noun}: {shown}{more}")


def _sample_size(report: TrainingReport) -> _Answer:
    size = report.sample_size
    if size is None:
        return _to_write("sample_size")
    verdict = "enough" if size.meets else "fewer than needed"
    answer = (
        f"at least {size.minimum_rows:,} rows with {size.minimum_events:,} events for "
        f"{size.n_parameters} candidate parameters (BMJ 2020;368:m441); the data have "
        f"{size.n_rows:,} rows with {size.events:,} events: {verdict}"
    )
    if size.consequence:
        answer += f"; {size.consequence}"
    return _answered("sample_size", answer)


def _missing_data(report: TrainingReport) -> _Answer:
    features = [column for column in report.data.columns if column.role == "feature"]
    if not features:
        return _to_write("data.columns")
    with_missing = [column for column in features if column.missing_fraction > 0]
    if not with_missing:
        return _answered("data.columns", "no predictor has missing values")
    handling = sorted({column.missing_handling for column in with_missing})
    return _answered(
        "data.columns",
        f"{len(with_missing)} of {len(features)} predictors have missing values; "
        f"handled by {'; '.join(handling)}",
    )


def _data_use(report: TrainingReport) -> _Answer:
    if report.validation is not None:
        return _answered("validation", report.validation.description)
    split = report.split
    return _answered(
        "split",
        f"stratified split: {split.n_train:,} rows for cross-validation and fitting, "
        f"{split.n_test:,} held out for every performance measure",
    )


def _predictor_handling(report: TrainingReport) -> _Answer:
    return _answered(
        "data.columns",
        f"as the {report.model.family} pipeline encodes each column's type, with its "
        "missing-value handling per column",
    )


def _model_building(report: TrainingReport) -> _Answer:
    model = report.model
    candidates = [row.family for row in model.leaderboard if row.error is None]
    answer = model.family
    if len(candidates) > 1:
        folds = f" over {model.cv_folds} folds" if model.cv_folds else ""
        rule = model.selection or "cross-validated AUROC"
        answer += f", chosen by {rule}{folds} among {', '.join(candidates)}"
    if model.hyperparameters:
        answer += "; hyper-parameters in model.hyperparameters"
    validation = report.validation
    method = validation.description if validation is not None else "held-out test split"
    return _answered("model", f"{answer}; internal validation: {method}")


def _group_columns(report: TrainingReport) -> list[str]:
    if report.subgroups is None:
        return []
    return [group.column for group in report.subgroups.groups]


def _heterogeneity(report: TrainingReport) -> _Answer:
    columns = _group_columns(report)
    if not columns:
        return _not_applicable(None, "no cluster or group column requested (--group)")
    return _answered("subgroups", f"performance within each level of {', '.join(columns)}")


def _measures(report: TrainingReport) -> _Answer:
    if report.discrimination is None:
        return _answered("metrics", "the metrics with their 95% intervals")
    return _answered(
        "metrics",
        "discrimination (AUROC, AUPRC; ROC and precision-recall curves), calibration (slope, "
        "intercept, observed/expected, Brier; calibration plot), classification at the "
        "threshold (sensitivity, specificity, PPV, NPV, F1, accuracy), clinical utility "
        "(decision curve)",
    )


def _updating(report: TrainingReport) -> _Answer:
    calibration = report.model.calibration
    if calibration is None:
        return _to_write("model.calibration")
    if calibration.method == "none":
        return _answered("model.calibration", "no recalibration")
    return _answered(
        "model.calibration", f"{calibration.method} recalibration on out-of-fold predictions"
    )


def _predictions(report: TrainingReport) -> _Answer:
    return _answered(
        "model",
        "the registered model is one pipeline from a raw record to a risk, served by "
        "medserve (the CLI's medserve predict, the HTTP API)",
    )


def _imbalance(report: TrainingReport) -> _Answer:
    params = report.model.hyperparameters
    used = [f"{name}={params[name]}" for name in _IMBALANCE_PARAMETERS if name in params]
    if used:
        return _answered("model.hyperparameters", f"class weighting: {', '.join(used)}")
    return _answered(
        "model.hyperparameters", "no resampling or class weighting in the hyper-parameters"
    )


def _fairness(report: TrainingReport) -> _Answer:
    columns = _group_columns(report)
    compared = (
        f"performance compared across {', '.join(columns)}"
        if columns
        else "no subgroups requested (--group)"
    )
    where = "subgroups" if report.subgroups is not None else "model"
    return _answered(where, f"no fairness constraint in training; {compared}")


def _output(report: TrainingReport) -> _Answer:
    model = report.model
    outcome = f" of {report.data.outcome}" if report.data.outcome else ""
    rule = f" ({model.threshold_rule})" if model.threshold_rule else ""
    where = "classification" if report.classification is not None else "model.threshold"
    return _answered(
        where, f"risk (probability{outcome}); flagged at risk ≥ {model.threshold:.3f}{rule}"
    )


def _development_versus_evaluation(report: TrainingReport) -> _Answer:
    return _answered(
        _split_where(report),
        "internal validation: development and evaluation rows come from the same data; "
        "other sites or periods: an external validation report (medserve evaluate)",
    )


def _participants(report: TrainingReport) -> _Answer:
    data = report.data
    if data.events is None or data.rows_with_outcome is None:
        return _answered("data", f"{data.rows:,} rows")
    rate = f" ({data.event_rate:.1%})" if data.event_rate is not None else ""
    return _answered(
        "data",
        f"{data.rows:,} rows, {data.rows_with_outcome:,} with a known outcome, "
        f"{data.events:,} events{rate}",
    )


def _analysis_numbers(report: TrainingReport) -> _Answer:
    evaluated = report.evaluated_rows
    events = f" with {evaluated.events:,} events" if evaluated is not None else ""
    validation = report.validation
    if validation is not None:
        return _answered(
            "validation",
            f"performance: {validation.measured_on}{events}; final model: {validation.final_model}",
        )
    split = report.split
    n_evaluated = evaluated.n if evaluated is not None else split.n_test
    return _answered(
        "split",
        f"model selection and fitting: {split.n_train:,} rows; evaluation: "
        f"{n_evaluated:,} rows{events}",
    )


def _specification(report: TrainingReport) -> _Answer:
    return _answered(
        "model",
        f"{report.model.family} with its hyper-parameters, threshold and software versions; "
        "the registered version scores new records through medserve",
    )


def _interval(estimate: Estimate) -> str:
    low, high = estimate.ci95
    if estimate.estimate is None:
        return "not estimable"
    if low is None or high is None:
        return f"{estimate.estimate:.3f}"
    return f"{estimate.estimate:.3f} (95% CI {low:.3f}–{high:.3f})"


def _performance(report: TrainingReport) -> _Answer:
    metrics = report.metrics
    if metrics.auroc is None:
        return _to_write("metrics")
    answer = f"AUROC {_interval(metrics.auroc)}"
    if metrics.calibration_slope is not None:
        answer += f", calibration slope {_interval(metrics.calibration_slope)}"
    answer += f", on {metrics.split}"
    columns = _group_columns(report)
    if columns:
        answer += f"; by subgroup of {', '.join(columns)}"
    return _answered("metrics", answer)


def _updating_results(report: TrainingReport) -> _Answer:
    calibration = report.model.calibration
    if calibration is None or calibration.method == "none":
        return _not_applicable("model.calibration", "no model updating")
    raw, calibrated = calibration.oof_log_loss_raw, calibration.oof_log_loss_calibrated
    answer = f"{calibration.method} recalibration"
    if raw is not None and calibrated is not None:
        answer += f": out-of-fold log-loss {raw:.3f} as fitted, {calibrated:.3f} recalibrated"
    return _answered("model.calibration", answer)


def _input_quality(report: TrainingReport) -> _Answer:
    return _answered(
        "data.columns",
        "missing values are handled as in training (per column); unreadable values and "
        "missing columns are refused with a message naming the column and row",
    )


def _intended_purpose(report: TrainingReport) -> _Answer:
    use = report.intended_use
    if not use.supplied:
        return _to_write("model_card.intended_use")
    users = f" Users: {use.intended_users}" if use.intended_users else ""
    return _answered("intended_use", f"{use.intended_use}{users}")


def _limitations(report: TrainingReport) -> _Answer:
    limitations = report.intended_use.limitations
    if not limitations:
        return _to_write("model_card.limitations")
    return _answered("intended_use.limitations", "; ".join(limitations))


ITEMS: tuple[_Written | _Filled, ...] = (
    _Written("1", "Title", "title"),
    _Written("2", "Abstract", "abstract"),
    _Written("3a", "Background: healthcare context and rationale", "background"),
    _Filled("3b", "Target population, intended purpose and users", _intended_purpose),
    _Written("3c", "Known health inequalities between groups", "health_inequalities"),
    _Written("4", "Objectives", "objectives"),
    _Filled("5", "Data: sources, dates and representativeness", _data_source),
    _Written("6", "Participants: setting, eligibility and treatments", "participants"),
    _Filled("7", "Data preparation and quality checks", _preparation),
    _Filled("8a", "Outcome: definition and time horizon", _outcome),
    _Written("8b", "Outcome assessors", "outcome_assessors"),
    _Written("8c", "Blinding of outcome assessment", "outcome_blinding"),
    _Filled("9", "Predictors: choice and definitions", _predictors),
    _Filled("10", "Sample size", _sample_size),
    _Filled("11", "Missing data", _missing_data),
    _Filled("12a", "How the data were used (partitioning)", _data_use),
    _Filled("12b", "Handling of predictors", _predictor_handling),
    _Filled("12c", "Model type, building steps, tuning and internal validation", _model_building),
    _Filled("12d", "Heterogeneity across clusters", _heterogeneity),
    _Filled("12e", "Performance measures and plots", _measures),
    _Filled("12f", "Model updating (recalibration)", _updating),
    _Filled("12g", "How predictions are calculated", _predictions),
    _Filled("13", "Class imbalance", _imbalance),
    _Filled("14", "Fairness", _fairness),
    _Filled("15", "Model output and classification threshold", _output),
    _Filled(
        "16", "Differences between development and evaluation data", _development_versus_evaluation
    ),
    _Written("17", "Ethical approval and consent", "ethics_approval"),
    _Written("18a", "Funding", "funding"),
    _Written("18b", "Conflicts of interest", "conflicts_of_interest"),
    _Written("18c", "Protocol", "protocol"),
    _Written("18d", "Registration", "registration"),
    _Written("18e", "Data availability", "data_availability"),
    _Written("18f", "Code availability", "code_availability"),
    _Written("19", "Patient and public involvement", "patient_public_involvement"),
    _Filled("20", "Participants: flow and characteristics", _participants),
    _Filled("21", "Participants and events in each analysis", _analysis_numbers),
    _Filled("22", "Full model specification", _specification),
    _Filled("23a", "Performance with confidence intervals, including subgroups", _performance),
    _Filled("23b", "Heterogeneity of performance across clusters", _heterogeneity),
    _Filled("24", "Results of model updating", _updating_results),
    _Written("25", "Interpretation", "interpretation"),
    _Filled("26", "Limitations", _limitations),
    _Filled("27a", "Handling poor-quality or unavailable input data in use", _input_quality),
    _Written("27b", "User interaction and expertise required", "user_interaction"),
    _Written("27c", "Next steps: applicability and generalisability", "next_steps"),
)


def _written(item: _Written, card: ModelCard) -> TripodItem:
    where = f"model_card.{item.key}"
    text = card.written(item.key)
    if text is None:
        status: Status = "to be written"
    elif text.lower().rstrip(".") in _NOT_APPLICABLE:
        status = "not applicable"
    else:
        status = "answered"
    return TripodItem(item=item.item, title=item.title, status=status, where=where, answer=text)


def tripod_checklist(report: TrainingReport, card: ModelCard | None = None) -> TripodChecklist:
    """The TRIPOD+AI checklist of a training report; ``card`` supplies the items people
    write (3b and 26 come from the report's intended-use section, which the card fills)."""
    card = card or ModelCard()
    rows = []
    for item in ITEMS:
        if isinstance(item, _Written):
            rows.append(_written(item, card))
        else:
            status, where, answer = item.answer(report)
            rows.append(
                TripodItem(
                    item=item.item, title=item.title, status=status, where=where, answer=answer
                )
            )
    return TripodChecklist(items=rows)
