"""The published JSON schema of the model report (training and external validation), the
contract the dashboard and the FHIR channel read.

Generated from the typed report (``evaluation.report_types``) and committed beside this
module as ``report.schema.json``, shipped with the package; a test keeps the two equal.
After changing the report's models, regenerate it::

    .venv/bin/python -m medserve.reporting.schema
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from medserve.evaluation.report_types import REPORT_DOCUMENT

SCHEMA_FILE = "report.schema.json"


def report_json_schema() -> dict[str, Any]:
    """The JSON schema (draft 2020-12) of a stored report, as the typed models define it."""
    schema = REPORT_DOCUMENT.json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "medserve model report",
        "description": (
            "A model report: kind 'training' (measured as its internal validation says: out "
            "of fold, corrected for optimism, or on a held-out split) or "
            "'external validation' (a stored model measured on other labelled data). "
            "Aggregates only, never a patient's row."
        ),
        **schema,
    }


def schema_text(schema: dict[str, Any]) -> str:
    """The schema as the committed file holds it (sorted keys, two-space indent)."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def published_schema() -> dict[str, Any]:
    """The schema file shipped with this package."""
    text = resources.files("medserve.reporting").joinpath(SCHEMA_FILE).read_text("utf-8")
    return json.loads(text)


def write_schema(path: Path) -> Path:
    """(Re)write the schema file at ``path`` from the models."""
    path.write_text(schema_text(report_json_schema()), encoding="utf-8")
    return path


if __name__ == "__main__":
    write_schema(Path(__file__).with_name(SCHEMA_FILE))
