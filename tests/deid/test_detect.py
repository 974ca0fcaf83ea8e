"""Identifier columns are found by their names and, when the name says nothing, by content."""

from __future__ import annotations

import pandas as pd
import pytest

from medserve.deid import Detection, deidentify, detect_column, detect_columns


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


KEY = bytes(range(32))


@pytest.mark.parametrize(
    "column",
    [
        "Patient",
        "Attending",
        "Attending Physician",
        "Physician",
        "Provider",
        "Nurse",
        "Guardian",
        "Next of Kin",
        "Emergency Contact",
        "Referring",
        "PCP",
    ],
)
def test_person_role_columns_are_name_columns(fake, column: str) -> None:
    surnames = pd.Series([fake.last_name() for _ in range(30)])  # no shape to detect
    assert detect_column(column, surnames) == Detection(column, "name", "name")


def test_a_patient_column_of_record_numbers_is_a_record_id(fake) -> None:
    numbers = pd.Series([fake.numerify("00######") for _ in range(30)])
    assert detect_column("Patient", numbers).kind == "record_id"
    assert detect_column("Patient", pd.Series(range(1000, 1030))).kind == "record_id"


@pytest.mark.parametrize(
    "shape",
    [
        "{LAST}, {FIRST}",
        "{Last}, {First} MD",
        "{First} {Last}, RN",
        "Dr. {First} {Last}",
        "{FIRST} {I} {LAST}",
        "{First} {Last} Jr.",
        "{Last}, {First} {I}.",
    ],
)
def test_names_in_capitals_or_with_credentials_are_found_by_content(fake, shape: str) -> None:
    def one() -> str:
        first, last = fake.first_name(), fake.last_name()
        return shape.format(
            First=first,
            Last=last,
            FIRST=first.upper(),
            LAST=last.upper(),
            I=fake.random_letter().upper(),
        )

    detection = detect_column("col_3", pd.Series([one() for _ in range(40)]))
    assert (detection.kind, detection.detected_by) == ("name", "content")


def test_vins_are_vehicle_ids_whatever_the_column_is_called(fake) -> None:
    frame = pd.DataFrame({"Car": [fake.vin() for _ in range(30)], "glucose": ["5.5"] * 30})
    assert detect_column("Car", frame["Car"]) == Detection("Car", "vehicle_id", "content")
    assert list(deidentify(frame, key=KEY).frame.columns) == ["glucose"]


def test_a_column_mixing_e_mails_and_phones_is_dropped(fake) -> None:
    contacts = [fake.email() if i % 2 else fake.numerify("(###) 555-####") for i in range(40)]
    frame = pd.DataFrame({"Contact": contacts, "glucose": ["5.5"] * 40})
    assert detect_column("Contact", frame["Contact"]).kind in ("email", "phone")
    assert list(deidentify(frame, key=KEY).frame.columns) == ["glucose"]


@pytest.mark.parametrize("column", ["Comments", "note", "Remarks", "memo"])
def test_a_column_named_as_free_text_is_scrubbed_however_short(fake, column: str) -> None:
    phone = fake.numerify("(###) 555-####")
    values = pd.Series(["ok", "none", f"call {phone}", "ok"])
    assert detect_column(column, values) == Detection(column, "text", "name")
    result = deidentify(pd.DataFrame({column: values}), key=KEY).frame
    assert result[column].tolist() == ["ok", "none", "call [PHONE]", "ok"]


@pytest.mark.parametrize("column", ["Location", "Residence", "Hometown", "Birthplace"])
def test_place_columns_are_dropped(fake, column: str) -> None:
    values = pd.Series([f"{fake.city()}, {fake.state_abbr()}" for _ in range(30)])
    assert detect_column(column, values).kind == "geography"
    assert detect_column("col_4", values) == Detection("col_4", "geography", "content")
    assert deidentify(pd.DataFrame({column: values}), key=KEY).frame.shape[1] == 0


def test_a_state_column_is_kept_as_safe_harbor_allows(fake) -> None:
    assert detect_column("state", pd.Series([fake.state_abbr() for _ in range(30)])).kind == "none"


@pytest.mark.parametrize("column", ["Yrs", "years", "age_yrs", "Age (years)"])
def test_age_columns_are_known_by_their_name_in_years(column: str) -> None:
    frame = pd.DataFrame({column: [45, 91, 103, 60]})
    assert detect_column(column, frame[column]).kind == "age"
    assert deidentify(frame, key=KEY).frame[column].tolist() == ["45", "90+", "90+", "60"]


def test_six_digit_clinical_counts_are_not_record_ids(fake) -> None:
    counts = [str(fake.random_int(150_000, 450_000)) for _ in range(50)]
    counts += [str(fake.random_int(20_000, 99_999)) for _ in range(5)]  # varying width
    frame = pd.DataFrame({"Platelets": counts})
    assert detect_column("Platelets", frame["Platelets"]).kind == "none"
    assert deidentify(frame, key=KEY).frame["Platelets"].tolist() == counts


@pytest.mark.parametrize("template", ["0#####", "%#######", "MR######", "###-#####"])
def test_identifier_shaped_numbers_are_still_record_ids(fake, template: str) -> None:
    values = pd.Series([fake.numerify(template) for _ in range(40)])
    assert detect_column("col_5", values).kind == "record_id"
