"""Reading a patient's FHIR resources into a model's record, on the Synthea fixtures.

Expected values are read by hand from tests/fixtures/fhir/patient-1.json (a woman born
1965-11-05): diastolic pressure in her blood-pressure panels (85354-9, component 8462-4)
79.3 (2018-06-29), 80.3 (2020-04-03), 108.7 (2022-06-17), 94.5 (2024-05-03); blood
glucose (2339-0) 99.1, 94.0, 65.1, 94.2 mg/dL on the same days; BMI 30.2 kg/m2 (2024-05-03);
essential hypertension (SNOMED 59621000) active since 2022; rheumatoid arthritis
(69896004) resolved in 2001.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from medserve.errors import FhirError
from medserve.interop.fhir.binding import Binding
from medserve.interop.fhir.extract import PatientRecord, read_bundle, read_resources

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
AT = datetime(2025, 1, 1, tzinfo=UTC)
PATIENT_1 = "31c74a93-6e62-4e11-b0ba-19b8f7637184"
PANELS_1 = [
    "ac7d9995-d6aa-4075-83d1-d47eb0e76bd9",  # 2018-06-29, diastolic 79.3
    "2d5295c2-b9af-4459-a642-da59f3d3db9b",  # 2020-04-03, 80.3
    "b367f739-231e-47f4-bef8-50d0c9bee502",  # 2022-06-17, 108.7
    "c5556b12-9396-488c-9ae7-21e1057c9525",  # 2024-05-03, 94.5
]
GLUCOSE_1 = [
    "746ab177-23ad-4b9f-8967-3159de174380",  # 2018-06-29, 99.1 mg/dL
    "71a86a09-458d-43a5-9ae7-fa90c199dfbd",  # 2020-04-03, 94.0
    "7e057348-38c5-4d25-b638-de9354fe79ea",  # 2022-06-17, 65.1
    "0a20e696-1ee6-454a-9935-670ba9c8d23a",  # 2024-05-03, 94.2
]
HYPERTENSION_1 = "66a06101-21c1-436f-8538-1fb03cff9be3"
ARTHRITIS_1 = "04c0fdc9-b303-40c5-861e-f07bd5294706"

DIABETES = """
model: diabetes
features:
  Glucose:
    kind: observation
    codes: [http://loinc.org|2345-7, http://loinc.org|2339-0]
    unit: mg/dL
  BloodPressure:
    kind: observation
    codes: [http://loinc.org|85354-9]
    component: [http://loinc.org|8462-4]
    unit: mm[Hg]
  BMI: {kind: observation, codes: [http://loinc.org|39156-5], unit: kg/m2}
  Age: {kind: age}
  sex: {kind: gender, levels: {male: Male, female: Female}}
  hypertension: {kind: condition, codes: [http://snomed.info/sct|59621000]}
  Pregnancies: null
"""


def bundle(number: int) -> dict:
    return json.loads((FIXTURES / f"patient-{number}.json").read_text())


def binding(text: str = DIABETES) -> Binding:
    return Binding.from_yaml(text)


def one(feature: str, source: str) -> Binding:
    """A binding of a single feature, written as a user writes it."""
    indented = "\n".join("    " + line for line in source.strip().splitlines())
    return Binding.from_yaml(f"model: m\nfeatures:\n  {feature}:\n{indented}\n")


def resource(data: dict, resource_id: str) -> dict:
    for entry in data["entry"]:
        if entry["resource"].get("id") == resource_id:
            return entry["resource"]
    raise AssertionError(f"no {resource_id} in the fixture")


def position(data: dict, resource_id: str) -> int:
    for number, entry in enumerate(data["entry"], start=1):
        if entry["resource"].get("id") == resource_id:
            return number
    raise AssertionError(f"no {resource_id} in the fixture")


def test_reads_the_diabetes_record_with_its_provenance():
    read = read_bundle(bundle(1), binding(), at=AT)
    assert isinstance(read, PatientRecord)
    assert read.patient_id == PATIENT_1
    assert read.reference_time == AT
    assert read.record == {
        "Glucose": 94.2,
        "BloodPressure": 94.5,  # the diastolic component of the latest panel
        "BMI": 30.2,
        "Age": 59,
        "sex": "Female",
        "hypertension": 1,
        "Pregnancies": None,
    }
    assert read.missing == {"Pregnancies": "not bound"}
    assert read.sources["Glucose"] == [f"Observation/{GLUCOSE_1[3]}"]
    assert read.sources["BloodPressure"] == [f"Observation/{PANELS_1[3]}"]
    assert read.sources["Age"] == read.sources["sex"] == [f"Patient/{PATIENT_1}"]
    assert read.sources["hypertension"] == [f"Condition/{HYPERTENSION_1}"]
    basis = read.basis()
    assert basis[0] == f"Patient/{PATIENT_1}"
    assert len(basis) == len(set(basis)) == 5
    assert f"Observation/{GLUCOSE_1[3]}" in basis


def test_every_feature_of_the_binding_is_in_the_record():
    read = read_bundle(bundle(3), binding(), at=AT)
    assert list(read.record) == list(binding().features)
    assert read.record["sex"] == "Male"


def test_glucose_absent_from_the_record_is_missing_and_says_so():
    read = read_bundle(bundle(2), binding(), at=AT)
    assert read.record["Glucose"] is None
    assert read.sources["Glucose"] == []
    assert read.missing["Glucose"] == (
        "no Observation with http://loinc.org|2345-7 or http://loinc.org|2339-0 "
        "in the last 365 days"
    )
    assert read.record["hypertension"] == 0  # absent, not missing
    assert "hypertension" not in read.missing


def test_a_value_older_than_the_lookback_is_missing_with_its_age():
    # The latest glucose is from 2024-05-03T06:44Z: 607 whole days before 2026-01-01.
    read = read_bundle(bundle(1), binding(), at=datetime(2026, 1, 1, tzinfo=UTC))
    assert read.record["Glucose"] is None
    assert read.missing["Glucose"] == "latest is 607 days old (lookback 365 days)"


def test_observations_after_the_reference_time_are_ignored():
    read = read_bundle(bundle(1), binding(), at=datetime(2023, 1, 1, tzinfo=UTC))
    assert read.record["Glucose"] == 65.1  # 2022-06-17; the 2024 value is in the future
    assert read.sources["Glucose"] == [f"Observation/{GLUCOSE_1[2]}"]


@pytest.mark.parametrize(
    ("aggregation", "expected", "used"),
    [
        ("mean", (79.3 + 80.3 + 108.7 + 94.5) / 4, PANELS_1),
        ("max", 108.7, [PANELS_1[2]]),
        ("min", 79.3, [PANELS_1[0]]),
        ("count", 4, PANELS_1),
    ],
)
def test_aggregations_over_the_lookback(aggregation, expected, used):
    source = f"""
kind: observation
codes: [http://loinc.org|85354-9]
component: [http://loinc.org|8462-4]
unit: mm[Hg]
lookback_days: 3650
aggregation: {aggregation}
"""
    read = read_bundle(bundle(1), one("diastolic", source), at=AT)
    assert read.record["diastolic"] == pytest.approx(expected)
    assert read.sources["diastolic"] == [f"Observation/{ref}" for ref in used]


def test_the_lookback_bounds_the_aggregation():
    # 1000 days before 2025-01-01 is 2022-04-07: the 2022-06-17 and 2024-05-03 glucose.
    source = """
kind: observation
codes: [http://loinc.org|2339-0]
unit: mg/dL
lookback_days: 1000
aggregation: mean
"""
    read = read_bundle(bundle(1), one("glucose", source), at=AT)
    assert read.record["glucose"] == pytest.approx((65.1 + 94.2) / 2)
    assert read.sources["glucose"] == [f"Observation/{GLUCOSE_1[2]}", f"Observation/{GLUCOSE_1[3]}"]


def test_count_of_nothing_is_zero_not_missing():
    source = "kind: observation\ncodes: [http://loinc.org|2339-0]\naggregation: count"
    read = read_bundle(bundle(2), one("tests", source), at=AT)
    assert read.record["tests"] == 0
    assert read.missing == {}


def test_converts_on_the_ucum_code_into_the_bound_unit():
    source = "kind: observation\ncodes: [http://loinc.org|2339-0]\nunit: g/L"
    read = read_bundle(bundle(1), one("glucose", source), at=AT)
    assert read.record["glucose"] == pytest.approx(0.942)


def test_the_display_unit_is_never_read():
    data = bundle(1)
    resource(data, GLUCOSE_1[3])["valueQuantity"]["unit"] = "mmol/L"  # display only, wrong
    read = read_bundle(data, binding(), at=AT)
    assert read.record["Glucose"] == 94.2


def test_without_a_bound_unit_the_number_is_taken_as_is():
    data = bundle(1)
    quantity = resource(data, GLUCOSE_1[3])["valueQuantity"]
    del quantity["code"], quantity["system"]
    source = "kind: observation\ncodes: [http://loinc.org|2339-0]"
    read = read_bundle(data, one("glucose", source), at=AT)
    assert read.record["glucose"] == 94.2


def test_observations_not_final_are_skipped():
    data = bundle(1)
    resource(data, GLUCOSE_1[3])["status"] = "entered-in-error"
    resource(data, GLUCOSE_1[2])["status"] = "preliminary"
    source = "kind: observation\ncodes: [http://loinc.org|2339-0]\nlookback_days: 3650"
    read = read_bundle(data, one("glucose", source), at=AT)
    assert read.record["glucose"] == 94.0
    assert read.sources["glucose"] == [f"Observation/{GLUCOSE_1[1]}"]


def test_effective_period_and_issued_date_an_observation():
    data = bundle(1)
    latest = resource(data, GLUCOSE_1[3])
    del latest["effectiveDateTime"]
    latest["issued"] = "2021-01-01T00:00:00Z"  # now older than 2022-06-17
    glucose = one("g", "kind: observation\ncodes: [http://loinc.org|2339-0]\nlookback_days: 3650")
    read = read_bundle(data, glucose, at=AT)
    assert read.record["g"] == 65.1
    latest["effectivePeriod"] = {"start": "2024-12-01", "end": "2024-12-02T08:00:00+01:00"}
    read = read_bundle(data, glucose, at=AT)
    assert read.record["g"] == 94.2


def test_age_from_partial_birth_dates_takes_the_earliest_birthday():
    age = one("Age", "kind: age")
    data = bundle(1)  # born 1965-11-05
    at = datetime(2025, 11, 2, tzinfo=UTC)
    assert read_bundle(data, age, at=at).record["Age"] == 59
    patient = data["entry"][0]["resource"]
    patient["birthDate"] = "1965-11"  # read as 1965-11-01: 60 on 2025-11-02
    assert read_bundle(data, age, at=at).record["Age"] == 60
    patient["birthDate"] = "1965"  # read as 1965-01-01
    assert read_bundle(data, age, at=datetime(2025, 1, 1, tzinfo=UTC)).record["Age"] == 60
    patient["deceasedDateTime"] = "2024-01-01T00:00:00Z"
    assert read_bundle(data, age, at=at).record["Age"] == 60
    del patient["birthDate"]
    read = read_bundle(data, age, at=at)
    assert read.record["Age"] is None
    assert read.missing["Age"] == "Patient.birthDate absent"
    assert read.sources["Age"] == []


def test_gender_maps_to_the_model_levels_and_an_unbound_one_is_missing():
    levels = one("sex", "kind: gender\nlevels: {male: M, female: F}")
    assert read_bundle(bundle(3), levels, at=AT).record["sex"] == "M"
    assert read_bundle(bundle(1), levels, at=AT).record["sex"] == "F"
    only_women = one("sex", "kind: gender\nlevels: {female: F}")
    read = read_bundle(bundle(3), only_women, at=AT)
    assert read.record["sex"] is None
    assert read.missing["sex"] == "Patient.gender is not one of the bound genders (female)"


def test_condition_present_absent_and_within_a_lookback():
    def condition(code: str, lookback: str = "") -> Binding:
        return one("c", f"kind: condition\ncodes: [http://snomed.info/sct|{code}]\n{lookback}")

    read = read_bundle(bundle(1), condition("59621000"), at=AT)
    assert read.record["c"] == 1
    assert read.sources["c"] == [f"Condition/{HYPERTENSION_1}"]
    assert read_bundle(bundle(1), condition("44054006"), at=AT).record["c"] == 0  # diabetes
    # Rheumatoid arthritis, resolved in 2001: a history, but not within the last year.
    assert read_bundle(bundle(1), condition("69896004"), at=AT).record["c"] == 1
    recent = condition("69896004", "lookback_days: 365")
    assert read_bundle(bundle(1), recent, at=AT).record["c"] == 0
    # Active hypertension since 2022 counts within a year; before its onset it does not.
    yearly = condition("59621000", "lookback_days: 365")
    assert read_bundle(bundle(1), yearly, at=AT).record["c"] == 1
    assert read_bundle(bundle(1), yearly, at=datetime(2021, 1, 1, tzinfo=UTC)).record["c"] == 0


def test_a_refuted_condition_is_absent():
    data = bundle(1)
    resource(data, HYPERTENSION_1)["verificationStatus"]["coding"][0]["code"] = "refuted"
    codes = "kind: condition\ncodes: [http://snomed.info/sct|59621000]"
    assert read_bundle(data, one("c", codes), at=AT).record["c"] == 0


def test_resources_as_prefetch_gives_them_with_a_searchset_bundle():
    data = bundle(1)
    patient = data["entry"][0]["resource"]
    others = [entry["resource"] for entry in data["entry"][1:]]
    for item in others:
        item["subject"] = {"reference": f"Patient/{PATIENT_1}"}
    # Servers may answer with absolute, versioned references.
    resource({"entry": [{"resource": r} for r in others]}, GLUCOSE_1[3])["subject"] = {
        "reference": f"https://ehr.example/fhir/Patient/{PATIENT_1}/_history/2"
    }
    searchset = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": item, "search": {"mode": "match"}} for item in others],
    }
    read = read_resources([patient, searchset, None], binding(), at=AT)
    assert read.record == read_bundle(bundle(1), binding(), at=AT).record
    no_patient = read_resources([searchset], binding(), at=AT, patient_id=PATIENT_1)
    assert no_patient.record["Glucose"] == 94.2
    assert no_patient.record["Age"] is None and "Patient" in no_patient.missing["Age"]


def test_reads_a_whole_collection_ignoring_resources_it_does_not_read():
    data = bundle(1)
    data["type"] = "collection"
    data["entry"].append({"resource": {"resourceType": "Claim", "status": "nonsense"}})
    hdl = next(
        e
        for e in data["entry"]
        if e["resource"].get("id") == "f7387efe-ba19-468d-8131-ba750013748b"
    )
    hdl["resource"]["valueQuantity"]["value"] = "abc"  # HDL: the binding does not read it
    assert read_bundle(data, binding(), at=AT).record["Glucose"] == 94.2


# --- Refusals --------------------------------------------------------------------------


def refusal(data: object, read_binding: Binding | None = None) -> str:
    with pytest.raises(FhirError) as caught:
        read_bundle(data, read_binding or binding(), at=AT)
    message = str(caught.value)
    assert "\n" not in message and PATIENT_1 not in message
    return message


def test_refuses_what_is_not_a_bundle():
    assert "not a JSON object" in refusal([1, 2])
    patient = bundle(1)["entry"][0]["resource"]
    assert refusal(patient) == "expected a FHIR Bundle, got resourceType 'Patient'"
    data = bundle(1)
    data["entry"][4] = "text"
    assert refusal(data) == "entry 5: not a JSON object"
    data = bundle(1)
    del data["entry"][4]["resource"]["resourceType"]
    assert refusal(data) == "entry 5: the resource has no resourceType"


def test_refuses_a_bundle_without_a_patient_or_with_two():
    data = bundle(1)
    del data["entry"][0]
    assert refusal(data).startswith("no Patient in the Bundle")
    data = bundle(1)
    data["entry"].append(bundle(2)["entry"][0])
    assert refusal(data).startswith("two Patients in the Bundle (entry 1 (Patient), entry 88")


def test_refuses_another_patients_observation():
    data = bundle(1)
    data["entry"].append(bundle(2)["entry"][-1])  # patient-2's HDL
    assert refusal(data) == (
        "entry 88 (Observation): is about another patient than the Patient; "
        "send one patient's record"
    )


def test_refuses_an_observation_without_subject():
    data = bundle(1)
    del resource(data, GLUCOSE_1[0])["subject"]
    where = position(data, GLUCOSE_1[0])
    assert refusal(data).startswith(f"entry {where} (Observation): has no subject")


def test_refuses_a_malformed_observation_naming_the_field():
    data = bundle(1)
    resource(data, GLUCOSE_1[0])["valueQuantity"]["value"] = "abc"
    where = position(data, GLUCOSE_1[0])
    message = refusal(data)
    assert message.startswith(f"entry {where} (Observation): valueQuantity.value: ")
    assert message.endswith("it is not a valid FHIR R4 Observation")
    assert "abc" not in message


def test_refuses_a_malformed_patient():
    data = bundle(1)
    data["entry"][0]["resource"]["birthDate"] = "soon"
    assert refusal(data).startswith("entry 1 (Patient): birthDate: ")


def test_refuses_a_unit_that_cannot_convert():
    in_mmol = DIABETES.replace("unit: mg/dL", "unit: mmol/L")
    message = refusal(bundle(1), binding(in_mmol))
    where = position(bundle(1), GLUCOSE_1[3])
    assert message.startswith(f"entry {where} (Observation): 'Glucose': cannot convert")
    assert "'mg/dL'" in message and "'mmol/L'" in message


def test_refuses_a_quantity_without_a_ucum_code_when_a_unit_is_bound():
    data = bundle(1)
    del resource(data, GLUCOSE_1[3])["valueQuantity"]["code"]
    assert "has no UCUM code" in refusal(data)


def test_read_resources_refuses_a_patient_other_than_the_one_asked_for():
    patient = bundle(2)["entry"][0]["resource"]
    with pytest.raises(FhirError, match=r"^resource 1 \(Patient\): a Patient other than"):
        read_resources([patient], binding(), at=AT, patient_id=PATIENT_1)
