"""What schema inference leaves out of the features, and why (README, "What inference
leaves out"): dates of any kind, years left by `medserve deid`, patient numbers in any
order, notes however templated, constant columns; and an .npy scored without a label."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medserve.data import infer_schema, read_table
from medserve.data.io import npy_feature_names

N = 60


def patients(**columns: object) -> pd.DataFrame:
    """A small table with two real features and an outcome, plus ``columns``."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(
        {
            "age": rng.integers(30, 80, N),
            "chol": rng.integers(150, 300, N).astype(str),  # as a CSV gives it
            "y": np.arange(N) % 2,
        }
    )
    for name, values in columns.items():
        frame[name] = values
    return frame


def notice_about(schema, name: str) -> str:
    found = [n for n in schema.notices if n.startswith(f"'{name}'")]
    assert found, schema.notices
    return found[0]


@pytest.mark.parametrize("fmt", ["frame", "parquet"])
def test_a_datetime_column_is_calendar_time_not_a_number(tmp_path, fmt):
    frame = patients(admitted=pd.date_range("2019-01-01", periods=N, freq="37h"))
    if fmt == "parquet":
        frame.to_parquet(tmp_path / "t.parquet")
        frame = read_table(tmp_path / "t.parquet")
        assert pd.api.types.is_datetime64_any_dtype(frame["admitted"])
    schema = infer_schema(frame, target="y")
    column = schema.column("admitted")
    assert (column.type, column.role) == ("datetime", "time")
    assert "holds dates" in notice_about(schema, "admitted")
    assert "admitted" not in [c.name for c in schema.features]


def test_date_objects_are_calendar_time():
    days = pd.date_range("2019-01-01", periods=N, freq="D").date
    schema = infer_schema(patients(seen=pd.Series(days, dtype=object)), target="y")
    assert schema.column("seen").role == "time"


@pytest.mark.parametrize("name", ["admission_date", "dob", "visit_year", "discharge_dt"])
@pytest.mark.parametrize("as_text", [False, True])
def test_years_in_a_date_column_are_time_not_a_feature(name, as_text):
    years = np.random.default_rng(1).integers(1987, 2022, N)
    schema = infer_schema(patients(**{name: years.astype(str) if as_text else years}), target="y")
    column = schema.column(name)
    assert column.role == "time"
    assert "holds years (as `medserve deid` leaves dates)" in notice_about(schema, name)


def test_years_are_time_only_in_a_column_named_as_a_date():
    """A measurement that happens to lie in 1800..2100 (a count, a dose) stays a feature."""
    doses = np.random.default_rng(1).integers(1800, 2100, N)
    assert infer_schema(patients(dose_mg=doses), target="y").column("dose_mg").role == "feature"


@pytest.mark.parametrize(
    ("name", "numbers"),
    [
        ("patient_no", np.random.default_rng(3).permutation(np.arange(1, N + 1))),
        ("case_nr", np.random.default_rng(3).permutation(np.arange(300, 300 + N))),
        ("study_number", np.random.default_rng(3).permutation(np.arange(7, 7 + N)).astype(str)),
        ("hospital", np.random.default_rng(3).choice(np.arange(10_000, 99_999), N, False)),
    ],
)
def test_unsorted_patient_numbers_are_identifiers(name, numbers):
    schema = infer_schema(patients(**{name: numbers}), target="y")
    assert schema.column(name).role == "id"
    assert "record or patient number" in notice_about(schema, name)


def test_num_alone_is_no_patient_number_and_measurements_stay_features():
    rng = np.random.default_rng(5)
    frame = patients(
        num=rng.permutation(np.arange(N)),  # the heart data's outcome is called num
        glucose=rng.normal(110, 20, N).round(1),  # distinct, but not whole numbers
        platelets=rng.integers(150, 450, N),  # whole numbers that repeat
        weight_g=rng.permutation(np.arange(3000, 3000 + N)).astype(float),  # floats
    )
    schema = infer_schema(frame, target="y")
    for name in ("num", "glucose", "platelets", "weight_g"):
        assert schema.column(name).role == "feature", name


