"""Content rules apply whatever a column is called, judged by the share of its values that
look like identifiers, over repeated rows (a patient's visits) as over distinct ones."""

from __future__ import annotations

import pandas as pd
import pytest

from medserve.deid import deidentify, detect_column

KEY = bytes(range(32))
VISITS = 10


def visits(per_patient: list, **other: list) -> pd.DataFrame:
    """One row per visit, ``VISITS`` visits per patient; ``other`` columns per patient too."""
    rows = len(per_patient) * VISITS
    frame = {"value": [per_patient[i // VISITS] for i in range(rows)]}
    frame |= {name: [values[i // VISITS] for i in range(rows)] for name, values in other.items()}
    frame["glucose"] = [f"{90 + i % 60}.5" for i in range(rows)]
    return pd.DataFrame(frame)


def kind_of(frame: pd.DataFrame, column: str = "value") -> tuple[str, str]:
    outcome = next(o for o in deidentify(frame, key=KEY).columns if o.column == column)
    return outcome.kind, outcome.action


def test_a_column_only_mostly_phone_numbers_is_dropped(fake):
    callback = [fake.numerify("(555) ###-####") if i % 10 < 7 else "declined" for i in range(200)]
    frame = pd.DataFrame({"callback": callback, "glucose": ["5.5"] * 200})
    assert kind_of(frame, "callback") == ("phone", "drop")
    assert list(deidentify(frame, key=KEY).frame.columns) == ["glucose"]


def test_nine_digit_ssns_repeated_over_visits_are_dropped_without_an_id_column(fake):
    ssns = [fake.ssn().replace("-", "") for _ in range(20)]
    frame = visits(ssns)
    assert frame["value"].nunique() / len(frame) == 0.1  # far from half distinct
    assert kind_of(frame) == ("ssn", "drop")


def test_repeated_record_numbers_follow_their_patient(fake):
    charts = [fake.numerify("0######") for _ in range(20)]
    encounter = visits(charts)
    assert kind_of(encounter) == ("record_id", "pseudonymise")


@pytest.mark.parametrize(
    "shape",
    ["{First} {Last}", "{LAST}, {FIRST}", "{First} {Last}-{Other}", "Zoë {Last}"],
)
def test_names_repeated_over_visits_are_names_when_they_follow_the_patient(fake, shape):
    def one() -> str:
        first, last, other = fake.first_name(), fake.last_name(), fake.last_name()
        return shape.format(
            First=first, Last=last, Other=other, FIRST=first.upper(), LAST=last.upper()
        )

    people = [one() for _ in range(20)]
    charts = [fake.numerify("MRN#######") for _ in range(20)]
    frame = visits(people, mrn=charts)
    assert kind_of(frame) == ("name", "drop")


def test_title_case_diagnoses_that_change_between_visits_stay(fake):
    diagnoses = ["Heart Failure", "Atrial Fibrillation", "Chest Pain", "Hip Fracture"]
    charts = [fake.numerify("MRN#######") for _ in range(20)]
    frame = visits(charts)
    frame = frame.rename(columns={"value": "mrn"})
    frame["dx"] = [diagnoses[(i * 7) % 4] for i in range(len(frame))]
    assert kind_of(frame, "dx") == ("none", "keep")
    assert deidentify(frame, key=KEY).frame["dx"].tolist() == frame["dx"].tolist()


@pytest.mark.parametrize("column", ["pc", "zip5", "zip_5", "postcode"])
def test_five_digit_zip_codes_are_cut_to_three_whatever_the_column_is_called(fake, column):
    frame = pd.DataFrame({column: [fake.zipcode() for _ in range(50)]})
    result = deidentify(frame, key=KEY).frame[column]
    assert result.str.fullmatch(r"\d{3}").all()


def test_measurements_of_five_digits_and_varying_width_are_not_zip_codes(fake):
    counts = [str(fake.random_int(4_000, 15_000)) for _ in range(50)]
    assert detect_column("wbc", pd.Series(counts)).kind == "none"


@pytest.mark.parametrize(
    ("column", "values", "expected"),
    [
        ("yrs_old", ["45", "93", "101", "67"], ["45", "90+", "90+", "67"]),
        ("years_old", ["45", "93"], ["45", "90+"]),
        ("age_in_yrs", ["93", "12"], ["90+", "12"]),
        ("x", ["93 yo", "45 yo", "102 years", "60 y"], ["90+", "45 yo", "90+", "60 y"]),
    ],
)
def test_ages_over_89_are_grouped_under_odd_names_and_with_units(column, values, expected):
    result = deidentify(pd.DataFrame({column: values}), key=KEY)
    assert result.frame[column].tolist() == expected
    assert result.columns[0].kind == "age"


def test_heart_rates_over_90_are_not_taken_for_ages(fake):
    rates = [str(fake.random_int(55, 140)) for _ in range(50)]
    frame = pd.DataFrame({"hr": rates})
    assert deidentify(frame, key=KEY).frame["hr"].tolist() == rates


def test_dates_without_a_year_are_dates_and_are_emptied(fake):
    days = [f"{fake.month_name()[:3]} {fake.random_int(1, 28)}" for _ in range(30)]
    result = deidentify(pd.DataFrame({"visit_day": days}), key=KEY)
    outcome = result.columns[0]
    assert (outcome.kind, outcome.detected_by) == ("date", "content")
    assert result.frame["visit_day_year"].isna().all()  # a date reduced to the year
    assert outcome.details == {"without_year_emptied": 30}


@pytest.mark.parametrize(
    "column",
    ["guardian_name", "mother_name", "parent_name", "kin_name", "relative_name", "legal_name"],
)
def test_relatives_and_guardians_names_are_names_by_the_column_name(fake, column):
    relatives = pd.Series([fake.name() for _ in range(3)] * 10)  # repeated: no content rule
    detection = detect_column(column, relatives)
    assert (detection.kind, detection.detected_by) == ("name", "name")


@pytest.mark.parametrize("column", ["born", "birth_year", "yob"])
def test_birth_years_that_say_over_89_are_emptied(column):
    frame = pd.DataFrame({column: ["1930-05-01", "1960-01-01", "1934"]})
    policy_reference = {"reference_date": "2025-01-01"}
    from medserve.deid import parse_policy

    result = deidentify(frame, parse_policy(policy_reference), key=KEY)
    (written,) = result.frame.columns  # `born` says no year: written as `born_year`
    assert written == (column if column != "born" else "born_year")
    assert result.frame[written].isna().tolist() == [True, False, True]


def test_a_birth_year_is_judged_on_the_year_so_a_second_pass_agrees():
    from medserve.deid import parse_policy

    policy = parse_policy({"reference_date": "2025-06-01"})
    frame = pd.DataFrame({"dob": ["1935-12-31", "1936-01-01"]})  # 89 on the day; year 1935
    once = deidentify(frame, policy, key=KEY).frame
    assert once["dob"].isna().tolist() == [True, False]
    again = deidentify(once, policy, key=KEY).frame
    pd.testing.assert_frame_equal(again, once)


@pytest.mark.parametrize(
    "values",
    [
        ["Decadron 4", "Marinol 5", "Augmentin 50", "Decadron 4"],  # no month names
        ["30 min walk", "2 mile run", "10 mg at rest", "30 min walk"],  # no addresses
        ["120/80", "135/90", "5/5", "110/70"],
        ["2 y", "3.5", "4", "1"],  # one value with a unit is no age column
    ],
)
def test_clinical_values_that_resemble_identifier_shapes_are_kept(values):
    frame = pd.DataFrame({"col_9": values * 10})
    result = deidentify(frame, key=KEY)
    assert result.columns[0].kind == "none"
    assert result.frame["col_9"].tolist() == values * 10
