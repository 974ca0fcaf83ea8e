"""The report never claims Safe Harbor while a kept column holds values that look like
identifiers or strings no rule classified; scrubbed notes are flagged, not declared safe."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from medserve.data import read_table
from medserve.deid import DeidReport, deidentify, parse_policy

KEY = bytes(range(32))


def flags(frame: pd.DataFrame, policy: dict | None = None) -> list[tuple[str, str, str | None]]:
    report = deidentify(frame, parse_policy(policy or {}), key=KEY).report
    return [(flag.column, flag.reason, flag.kind) for flag in report.review]


def test_a_kept_column_with_a_few_phone_numbers_is_not_safe_harbor(fake):
    comments = ["stable"] * 45 + [fake.numerify("(555) ###-####") for _ in range(5)]
    frame = pd.DataFrame({"status": comments, "glucose": ["5.5"] * 50})
    result = deidentify(frame, key=KEY)
    report = result.report
    assert result.frame["status"].tolist() == comments  # 10%: kept, but not called safe
    assert report.safe_harbor is False
    assert [(f.column, f.reason, f.kind, f.values) for f in report.review] == [
        ("status", "identifier_values", "phone", 5)
    ]
    assert "status (values that look like identifiers)" in result.safe_harbor_warning()
    text = json.dumps(report.to_json()) + "\n".join(result.summary_lines())
    assert not any(phone in text for phone in comments[45:])


def test_keeping_such_a_column_in_the_policy_still_flags_its_values(fake):
    values = ["ok"] * 9 + [fake.email()]
    frame = pd.DataFrame({"status": values})
    assert flags(frame, {"columns": {"status": "keep"}}) == [
        ("status", "identifier_values", "email")
    ]


def test_free_strings_no_rule_classified_are_flagged_until_the_policy_keeps_them(fake):
    remarks = [fake.sentence(nb_words=3) for _ in range(60)]
    frame = pd.DataFrame({"social": remarks})
    assert flags(frame) == [("social", "free_text", None)]
    assert flags(frame, {"columns": {"social": "keep"}}) == []


def test_name_like_values_without_a_patient_to_tell_are_flagged(fake):
    people = [fake.name() for _ in range(4)] * 25  # four people, each seen 25 times
    frame = pd.DataFrame({"companion": people})
    assert flags(frame) == [("companion", "name_like_values", "name")]
    assert flags(frame, {"columns": {"companion": "keep"}}) == []


def test_scrubbed_notes_are_flagged_for_review(fake):
    frame = pd.DataFrame({"notes": [f"Seen by Dr. {fake.last_name()} today." for _ in range(5)]})
    report = deidentify(frame, key=KEY).report
    assert report.safe_harbor is False
    assert [(f.column, f.reason) for f in report.review] == [("notes", "scrubbed_text")]


def test_whole_numbers_of_nine_digits_and_more_are_flagged(fake):
    frame = pd.DataFrame(
        {"ref": [int(fake.numerify("#########")) + 100_000_000 for _ in range(20)]}
    )
    assert flags(frame) == [("ref", "identifier_values", "record_id")]


@pytest.mark.parametrize("dataset", ["heart_csv", "pima_csv"])
def test_clinical_tables_without_identifiers_stay_safe_harbor(request, dataset):
    frame = read_table(request.getfixturevalue(dataset))
    report = deidentify(frame, key=KEY).report
    assert report.review == [] and report.safe_harbor is True


def test_the_report_is_typed_and_its_json_schema_covers_every_key(fake):
    frame = pd.DataFrame(
        {
            "mrn": [fake.bothify("MR######") for _ in range(10)],
            "status": ["ok"] * 9 + [fake.ssn()],
            "notes": [f"Call {fake.numerify('(555) ###-####')}" for _ in range(10)],
        }
    )
    report = deidentify(frame, key=KEY).report
    written = report.to_json()
    schema = DeidReport.model_json_schema()
    assert set(written) == set(schema["properties"])
    assert DeidReport.model_validate_json(json.dumps(written)) == report
    version_1 = {
        "format", "version", "standard", "safe_harbor", "not_safe_harbor_because",
        "kept_identifiers", "pseudonymised", "rows", "columns_in", "columns_out", "policy",
        "key_id", "reference_date", "dates", "columns", "k_anonymity", "text_engine",
    }  # fmt: skip
    assert set(written) - version_1 == {"review"}
    assert written["version"] == 3
    assert written["k_anonymity"]["quasi_identifiers"] == []
    assert set(written["columns"][0]) == {
        "column", "kind", "detected_by", "action", "changed", "details",
    }  # fmt: skip
