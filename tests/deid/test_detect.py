"""Identifier columns are found by their names and, when the name says nothing, by content."""

from __future__ import annotations

import pandas as pd
import pytest

from medserve.deid import detect_column, detect_columns


@pytest.mark.parametrize(
    ("column", "kind"),
    [
        ("Patient Name", "name"),
        ("lastName", "name"),
        ("MRN", "record_id"),
        ("patient_id", "record_id"),
        ("account_number", "record_id"),
        ("SSN", "ssn"),
        ("home_phone", "phone"),
        ("fax_number", "fax"),
        ("email", "email"),
        ("website", "url"),
        ("ip_address", "ip"),
        ("street_address", "street_address"),
        ("city", "geography"),
        ("zip_code", "zip"),
        ("DOB", "birth_date"),
        ("admission_date", "date"),
        ("age", "age"),
        ("drivers_license_number", "licence_id"),
        ("vehicle_plate", "vehicle_id"),
        ("device_serial", "device_id"),
        ("sex", "sex"),
    ],
)
def test_identifier_columns_are_detected_by_name(column: str, kind: str) -> None:
    detection = detect_column(column, pd.Series(["x"] * 5))
    assert (detection.kind, detection.detected_by) == (kind, "name")


@pytest.mark.parametrize(
    "column",
    ["glucose", "drug_name", "white_cell_count", "birth_weight", "stage", "ip_visits", "wait_time"],
)
def test_clinical_column_names_are_not_identifiers(column: str) -> None:
    assert detect_column(column, pd.Series(["1.5", "2.0", "3.1"])).kind == "none"


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["a.b@example.org", "c@d.com", "e.f@g.net"], "email"),
        (["123-45-6789", "987-65-4321", "111-22-3333"], "ssn"),
        (["(555)123-4567", "555.987.6543", "+1-555-222-3333x12"], "phone"),
        (["http://a.org/x", "https://b.com", "www.c.net/y"], "url"),
        (["10.0.0.1", "192.168.1.20", "::1"], "ip"),
        (["2021-03-04", "03/05/2021", "March 3, 2021"], "date"),
        (["12 Oak Street", "4 Elm Ave Apt. 2", "900 Sunset Boulevard"], "street_address"),
        (["MRN0012345", "MRN0099887", "MRN0000001"], "record_id"),
        (["Mary Jones", "John Smith", "Ann Lee"], "name"),
        (["Pt is a man admitted with chest pain, improving on day two."] * 3, "text"),
    ],
)
def test_unlabelled_identifier_columns_are_detected_by_content(values: list, kind: str) -> None:
    detection = detect_column("col_7", pd.Series(values))
    assert (detection.kind, detection.detected_by) == (kind, "content")


def test_clinical_content_is_left_alone() -> None:
    frame = pd.DataFrame(
        {
            "glucose": ["105", "98.5", "250"],
            "bp": ["120/80", "135/90", "110/70"],
            "icd": ["E11.9", "I10", "I10"],
            "dx": ["Heart Failure", "Heart Failure", "Pneumonia"],
            "loinc": ["2345-7", "2345-7", "4548-4"],
        }
    )
    assert {c: d.kind for c, d in detect_columns(frame).items()} == dict.fromkeys(
        frame.columns, "none"
    )


def test_datetime_columns_are_dates_by_type() -> None:
    values = pd.Series(pd.to_datetime(["2021-01-01", "2021-02-01"]))
    assert detect_column("col_1", values).kind == "date"
