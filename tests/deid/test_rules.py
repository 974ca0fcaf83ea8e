"""Safe Harbor rules one at a time: dates, ages, ZIP codes, pseudonyms, k-anonymity."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from medserve.deid import deidentify, parse_policy
from medserve.errors import ConfigError, DataError

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
SHIFT = parse_policy({"dates": "shift", "reference_date": "2025-01-01"})


def admissions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "mrn": ["A1", "A1", "B2", "B2", None],
            "admit_date": ["2021-01-01", "2021-03-15", "03/01/2020", "2020-03-10", "2022-05-05"],
            "discharge_date": ["2021-01-04", "2021-03-20", "2020-03-02", "2020-03-30", None],
            "dob": ["1950-06-01", "1950-06-01", "1930-01-01", "1930-01-01", "2000-01-01"],
        }
    )


def days(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, format="mixed")


def test_dates_become_years_by_default() -> None:
    result = deidentify(admissions(), parse_policy({"reference_date": "2025-01-01"}), key=KEY)
    assert result.frame["admit_date"].tolist() == [2021, 2021, 2020, 2020, 2022]
    assert result.frame["discharge_date"].isna().tolist() == [False] * 4 + [True]


def test_date_shift_keeps_every_interval_within_a_patient() -> None:
    frame = admissions()
    result = deidentify(frame, SHIFT, key=KEY).frame
    before = days(frame["discharge_date"]) - days(frame["admit_date"])
    after = result["discharge_date"] - result["admit_date"]
    assert after.equals(before)
    for rows in ([0, 1], [2, 3]):
        assert (
            result["admit_date"][rows[1]] - result["admit_date"][rows[0]]
            == days(frame["admit_date"])[rows[1]] - days(frame["admit_date"])[rows[0]]
        )
    shift = result["admit_date"] - days(frame["admit_date"])
    assert (shift != pd.Timedelta(0)).all()
    assert shift.abs().max() <= pd.Timedelta(days=365)


def test_the_same_patient_shifts_the_same_in_another_file_and_not_under_another_key() -> None:
    frame = admissions()
    first = deidentify(frame.iloc[:2], SHIFT, key=KEY).frame["admit_date"]
    again = deidentify(frame.iloc[[1]], SHIFT, key=KEY).frame["admit_date"]
    other = deidentify(frame.iloc[:2], SHIFT, key=OTHER_KEY).frame["admit_date"]
    assert again[1] == first[1]
    assert other[1] != first[1]


def test_birth_dates_of_people_aged_90_or_more_are_emptied() -> None:
    result = deidentify(admissions(), SHIFT, key=KEY)
    assert result.frame["dob"].isna().tolist() == [False, False, True, True, False]
    outcome = next(o for o in result.columns if o.column == "dob")
    assert outcome.details == {"suppressed_aged_90_or_more": 2}


def test_a_column_of_mixed_dates_and_text_names_the_row_never_the_value() -> None:
    frame = admissions()
    frame.loc[3, "admit_date"] = "Jane Secret"
    with pytest.raises(DataError) as caught:
        deidentify(frame, SHIFT, key=KEY)
    assert "column 'admit_date' mixes dates and other values: row 4 is not a date" in str(
        caught.value
    )
    assert "Secret" not in str(caught.value)


def test_ages_over_89_become_90_plus() -> None:
    frame = pd.DataFrame({"age": ["45", "89", "90", "101", None]})
    result = deidentify(frame, key=KEY).frame
    assert result["age"].tolist() == ["45", "89", "90+", "90+", None]


def test_numeric_ages_become_one_text_column() -> None:
    result = deidentify(pd.DataFrame({"age": [45.0, 93.0, 70.5]}), key=KEY).frame
    assert result["age"].tolist() == ["45", "90+", "70.5"]


def test_text_in_an_age_column_is_an_error_naming_the_row() -> None:
    with pytest.raises(DataError, match="column 'age' row 2 is not an age"):
        deidentify(pd.DataFrame({"age": ["45", "old"]}), key=KEY)


def test_zip_codes_keep_three_digits_and_restricted_areas_become_000() -> None:
    frame = pd.DataFrame({"zip": ["02134", "2134", "90210-1234", "03601", "89012", None]})
    result = deidentify(frame, key=KEY)
    zips = result.frame["zip"]
    assert zips[:5].tolist() == ["021", "021", "902", "000", "000"] and pd.isna(zips[5])
    assert result.columns[0].details == {"restricted_to_000": 2}


def test_numeric_zip_codes_get_their_leading_zero_back() -> None:
    result = deidentify(pd.DataFrame({"zip": [2134, 90210]}), key=KEY).frame
    assert result["zip"].tolist() == ["021", "902"]


def test_pseudonyms_are_keyed_stable_and_normalised() -> None:
    frame = pd.DataFrame({"mrn": ["ab123", " AB123", "CD456", None]})
    mine = deidentify(frame, key=KEY).frame["mrn"]
    theirs = deidentify(frame, key=OTHER_KEY).frame["mrn"]
    assert mine[0] == mine[1] != mine[2]
    assert mine[0].startswith("P-") and len(mine[0]) == 18
    assert pd.isna(mine[3])
    assert not set(mine.dropna()) & set(theirs.dropna())


def test_an_mrn_and_a_patient_id_with_the_same_value_link() -> None:
    one = deidentify(pd.DataFrame({"mrn": ["123"]}), key=KEY).frame["mrn"][0]
    two = deidentify(pd.DataFrame({"patient_id": [123]}), key=KEY).frame["patient_id"][0]
    assert one == two


def test_deidentify_does_not_change_its_input() -> None:
    frame = admissions()
    copy = frame.copy()
    deidentify(frame, SHIFT, key=KEY)
    pd.testing.assert_frame_equal(frame, copy)


def test_key_must_be_32_bytes() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        deidentify(admissions(), key=b"short")


def test_k_anonymity_summary_counts_small_groups() -> None:
    frame = pd.DataFrame(
        {
            "age": ["41", "45", "47", "52", "95"],
            "sex": ["F", "F", "F", "M", "M"],
            "zip": ["02134", "02139", "02100", "10001", "10001"],
            "glucose": ["1", "2", "3", "4", "5"],
        }
    )
    risk = deidentify(frame, parse_policy({"k": 3}), key=KEY).report.to_json()["k_anonymity"]
    assert [q["column"] for q in risk["quasi_identifiers"]] == ["age", "sex", "zip"]
    assert risk["groups"] == 3  # (40-49, F, 021) ×3, (50-59, M, 100), (90+, M, 100)
    assert risk["min_group_size"] == 1
    assert risk["records_in_groups_below_k"] == 2
    assert risk["share_in_groups_below_k"] == 0.4


def test_report_holds_counts_and_the_policy_never_values() -> None:
    frame = admissions()
    report = deidentify(frame, SHIFT, key=KEY).report.to_json()
    text = repr(report)
    for value in ("A1", "B2", "2021-01-01", "1950-06-01"):
        assert value not in text
    assert report["policy"]["fingerprint"] == "inline"
    assert report["dates"] == {
        "mode": "shift",
        "patient_id": "mrn",
        "shifted_per": "patient",
        "shift_days_range": [-365, 365],
    }
    assert report["reference_date"] == dt.date(2025, 1, 1).isoformat()


def test_summary_lines_say_per_column_what_was_done_and_report_progress() -> None:
    calls: list[tuple[str, int, int]] = []
    result = deidentify(admissions(), SHIFT, key=KEY, progress=lambda *call: calls.append(call))
    lines = result.summary_lines()
    assert lines[0] == "mrn: record_id by name → pseudonymise, 4 of 5 values changed"
    assert lines[3] == "dob: birth_date by name → generalise, 5 of 5 values changed " + (
        "(suppressed_aged_90_or_more: 2)"
    )
    assert lines[4].startswith("dates: shifted per patient (by 'mrn'")
    assert lines[5].startswith("re-identification risk over dob (birth year): smallest group")
    assert calls[-1] == ("de-identifying columns", 4, 4)


def test_only_whole_ages_of_90_or_more_become_90_plus() -> None:
    frame = pd.DataFrame({"age": [89.5, 89.99, 90.0, 91.2, 45.0]})
    assert deidentify(frame, key=KEY).frame["age"].tolist() == ["89.5", "89.99", "90+", "90+", "45"]


def test_a_de_identified_table_goes_through_again(fake) -> None:
    frame = pd.DataFrame(
        {
            "Patient": [
                f"{fake.last_name().upper()}, {fake.first_name().upper()}" for _ in range(12)
            ],
            "mrn": [fake.bothify("MR######") for _ in range(12)],
            "Age": [95, 40, 91, 88] * 3,
            "zip": [fake.zipcode() for _ in range(12)],
            "admit_date": [fake.date() for _ in range(12)],
            "notes": [f"Seen {fake.date()} by Dr. {fake.last_name()}" for _ in range(12)],
        }
    )
    once = deidentify(frame, key=KEY).frame
    twice = deidentify(once, key=KEY).frame
    assert twice["Age"].tolist() == once["Age"].tolist() == ["90+", "40", "90+", "88"] * 3
    assert twice["zip"].tolist() == once["zip"].tolist()
    assert twice["notes"].tolist() == once["notes"].tolist()


def test_keeping_an_identifier_says_the_output_is_not_safe_harbor(fake) -> None:
    frame = pd.DataFrame({"SSN": [fake.ssn() for _ in range(5)], "glucose": ["5.1"] * 5})
    kept = deidentify(frame, parse_policy({"columns": {"SSN": "keep"}}), key=KEY)
    assert kept.report.safe_harbor is False
    assert kept.report.kept_identifiers == ["SSN"]
    assert (
        "NOT HIPAA Safe Harbor" in kept.safe_harbor_warning()
        and "SSN" in kept.safe_harbor_warning()
    )
    default = deidentify(frame, key=KEY)
    assert default.report.safe_harbor is True and default.safe_harbor_warning() is None
    assert default.report.kept_identifiers == []


def test_shifted_dates_are_not_safe_harbor() -> None:
    report = deidentify(admissions(), SHIFT, key=KEY).report.to_json()
    assert report["safe_harbor"] is False
    assert report["not_safe_harbor_because"] == ["dates shifted, not reduced to the year"]


def test_a_quasi_identifier_that_is_dropped_is_an_error_naming_it(fake) -> None:
    frame = pd.DataFrame(
        {
            "Age": [fake.random_int(20, 99) for _ in range(20)],
            "sex": [fake.random_element("FM") for _ in range(20)],
            "zip": [fake.zipcode() for _ in range(20)],
            "Location": [f"{fake.city()}, {fake.state_abbr()}" for _ in range(20)],
        }
    )
    policy = parse_policy({"quasi_identifiers": ["Location"]})
    with pytest.raises(ConfigError, match="quasi_identifiers: Location would be dropped"):
        deidentify(frame, policy, key=KEY)
    named = deidentify(frame, parse_policy({"quasi_identifiers": ["Age", "sex"]}), key=KEY)
    quasi = named.report.to_json()["k_anonymity"]["quasi_identifiers"]
    assert [q["column"] for q in quasi] == ["Age", "sex"]


@pytest.mark.parametrize(
    ("column", "written"),
    [
        ("seen", "seen_year"),  # a date by its content only
        ("born", "born_year"),
        ("dt", "dt_year"),
        ("event_timestamp", "event_timestamp_year"),
        ("admission_date", "admission_date"),  # the name says date: kept
        ("dob", "dob"),
        ("yob", "yob"),
        ("birth_year", "birth_year"),
        ("VisitDate", "VisitDate"),
    ],
)
def test_years_are_written_under_a_name_that_schema_inference_reads_as_a_date(column, written):
    """Whatever the column was called, the years de-identification leaves are calendar
    time to `medserve schema`, not a feature: the name says date or year."""
    from medserve.data import infer_schema

    rows = 60
    frame = pd.DataFrame(
        {
            column: pd.date_range("1950-01-01", periods=rows, freq="211D").strftime("%Y-%m-%d"),
            "glucose": [f"{90 + i % 50}.5" for i in range(rows)],
            "y": [i % 2 for i in range(rows)],
        }
    )
    policy = parse_policy({"reference_date": "2025-01-01"})
    result = deidentify(frame, policy, key=KEY)
    assert list(result.frame.columns) == [written, "glucose", "y"]
    (outcome,) = (o for o in result.columns if o.column == column)
    assert outcome.written_as == (written if written != column else None)
    schema = infer_schema(result.frame, target="y")
    assert schema.column(written).role == "time"
    assert [c.name for c in schema.features] == ["glucose"]


def test_a_year_name_already_taken_gets_a_number():
    frame = pd.DataFrame({"seen": ["2021-01-01", "2022-02-02"], "seen_year": [1, 2]})
    result = deidentify(frame, parse_policy({"columns": {"seen_year": "keep"}}), key=KEY)
    assert list(result.frame.columns) == ["seen_year_2", "seen_year"]
    assert result.frame["seen_year"].tolist() == [1, 2]


def test_shifted_dates_keep_their_names():
    frame = pd.DataFrame({"mrn": ["A1", "B2"], "seen": ["2021-01-01", "2022-02-02"]})
    assert list(deidentify(frame, SHIFT, key=KEY).frame.columns) == ["mrn", "seen"]
