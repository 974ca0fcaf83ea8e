"""Suggesting a binding from a model's columns, on the bundled datasets' real schemas."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medserve.data import Schema, infer_schema, read_table
from medserve.data.schema import ColumnSpec
from medserve.interop.fhir.binding import (
    AgeSource,
    Binding,
    GenderSource,
    ObservationSource,
)
from medserve.interop.fhir.extract import read_bundle
from medserve.interop.fhir.suggest import suggest_binding

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def pima_schema(pima_csv: Path) -> Schema:
    return infer_schema(read_table(pima_csv), target="Outcome")


def note_for(notes: list[str], feature: str) -> str:
    found = [line for line in notes if line.startswith(f"{feature}: ")]
    assert len(found) == 1, notes
    return found[0]


def test_pima_binds_glucose_diastolic_pressure_bmi_and_age(pima_schema):
    binding, notes = suggest_binding(pima_schema, "diabetes")
    binding.check_against(pima_schema)
    assert binding.model == "diabetes"
    assert list(binding.features) == pima_schema.feature_names

    glucose = binding.features["Glucose"]
    assert isinstance(glucose, ObservationSource)
    assert f"{LOINC}|2345-7" in glucose.codes and glucose.unit == "mg/dL"
    assert "2-hour oral glucose tolerance" in note_for(notes, "Glucose")

    pressure = binding.features["BloodPressure"]
    assert isinstance(pressure, ObservationSource)
    assert pressure.codes[0] == f"{LOINC}|85354-9"
    assert pressure.component == [f"{LOINC}|8462-4"]  # Pima's is the diastolic pressure
    assert pressure.unit == "mm[Hg]"
    assert "diastolic" in note_for(notes, "BloodPressure")

    bmi = binding.features["BMI"]
    assert isinstance(bmi, ObservationSource)
    assert bmi.codes == [f"{LOINC}|39156-5"] and bmi.unit == "kg/m2"
    assert isinstance(binding.features["Age"], AgeSource)


def test_pima_leaves_what_fhir_does_not_hold_unmapped_with_reasons(pima_schema):
    binding, notes = suggest_binding(pima_schema, "diabetes")
    for feature in ("Pregnancies", "DiabetesPedigreeFunction", "SkinThickness"):
        assert binding.features[feature] is None
        assert feature in binding.unbound
    assert note_for(notes, "Pregnancies") == (
        "Pregnancies: no LOINC in the curated table; bind it by hand or leave null"
    )
    assert "family history" in note_for(notes, "DiabetesPedigreeFunction")
    assert "bind it by hand" in note_for(notes, "SkinThickness")
    assert not any(line.startswith(("BMI:", "Age:")) for line in notes)


def test_the_suggested_pima_binding_reads_a_synthea_patient(pima_schema):
    binding, _ = suggest_binding(pima_schema, "diabetes")
    edited = Binding.from_yaml(binding.to_yaml())
    assert edited == binding
    data = json.loads((FIXTURES / "patient-1.json").read_text())
    read = read_bundle(data, edited, at=datetime(2025, 1, 1, tzinfo=UTC))
    # patient-1: blood glucose 94.2 mg/dL, panel diastolic 94.5 mm[Hg], BMI 30.2, born 1965-11-05
    assert read.record["Glucose"] == 94.2
    assert read.record["BloodPressure"] == 94.5
    assert read.record["BMI"] == 30.2
    assert read.record["Age"] == 59
    assert read.missing["Pregnancies"] == "not bound"


def test_heart_binds_age_sex_resting_pressure_and_cholesterol(heart_schema):
    binding, notes = suggest_binding(heart_schema, "heart")
    binding.check_against(heart_schema)
    assert isinstance(binding.features["age"], AgeSource)
    sex = binding.features["sex"]
    assert isinstance(sex, GenderSource)
    assert sex.levels == {"male": "Male", "female": "Female"}
    pressure = binding.features["trestbps"]
    assert isinstance(pressure, ObservationSource)
    assert pressure.component == [f"{LOINC}|8480-6"] and pressure.unit == "mm[Hg]"
    chol = binding.features["chol"]
    assert isinstance(chol, ObservationSource)
    assert chol.codes == [f"{LOINC}|2093-3"] and chol.unit == "mg/dL"
    assert binding.features["thalch"] is None
    assert "exercise test" in note_for(notes, "thalch")
    assert binding.features["fbs"] is None  # a TRUE/FALSE flag, not a measurement


def schema(*columns: ColumnSpec) -> Schema:
    return Schema(columns=[*columns, ColumnSpec(name="outcome", type="binary", role="target")])


@pytest.mark.parametrize(
    ("name", "code", "unit"),
    [
        ("SpO2", "2708-6", "%"),
        ("heart_rate", "8867-4", "/min"),
        ("Resp Rate", "9279-1", "/min"),
        ("temperature", "8310-5", "Cel"),
        ("weight_kg", "29463-7", "kg"),
        ("height", "8302-2", "cm"),
        ("HDL", "2085-9", "mg/dL"),
        ("ldl", "18262-6", "mg/dL"),
        ("triglycerides", "2571-8", "mg/dL"),
        ("HbA1c", "4548-4", "%"),
        ("creatinine", "2160-0", "mg/dL"),
        ("Insulin", "20448-7", "u[IU]/mL"),
        ("systolic_bp", "85354-9", "mm[Hg]"),
    ],
)
def test_the_curated_table_covers_common_measurements(name, code, unit):
    binding, _ = suggest_binding(schema(ColumnSpec(name=name, type="numeric")), "m")
    source = binding.features[name]
    assert isinstance(source, ObservationSource)
    assert source.codes[0] == f"{LOINC}|{code}" and source.unit == unit


def test_a_label_is_matched_when_the_name_says_nothing():
    column = ColumnSpec(name="x1", type="numeric", label="Systolic BP")
    binding, notes = suggest_binding(schema(column), "m")
    source = binding.features["x1"]
    assert isinstance(source, ObservationSource)
    assert source.component == [f"{LOINC}|8480-6"]
    assert notes == []


def test_the_schema_unit_is_used_in_ucum():
    columns = (
        ColumnSpec(name="sbp", type="numeric", unit="mmHg"),
        ColumnSpec(name="glucose", type="numeric", unit="mmol/L"),
        ColumnSpec(name="weight", type="numeric", unit="lbs"),
    )
    binding, notes = suggest_binding(schema(*columns), "m")
    assert binding.features["sbp"].unit == "mm[Hg]"
    assert binding.features["weight"].unit == "[lb_av]"
    assert binding.features["glucose"].unit == "mmol/L"
    assert "the server must send mmol/L" in note_for(notes, "glucose")


@pytest.mark.parametrize(
    ("levels", "expected"),
    [
        (["F", "M"], {"male": "M", "female": "F"}),
        (["female", "male", "other"], {"male": "male", "female": "female", "other": "other"}),
    ],
)
def test_gender_levels_are_mapped_when_obvious(levels, expected):
    column = ColumnSpec(name="Gender", type="categorical", categories=levels)
    binding, _ = suggest_binding(schema(column), "m")
    assert binding.features["Gender"].levels == expected


@pytest.mark.parametrize(
    "column",
    [
        ColumnSpec(name="sex", type="binary"),  # 0/1: which is male is not said
        ColumnSpec(name="sex", type="binary", categories=["0", "1"]),
    ],
)
def test_gender_coded_as_numbers_is_left_unmapped(column):
    binding, notes = suggest_binding(schema(column), "m")
    assert binding.features["sex"] is None
    assert "kind: gender, levels: {male: ..., female: ...}" in note_for(notes, "sex")


def test_a_level_column_is_not_bound_to_a_measurement():
    column = ColumnSpec(name="cholesterol", type="categorical", categories=["high", "normal"])
    binding, notes = suggest_binding(schema(column), "m")
    assert binding.features["cholesterol"] is None
    assert "gives a number" in note_for(notes, "cholesterol")