def as_exported(tmp_path, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` written to CSV and read back as `train` reads it (every cell as text)."""
    frame.to_csv(tmp_path / "export.csv", index=False)
    return read_table(tmp_path / "export.csv")


@pytest.mark.parametrize("via_csv", [False, True])
@pytest.mark.parametrize(
    ("name", "numbers"),
    [
        ("patient_no", np.random.default_rng(4).permutation(np.arange(1, N + 1))),
        ("hospital", np.random.default_rng(4).choice(np.arange(10_000, 999_999), N, False)),
    ],
)
def test_record_numbers_stored_as_floats_are_identifiers(tmp_path, name, numbers, via_csv):
    """104233.0, 98812.0 …: integer record numbers with a blank become floats."""
    floats = numbers.astype(float)
    floats[5] = np.nan
    frame = patients(**{name: floats})
    assert frame[name].dtype == float
    if via_csv:
        frame = as_exported(tmp_path, frame)
        assert frame[name].iloc[0].endswith(".0")
    schema = infer_schema(frame, target="y")
    assert schema.column(name).role == "id"
    assert "record or patient number" in notice_about(schema, name)


@pytest.mark.parametrize("via_csv", [False, True])
def test_float_measurements_stay_features(tmp_path, via_csv):
    rng = np.random.default_rng(6)
    frame = patients(
        cholesterol=rng.integers(150, 320, N).astype(float),  # 233.0: whole, repeating
        creatinine_umol=rng.normal(90, 25, N).round(2),  # distinct, with decimals
        platelets_ul=rng.integers(150, 400, N).astype(float) * 1000,  # 5+ digits, repeating
        weight_g=rng.permutation(np.arange(3000, 3000 + N)).astype(float),  # distinct, 4 digits
    )
    if via_csv:
        frame = as_exported(tmp_path, frame)
    schema = infer_schema(frame, target="y")
    for name in ("cholesterol", "creatinine_umol", "platelets_ul", "weight_g"):
        assert schema.column(name).role == "feature", name
        assert schema.column(name).type == "numeric", name


@pytest.mark.parametrize("name", ["comment", "notes", "clinician_note", "remarks"])
def test_templated_notes_are_text_however_few_their_phrases(name):
    phrases = ["Patient seen, no complaints", "Follow-up in 2 weeks", "Seen", "Stable"]
    schema = infer_schema(patients(**{name: [phrases[i % 4] for i in range(N)]}), target="y")
    column = schema.column(name)
    assert (column.type, column.role) == ("text", "text")
    assert "free text" in notice_about(schema, name)


def test_templated_text_of_many_words_is_text_whatever_its_name():
    phrases = ["seen in clinic, no new complaints today", "follow up in two weeks please"]
    schema = infer_schema(patients(plan=[phrases[i % 2] for i in range(N)]), target="y")
    assert schema.column("plan").role == "text"


def test_short_levels_stay_categorical():
    schema = infer_schema(patients(cp=["typical angina", "asymptomatic"] * (N // 2)), target="y")
    assert schema.column("cp").role == "feature"


@pytest.mark.parametrize("value", ["Cleveland", 1, 1.5, True])
def test_a_constant_column_is_left_out_with_a_notice(value):
    schema = infer_schema(patients(site=[value] * N), target="y")
    assert schema.column("site").role == "ignore"
    assert "has one value" in notice_about(schema, "site")
    assert "cannot inform the model" in notice_about(schema, "site")


def test_one_value_with_blanks_is_no_constant():
    """Present or not is information ("on insulin" or blank)."""
    schema = infer_schema(patients(insulin=(["yes", None] * N)[:N]), target="y")
    assert schema.column("insulin").role == "feature"


def test_an_npy_of_only_the_features_scores_without_a_label(tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "train.npy", np.column_stack([rng.normal(size=(20, 11)), np.ones(20)]))
    np.save(tmp_path / "new.npy", rng.normal(size=(5, 11)))
    trained = read_table(tmp_path / "train.npy")
    features = [c for c in trained.columns if c != "label"]
    scored = read_table(tmp_path / "new.npy", npy_features=len(features))
    assert list(scored.columns) == features == npy_feature_names(11)
    assert scored.shape == (5, 11)
    # A labelled file read for scoring keeps its layout (the label is one more column).
    labelled = read_table(tmp_path / "train.npy", npy_features=11)
    assert list(labelled.columns) == [*features, "label"]
