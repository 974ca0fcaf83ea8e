"""The HTML report, rendered from the typed report alone: self-contained, every plot
labelled, user text escaped, and plain about what is missing."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from markupsafe import escape

from medserve.evaluation.model_card import NOT_SUPPLIED, ModelCard
from medserve.evaluation.report_types import parse_report
from medserve.reporting.html import CONTENT_SECURITY_POLICY, render_html
from support.reports import LEGACY_REPORT, PLOT_NAMES, synthetic_report

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(synthetic_report(), "synthetic:1")


def figures(html: str) -> list[ElementTree.Element]:
    return [ElementTree.fromstring(svg) for svg in re.findall(r"<svg\b.*?</svg>", html, re.S)]


def texts(element: ElementTree.Element) -> list[str]:
    return [t.text.strip() for t in element.iter(f"{SVG}text") if t.text and t.text.strip()]


def groups(element: ElementTree.Element, prefix: str) -> list[ElementTree.Element]:
    return [g for g in element.iter(f"{SVG}g") if g.get("id", "").startswith(prefix)]


def axis_label(axis: ElementTree.Element) -> str:
    """The label of a matplotlib axis group: its text child that is not a tick."""
    labels = [texts(child) for child in axis if child.get("id", "").startswith("text_")]
    return " ".join(" ".join(label) for label in labels)


def test_every_plot_has_a_title_axis_labels_and_a_legend(page):
    svgs = figures(page)
    names = [svg.get("aria-label") for svg in svgs]
    assert names == PLOT_NAMES
    for name, svg in zip(names, svgs, strict=True):
        axes = groups(svg, "axes_")
        titles = [
            " ".join(texts(c)) for a in axes for c in a if c.get("id", "").startswith("text_")
        ]
        assert any(titles), f"{name}: no title"
        axes_groups = groups(svg, "matplotlib.axis_")
        x_labels = [axis_label(a) for a in axes_groups if groups(a, "xtick_")]
        y_labels = [axis_label(a) for a in axes_groups if groups(a, "ytick_")]
        assert any(x_labels) and any(y_labels), f"{name}: axis labels {x_labels} {y_labels}"
        legends = groups(svg, "legend_")
        assert legends and all(texts(legend) for legend in legends), f"{name}: no legend"


def test_the_page_is_self_contained(page):
    assert f'content="{escape(CONTENT_SECURITY_POLICY)}"' in page
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)
    links = set(re.findall(r"https?://[^\s\"'<>)]+", page))
    assert links <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, links


def test_sections_and_flags_are_in_the_page(page):
    for text in (
        "Model report: synthetic:1",
        "Discrimination",
        "Confusion matrix",
        "Calibration slope",
        "Observed / expected",
        "Decision curve",
        "By site",
        "too small to judge",
        "log-odds",
        "lightgbm pred_contrib (exact TreeSHAP)",
        "Cross-validation leaderboard",
        "failed: RuntimeError: x",
        NOT_SUPPLIED,
    ):
        assert text in page, text


def test_supplied_text_is_escaped_and_shown():
    card = ModelCard(intended_use="Triage <script>alert(1)</script>", limitations=["Old data"])
    page = render_html(synthetic_report(card=card))
    assert "Triage &lt;script&gt;" in page and "<script>" not in page
    assert NOT_SUPPLIED not in page and "Old data" in page


def test_missing_explanations_are_said_plainly():
    page = render_html(synthetic_report(explanations=None))
    assert "Explanations: not available" in page
    assert [svg.get("aria-label") for svg in figures(page)][-1] == "subgroups"


def test_a_report_from_before_the_full_report_still_renders():
    page = render_html(parse_report(LEGACY_REPORT), "old:1")
    assert "Model report: old:1" in page and NOT_SUPPLIED in page
    assert not figures(page)


def test_no_number_is_nan_in_the_page(page):
    assert not np.any([token in page for token in (">nan<", " nan ", "NaN")])
