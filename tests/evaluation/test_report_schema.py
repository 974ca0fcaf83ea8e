"""The published JSON schema of the report: the committed file is what the typed models
generate (so it cannot drift), it ships with the package, and stored reports — today's and
those from before the full report — validate against it."""

from __future__ import annotations

import json
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import jsonschema_rs  # a JSON Schema validator, installed with schemathesis
import pytest

from medserve.evaluation.report_types import parse_report
from medserve.reporting import schema as report_schema
from support.reports import LEGACY_REPORT, synthetic_report

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def validator():
    return jsonschema_rs.validator_for(report_schema.published_schema())


def test_the_committed_schema_is_the_one_the_models_generate():
    committed = (ROOT / "src/medserve/reporting" / report_schema.SCHEMA_FILE).read_text()
    generated = report_schema.schema_text(report_schema.report_json_schema())
    assert committed == generated, (
        "the report's models changed: run `.venv/bin/python -m medserve.reporting.schema` "
        "and commit src/medserve/reporting/report.schema.json"
    )


def test_the_schema_ships_with_the_package_and_is_valid_json_schema():
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["medserve"]
    assert any(fnmatch("reporting/report.schema.json", pattern) for pattern in package_data)
    schema = report_schema.published_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert jsonschema_rs.meta.is_valid(schema)


def test_reports_validate_against_the_published_schema(validator):
    built = synthetic_report(notices=["a notice"])
    stored = json.loads(built.model_dump_json())
    validator.validate(stored)
    validator.validate(LEGACY_REPORT)
    assert parse_report(stored) == built  # the JSON gives back the report it was made from


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda r: r.update(kind="forecast"), "kind"),
        (lambda r: r["discrimination"]["auroc"].update(estimate="high"), "estimate"),
        (lambda r: r["data"].update(patient_rows=[]), "patient_rows"),  # no room for rows
        (lambda r: r.pop("data"), "data"),
    ],
    ids=["unknown-kind", "wrong-type", "unknown-field", "missing-section"],
)
def test_what_is_not_a_report_is_refused_by_schema_and_models_alike(validator, change, where):
    report = json.loads(synthetic_report().model_dump_json())
    change(report)
    assert not validator.is_valid(report)
    with pytest.raises(ValueError, match=where):
        parse_report(report)
