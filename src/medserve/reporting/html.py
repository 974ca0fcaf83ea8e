"""The report as one self-contained HTML page: inline CSS and SVG plots, no scripts, no
external resources (a Content-Security-Policy says so), so it opens offline and can be
mailed. Rendered from the typed report alone (``evaluation.report_types``): its JSON is the
single source of truth, and the page is written beside it (same name, ``.html``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from medserve import __version__
from medserve.evaluation.report_types import (
    DecisionCurve,
    Estimate,
    EvaluationReport,
    Recalibration,
    Report,
)

# What the page may load: its own inline styles and nothing else.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_environment = Environment(
    loader=PackageLoader("medserve.reporting", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page_path(json_path: Path) -> Path:
    """Where the HTML page of the JSON report at ``json_path`` lives: beside it."""
    return json_path.with_suffix(".html")


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _percent(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}%"


# How an interval was computed: the mark beside it, and the page's footnote. Bootstrap is
# the default, so it goes unmarked (as do reports that did not record the method).
CI_METHODS = {
    "bootstrap": ("", "percentile bootstrap over resamples of the rows"),
    "wilson": ("Wilson", "Wilson score interval of a proportion"),
}


def _method_mark(metric: Estimate) -> str:
    if metric.ci_method is None:
        return ""
    mark = CI_METHODS.get(metric.ci_method, (metric.ci_method, ""))[0]
    return f", {mark}" if mark else ""


def _metric(metric: Estimate | None, digits: int = 3) -> str:
    """'0.912 (0.871–0.948)', '0.912 (0.871–0.948, Wilson)' for a method other than the
    bootstrap, or 'not estimable (why)'."""
    if metric is None or metric.estimate is None:
        reason = f" ({metric.reason})" if metric is not None and metric.reason else ""
        return f"not estimable{reason}"
    low, high = metric.ci95
    if low is not None and high is not None:
        interval = f" ({_number(low, digits)}–{_number(high, digits)}{_method_mark(metric)})"
    else:
        interval = f" (no interval: {metric.reason})" if metric.reason else ""
    return f"{_number(metric.estimate, digits)}{interval}"


def _metric_cell(metric: Estimate | None, digits: int = 2) -> Markup:
    """Estimate over its interval, for narrow table cells; the reason where undefined."""
    if metric is None or metric.estimate is None:
        reason = metric.reason if metric is not None else None
        if reason:
            return Markup('<span class="muted">–</span><span class="ci">{}</span>').format(reason)
        return Markup('<span class="muted">–</span>')
    low, high = metric.ci95
    interval = ""
    if low is not None and high is not None:
        interval = f"{_number(low, digits)}–{_number(high, digits)}{_method_mark(metric)}"
    elif metric.reason:
        interval = f"no interval: {metric.reason}"
    return Markup('{}<span class="ci">{}</span>').format(_number(metric.estimate, digits), interval)


def _interval_note(report: Report) -> str:
    """The footnote saying how the report's 95% intervals were computed."""
    methods = set(_ci_methods(report.model_dump())) or {"bootstrap"}
    parts = []
    for method in sorted(methods, key=lambda m: (m != "bootstrap", m)):
        mark, description = CI_METHODS.get(method, (method, method))
        parts.append(f"marked {mark}: {description}" if mark else description)
    return "95% intervals: " + "; ".join(parts) + "."


def _ci_methods(value: Any) -> Iterator[str]:
    """Every interval method named in a report's JSON."""
    if isinstance(value, dict):
        if isinstance(value.get("ci_method"), str):
            yield value["ci_method"]
        for item in value.values():
            yield from _ci_methods(item)
    elif isinstance(value, list):
        for item in value:
            yield from _ci_methods(item)


def _recalibration(info: Recalibration) -> str:
    """The training's recalibration record in words."""
    method = {"none": "none", "platt": "Platt scaling"}.get(info.method, info.method)
    raw, calibrated = info.oof_log_loss_raw, info.oof_log_loss_calibrated
    if raw is None or calibrated is None:
        return method
    return (
        f"{method} (out-of-fold log-loss {_number(raw)} as fitted, "
        f"{_number(calibrated)} recalibrated)"
    )


def _utc(moment: datetime) -> str:
    """'2026-01-01 09:30:00' (the report's times are UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M:%S")


# Metric names (as the report's metrics section keys them) in words.
METRIC_LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "brier": "Brier score",
    "calibration_slope": "Calibration slope",
    "calibration_intercept": "Calibration intercept",
    "oe_ratio": "Observed / expected",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
}


def _metric_label(name: str) -> str:
    """'auroc' -> 'AUROC', 'calibration_slope' -> 'Calibration slope'."""
    return METRIC_LABELS.get(name, name.replace("_", " ").capitalize())


_environment.filters.update(
    num=_number,
    pct=_percent,
    metric=_metric,
    metric_cell=_metric_cell,
    recalibration=_recalibration,
    utc=_utc,
    metric_label=_metric_label,
)


VALIDATION_METHODS = {
    "holdout": "held-out test split",
    "cv": "cross-validation",
    "bootstrap": "bootstrap optimism correction",
}


def render_html(report: Report, model_ref: str | None = None) -> str:
    """The HTML page of a report (training or external validation)."""
    # Imported here: matplotlib costs the server ~0.4 s and ~30 MB at start, and a server
    # draws a page only for a report stored without one.
    from medserve.reporting import plots

    figures: dict[str, str | None] = {}
    if report.discrimination is not None:
        figures["roc"] = plots.roc_plot(report.discrimination)
        figures["pr"] = plots.pr_plot(report.discrimination)
    if report.calibration is not None:
        figures["calibration"] = plots.calibration_plot(report.calibration)
    if report.decision_curve is not None:
        figures["decision"] = plots.decision_plot(report.decision_curve)
    if report.subgroups is not None:
        overall = report.discrimination.auroc.estimate if report.discrimination else None
        figures["subgroups"] = plots.subgroup_plot(report.subgroups, overall)
    if report.explanations is not None and report.explanations.importance:
        figures["importance"] = plots.importance_plot(report.explanations)
        figures["contributions"] = plots.contribution_plot(report.explanations)
    if model_ref is None and isinstance(report, EvaluationReport):
        model_ref = f"{report.model.name}:{report.model.version}"
    template = _environment.get_template("report.html.j2")
    return template.render(
        report=report,
        model_ref=model_ref,
        figures=figures,
        csp=CONTENT_SECURITY_POLICY,
        medserve_version=__version__,
        net_benefit_rows=_net_benefit_rows(report.decision_curve),
        interval_note=_interval_note(report),
        validation_methods=VALIDATION_METHODS,
    )


def _net_benefit_rows(decision: DecisionCurve | None) -> list[dict[str, float]]:
    """Net benefit at a few common threshold probabilities and at the model's threshold."""
    if decision is None:
        return []
    thresholds = decision.thresholds
    rows = []
    for wanted in (0.05, 0.1, 0.2, 0.3, 0.5):
        index = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - wanted))
        rows.append(
            {
                "threshold": thresholds[index],
                "model": decision.model[index],
                "treat_all": decision.treat_all[index],
            }
        )
    return rows
