"""The report's plots, drawn by matplotlib from the report's typed sections as inline SVG.

Text stays text (``svg.fonttype='none'``) so labels are searchable and readable by
screen readers; each figure gets its own id salt so several SVGs share one page.
Every plot has a title, axis labels and a legend. Colours are Okabe–Ito (colour-blind
safe). Figures are built with ``matplotlib.figure.Figure``: no pyplot, no global state.
"""

from __future__ import annotations

import io
import math
import re

import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from medserve.evaluation.report_types import (
    Calibration,
    DecisionCurve,
    Discrimination,
    Estimate,
    Explanations,
    Subgroups,
)

MODEL = "#0072B2"
REFERENCE = "#7f7f7f"
TREAT_ALL = "#E69F00"
OPERATING = "#D55E00"
EVENTS = "#D55E00"
NON_EVENTS = "#56B4E9"
SMALL = "#999999"
NO_VALUE = "#bdbdbd"
VALUE_MAP = colormaps["coolwarm"]
MAX_FEATURES = 15
_RC = {
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def _svg(figure: Figure, name: str) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), its ids salted with ``name``."""
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"medserve-{name}", **_RC}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg") :]  # no XML prolog or DOCTYPE inside HTML
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.S)
    return text.replace("<svg ", f'<svg role="img" aria-label="{name}" ', 1)


def _figure(width: float = 5.0, height: float = 4.0) -> Figure:
    with matplotlib.rc_context(_RC):
        return Figure(figsize=(width, height), layout="constrained")


def _ci_text(metric: Estimate | None) -> str:
    if metric is None or metric.estimate is None:
        return "not estimable"
    low, high = metric.ci95
    if low is None or high is None:
        return f"{metric.estimate:.2f}"
    return f"{metric.estimate:.2f} (95% CI {low:.2f}–{high:.2f})"


def roc_plot(discrimination: Discrimination) -> str:
    with matplotlib.rc_context(_RC):
        figure = _figure()
        ax = figure.subplots()
        roc = discrimination.roc
        ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1, label="No discrimination")
        ax.plot(
            roc.fpr,
            roc.tpr,
            color=MODEL,
            lw=2,
            label=f"Model: AUROC {_ci_text(discrimination.auroc)}",
        )
        point = discrimination.operating_point
        _unit_square(
            ax,
            (point.fpr, point.tpr),
            xlabel="1 − specificity (false-positive rate)",
            ylabel="Sensitivity (true-positive rate)",
            title="ROC curve",
            legend="lower right",
        )
        return _svg(figure, "roc")


def pr_plot(discrimination: Discrimination) -> str:
    with matplotlib.rc_context(_RC):
        figure = _figure()
        ax = figure.subplots()
        pr = discrimination.pr
        prevalence = pr.prevalence
        ax.axhline(
            prevalence,
            ls="--",
            color=REFERENCE,
            lw=1,
            label=f"No skill (prevalence {prevalence:.2f})",
        )
        ax.step(
            pr.recall,
            pr.precision,
            where="post",
            color=MODEL,
            lw=2,
            label=f"Model: AUPRC {_ci_text(discrimination.auprc)}",
        )
        point = discrimination.operating_point
        _unit_square(
            ax,
            (point.tpr, point.precision),
            xlabel="Recall (sensitivity)",
            ylabel="Precision (PPV)",
            title="Precision–recall curve",
            legend="lower left",
        )
        return _svg(figure, "precision-recall")


def _unit_square(
    ax, operating_point: tuple[float | None, float | None], *, legend: str, **labels: str
) -> None:
    """Axes on [0, 1]², the chosen threshold marked where it is defined, and the legend."""
    x, y = operating_point
    if x is not None and y is not None:
        ax.plot(x, y, "o", color=OPERATING, ms=7, label="Chosen threshold")
    ax.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal", **labels)
    ax.legend(loc=legend)


def calibration_plot(calibration: Calibration) -> str:
    with matplotlib.rc_context(_RC):
        figure = _figure(5.0, 5.2)
        curve_ax, hist_ax = figure.subplots(
            2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]}
        )
        curve_ax.plot([0, 1], [0, 1], ls="--", color=REFERENCE, lw=1, label="Perfect calibration")
        smoothed = calibration.smoothed
        curve_ax.plot(
            smoothed.risk, smoothed.observed, color=MODEL, lw=2, label="Smoothed (LOWESS)"
        )
        bins = calibration.binned.bins
        mean_risk = np.array([b.mean_risk for b in bins])
        observed = np.array([b.observed for b in bins])
        low = np.array([b.ci95[0] for b in bins])
        high = np.array([b.ci95[1] for b in bins])
        curve_ax.errorbar(
            mean_risk,
            observed,
            yerr=[observed - low, high - observed],
            fmt="o",
            color=OPERATING,
            ms=5,
            capsize=2,
            lw=1,
            label=f"Binned ({len(bins)} risk groups, 95% CI)",
        )
        curve_ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            ylabel="Observed event rate",
            title="Calibration (reliability) curve",
        )
        curve_ax.legend(loc="upper left")
        histogram = calibration.risk_histogram
        edges = np.array(histogram.edges)
        width = np.diff(edges)
        hist_ax.bar(
            edges[:-1],
            histogram.non_events,
            width=width,
            align="edge",
            color=NON_EVENTS,
            label="Non-events",
        )
        hist_ax.bar(
            edges[:-1],
            histogram.events,
            width=width,
            align="edge",
            bottom=histogram.non_events,
            color=EVENTS,
            label="Events",
        )
        hist_ax.set(xlim=(0, 1), xlabel="Predicted risk", ylabel="Patients")
        hist_ax.legend(loc="upper center", ncols=2)
        return _svg(figure, "calibration")


def decision_plot(decision: DecisionCurve) -> str:
    with matplotlib.rc_context(_RC):
        figure = _figure(5.6, 4.0)
        ax = figure.subplots()
        thresholds = decision.thresholds
        ax.plot(thresholds, decision.treat_none, color="black", lw=1, label="Treat none")
        ax.plot(thresholds, decision.treat_all, color=TREAT_ALL, lw=1.5, label="Treat all")
        ax.plot(thresholds, decision.model, color=MODEL, lw=2, label="Model")
        chosen = decision.model_threshold
        if chosen is not None:
            ax.axvline(
                chosen, ls=":", color=OPERATING, lw=1.2, label=f"Model threshold ({chosen:.2f})"
            )
        prevalence = decision.prevalence
        ax.set(
            xlim=(0, 1),
            ylim=(-0.05, max(0.05, prevalence * 1.1)),
            xlabel="Threshold probability",
            ylabel="Net benefit",
            title="Decision curve",
        )
        ax.legend(loc="upper right")
        return _svg(figure, "decision-curve")


def subgroup_plot(subgroups: Subgroups, overall_auroc: float | None) -> str | None:
    """A forest plot of AUROC per subgroup level; None when no level has an AUROC."""
    rows = []
    for group in subgroups.groups:
        for level in group.levels:
            label = f"{group.column}: {level.level} (n={level.n})"
            rows.append((label, level.metrics.auroc, level.judged))
    if not any(auroc is not None and auroc.estimate is not None for _, auroc, _ in rows):
        return None
    with matplotlib.rc_context(_RC):
        figure = _figure(5.6, 1.2 + 0.32 * len(rows))
        ax = figure.subplots()
        positions = np.arange(len(rows))[::-1]
        for y, (_, auroc, judged) in zip(positions, rows, strict=True):
            if auroc is None or auroc.estimate is None:
                ax.text(0.505, y, "not estimable", va="center", fontsize=8, color=SMALL)
                continue
            low, high = auroc.ci95
            colour = MODEL if judged else SMALL
            if low is not None and high is not None:
                ax.plot([low, high], [y, y], color=colour, lw=1.5)
            ax.plot(
                auroc.estimate,
                y,
                "o" if judged else "D",
                color=colour,
                mfc=colour if judged else "white",
                ms=6,
            )
        if overall_auroc is not None:
            ax.axvline(overall_auroc, ls="--", color=REFERENCE, lw=1)
        lowest = min(
            (auroc.ci95[0] for _, auroc, _ in rows if auroc and auroc.ci95[0] is not None),
            default=0.5,
        )
        ax.set_yticks(positions, [label for label, _, _ in rows])
        ax.set(
            xlim=(min(0.5, math.floor(lowest * 10) / 10), 1.0),
            xlabel="AUROC (95% CI)",
            ylabel="Subgroup level",
            title="Discrimination by subgroup",
        )
        figure.legend(
            handles=[
                Line2D([], [], color=MODEL, marker="o", lw=1.5, label="AUROC (95% CI)"),
                Line2D(
                    [], [], color=SMALL, marker="D", mfc="white", lw=1.5, label="Too small to judge"
                ),
                Line2D([], [], color=REFERENCE, ls="--", lw=1, label="Overall AUROC"),
            ],
            loc="outside lower center",
            ncols=3,
        )
        return _svg(figure, "subgroups")


def importance_plot(explanations: Explanations) -> str:
    importance = explanations.importance[:MAX_FEATURES]
    with matplotlib.rc_context(_RC):
        figure = _figure(5.4, 1.2 + 0.28 * len(importance))
        ax = figure.subplots()
        positions = np.arange(len(importance))[::-1]
        ax.barh(
            positions,
            [row.mean_abs for row in importance],
            color=MODEL,
            label=f"Mean |contribution| over {explanations.n} patients",
        )
        ax.set_yticks(positions, [row.column for row in importance])
        ax.set(
            xlabel=f"Mean absolute contribution ({explanations.space})",
            ylabel="Feature",
            title="Global importance",
        )
        ax.legend(loc="lower right")
        return _svg(figure, "importance")


def contribution_plot(explanations: Explanations) -> str:
    """Beeswarm-style: per feature, the density of contributions over shared bins, each bin
    coloured by the mean normalised feature value of its records (grey: no numeric value)."""
    order = [row.column for row in explanations.importance[:MAX_FEATURES]]
    by_column = {row.column: row for row in explanations.distribution}
    order = [column for column in order if column in by_column]
    with matplotlib.rc_context(_RC):
        figure = _figure(5.8, 1.4 + 0.34 * len(order))
        ax = figure.subplots()
        positions = np.arange(len(order))[::-1]
        low_edge, high_edge = math.inf, -math.inf
        for y, column in zip(positions, order, strict=True):
            row = by_column[column]
            edges, counts = row.edges, row.counts
            peak = max(counts) or 1
            for j, count in enumerate(counts):
                if count == 0:
                    continue
                half = 0.42 * count / peak
                level = row.value_level[j]
                colour = NO_VALUE if level is None else VALUE_MAP(level)
                ax.add_patch(
                    Rectangle(
                        (edges[j], y - half), edges[j + 1] - edges[j], 2 * half, color=colour, lw=0
                    )
                )
                low_edge, high_edge = min(low_edge, edges[j]), max(high_edge, edges[j + 1])
        if not math.isfinite(low_edge):
            low_edge, high_edge = -1.0, 1.0
        ax.axvline(0, color=REFERENCE, lw=0.8)
        ax.set_xlim(low_edge, high_edge)
        ax.set_ylim(-0.6, len(order) - 0.4)
        ax.set_yticks(positions, order)
        ax.set(
            xlabel=f"Contribution to the prediction ({explanations.space})",
            ylabel="Feature",
            title="Contribution distribution (beeswarm-style, binned)",
        )
        figure.legend(
            handles=[
                Patch(color=VALUE_MAP(0.05), label="Low feature value"),
                Patch(color=VALUE_MAP(0.95), label="High feature value"),
                Patch(color=NO_VALUE, label="Category or few patients"),
            ],
            loc="outside lower center",
            ncols=3,
        )
        return _svg(figure, "contributions")
