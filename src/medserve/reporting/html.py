"""The report as one self-contained HTML page: inline CSS and SVG plots, no scripts, no
external resources (a Content-Security-Policy says so), so it opens offline and can be
mailed. Rendered from the report's JSON alone: the JSON is the single source of truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from medserve import __version__
from medserve.core.files import write_file_atomic
from medserve.reporting import plots

# What the page may load: its own inline styles and nothing else.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_environment = Environment(
    loader=PackageLoader("medserve.reporting", "templates"),
    autoescape=select_autoescape(["html", "j2"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


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


def _metric(metric: dict[str, Any] | None, digits: int = 3) -> str:
    """'0.912 (0.871–0.948)', or 'not estimable'."""
    if not metric or metric.get("estimate") is None:
        return "not estimable"
    low, high = metric.get("ci95") or [None, None]
    interval = f" ({_number(low, digits)}–{_number(high, digits)})" if low is not None else ""
    return f"{_number(metric['estimate'], digits)}{interval}"


def _metric_cell(metric: dict[str, Any] | None, digits: int = 2) -> Markup:
    """Estimate over its interval, for narrow table cells."""
    if not metric or metric.get("estimate") is None:
        return Markup('<span class="muted">–</span>')
    low, high = metric.get("ci95") or [None, None]
    interval = f"{_number(low, digits)}–{_number(high, digits)}" if low is not None else ""
    return Markup('{}<span class="ci">{}</span>').format(
        _number(metric["estimate"], digits), interval
    )


def _recalibration(info: Any) -> str:
    """The training's recalibration record in words."""
    if not isinstance(info, dict):
        return str(info)
    method = {"none": "none", "platt": "Platt scaling"}.get(info.get("method"), info.get("method"))
    raw, calibrated = info.get("oof_log_loss_raw"), info.get("oof_log_loss_calibrated")
    if raw is None or calibrated is None:
        return str(method)
    return (
        f"{method} (out-of-fold log-loss {_number(raw)} as fitted, "
        f"{_number(calibrated)} recalibrated)"
    )


_environment.filters.update(
    num=_number,
    pct=_percent,
    metric=_metric,
    metric_cell=_metric_cell,
    recalibration=_recalibration,
)


def render_html(report: dict[str, Any], model_ref: str | None = None) -> str:
    """The HTML page of a report (training or external validation)."""
    figures: dict[str, str | None] = {}
    if "discrimination" in report:
        figures["roc"] = plots.roc_plot(report["discrimination"])
        figures["pr"] = plots.pr_plot(report["discrimination"])
        figures["calibration"] = plots.calibration_plot(report["calibration"])
        figures["decision"] = plots.decision_plot(report["decision_curve"])
        figures["subgroups"] = plots.subgroup_plot(
            report["subgroups"], report["discrimination"]["auroc"].get("estimate")
        )
    explanations = report.get("explanations")
    if explanations and explanations.get("importance"):
        figures["importance"] = plots.importance_plot(explanations)
        figures["contributions"] = plots.contribution_plot(explanations)
    if model_ref is None and "name" in report.get("model", {}):
        model_ref = f"{report['model']['name']}:{report['model']['version']}"
    template = _environment.get_template("report.html.j2")
    return template.render(
        report=report,
        model_ref=model_ref,
        figures=figures,
        csp=CONTENT_SECURITY_POLICY,
        medserve_version=__version__,
        net_benefit_rows=_net_benefit_rows(report.get("decision_curve")),
    )


def write_html_report(json_path: Path, report: dict[str, Any], model_ref: str | None) -> Path:
    """Render ``report`` and write it atomically beside its JSON (same name, ``.html``)."""
    html_path = json_path.with_suffix(".html")
    write_file_atomic(html_path, render_html(report, model_ref).encode("utf-8"))
    return html_path


def html_for_json_file(json_path: Path, model_ref: str | None) -> Path:
    """The HTML beside a stored JSON report, rendered (and kept) when it is not there yet."""
    html_path = json_path.with_suffix(".html")
    if not html_path.exists():
        report = json.loads(json_path.read_text(encoding="utf-8"))
        write_html_report(json_path, report, model_ref)
    return html_path


def _net_benefit_rows(decision: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Net benefit at a few common threshold probabilities and at the model's threshold."""
    if not decision:
        return []
    thresholds = decision["thresholds"]
    rows = []
    for wanted in (0.05, 0.1, 0.2, 0.3, 0.5):
        index = min(range(len(thresholds)), key=lambda i: abs(thresholds[i] - wanted))
        rows.append(
            {
                "threshold": thresholds[index],
                "model": decision["model"][index],
                "treat_all": decision["treat_all"][index],
            }
        )
    return rows
