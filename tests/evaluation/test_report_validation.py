"""The report's internal-validation and sample-size sections: built as training builds
them, what the metrics were measured on, old reports still parse, the schema and the page
show them, and intervals say how they were computed or why they are missing."""

from __future__ import annotations

import json

import jsonschema_rs
import pytest
from pydantic import ValidationError

from medserve.evaluation.report import sample_size_section
from medserve.evaluation.report_types import (
    Estimate,
    InternalValidation,
    OptimismRow,
    parse_report,
)
from medserve.modeling.sample_size import sample_size_check
from medserve.reporting import schema as report_schema
from medserve.reporting.html import render_html
from support.reports import LEGACY_REPORT, synthetic_report

BOOTSTRAP = InternalValidation(
    method="bootstrap",
    description="Optimism-corrected bootstrap (200 resamples) of the whole modelling process.",
    measured_on="all 300 rows, corrected for optimism by 200 bootstrap resamples",
    final_model="all 300 rows",
    n_rows=300,
    resamples=200,
    optimism=[OptimismRow(metric="auroc", apparent=0.74, optimism=0.03, corrected=0.71)],
)
CROSS_VALIDATION = InternalValidation(
    method="cv",
    description="5-fold cross-validation: every row predicted by a model not fitted on it.",
    measured_on="out-of-fold predictions of 5-fold cross-validation, all 300 rows",
    final_model="all 300 rows",
    n_rows=300,
    folds=5,
)


@pytest.fixture(scope="module")
def report():
    check = sample_size_check(24, 300, 117)
    return synthetic_report(
        validation=BOOTSTRAP,
        sample_size=sample_size_section(check, consequence="kept to logistic regression"),
    )


def test_the_metrics_say_what_they_were_measured_on(report):
    assert report.metrics.split == BOOTSTRAP.measured_on
    assert synthetic_report(validation=CROSS_VALIDATION).metrics.split.startswith("out-of-fold")
    assert synthetic_report().metrics.split == "held-out test"


def test_the_sample_size_section_carries_the_check(report):
    size = report.sample_size
    check = sample_size_check(24, 300, 117)
    assert size.minimum_rows == check.minimum_rows and not size.meets
    assert [c.key for c in size.criteria] == ["shrinkage", "optimism", "overall_risk"]
    assert size.shortfall == check.shortfall_notice()
    assert size.consequence == "kept to logistic regression"
    assert size.events_per_parameter == pytest.approx(117 / 24)


def test_the_checklist_points_to_the_new_sections(report):
    rows = {row.item: row for row in report.tripod.items}
    assert rows["10"].status == "answered" and rows["10"].where == "sample_size"
    assert "kept to logistic regression" in rows["10"].answer
    assert (rows["12a"].where, rows["12a"].answer) == ("validation", BOOTSTRAP.description)
    assert rows["21"].where == "validation"


def test_optimism_rows_belong_to_the_bootstrap():
    with pytest.raises(ValidationError, match="optimism rows come from the bootstrap"):
        InternalValidation(**{**CROSS_VALIDATION.model_dump(), "optimism": BOOTSTRAP.optimism})


def test_old_reports_parse_without_the_new_sections():
    old = parse_report(LEGACY_REPORT)
    assert (old.validation, old.sample_size, old.tripod) == (None, None, None)
    estimate = Estimate.model_validate({"estimate": 0.8, "ci95": [0.7, 0.9]})
    assert (estimate.ci_method, estimate.reason) == (None, None)


def test_reports_with_the_new_sections_round_trip_and_match_the_schema(report):
    stored = json.loads(report.model_dump_json())
    jsonschema_rs.validator_for(report_schema.published_schema()).validate(stored)
    assert parse_report(stored) == report


def test_estimate_of_takes_the_interval_method_and_the_reason():
    class Metric:
        def __init__(self, fields):
            self.fields = fields

        def to_dict(self):
            return self.fields

    wilson = Estimate.of(
        Metric({"estimate": 0.8, "ci95": [0.7, 0.9], "ci_method": "wilson", "n_resamples": 0})
    )
    assert wilson.ci_method == "wilson" and wilson.ci95 == (0.7, 0.9)
    undefined = Estimate.of(Metric({"estimate": None, "ci95": [None, None], "reason": "no events"}))
    assert undefined.reason == "no events"


def test_the_page_shows_validation_sample_size_and_interval_methods(report):
    page = render_html(report)
    for text in (
        'id="validation"',
        "Internal validation",
        "Optimism correction (bootstrap)",
        "0.710",  # the corrected AUROC
        BOOTSTRAP.measured_on,
        'id="sample-size"',
        "Minimum rows",
        "kept to logistic regression",
        "simpler models",
        "95% intervals: percentile bootstrap",
    ):
        assert text in page, text
    assert "held-out test split (" not in page


def test_the_page_marks_wilson_intervals_and_says_why_a_value_is_missing():
    report = synthetic_report()
    metrics = report.classification.metrics.model_copy(
        update={
            "ppv": Estimate(estimate=0.5, ci95=(0.3, 0.7), ci_method="wilson"),
            "npv": Estimate(estimate=None, reason="nobody was flagged negative"),
        }
    )
    changed = report.model_copy(
        update={"classification": report.classification.model_copy(update={"metrics": metrics})}
    )
    page = render_html(changed)
    assert "0.500 (0.300–0.700, Wilson)" in page
    assert "marked Wilson: Wilson score interval of a proportion" in page
    assert "not estimable (nobody was flagged negative)" in page
