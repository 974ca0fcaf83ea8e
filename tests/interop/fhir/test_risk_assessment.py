"""The FHIR resources medserve answers with: the RiskAssessment of a prediction (valid R4,
coded from the model's bands, read by a clinician in its notes) and the OperationOutcome
of an error."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.riskassessment import RiskAssessment

from medserve.core.documents import empty_members, without_empty
from medserve.core.risk import RiskBands
from medserve.explain.summary import Factor
from medserve.interop.fhir.outcome import ISSUE_TYPES, issue_code_for, operation_outcome
from medserve.interop.fhir.risk_assessment import (
    QUALITATIVE_RISK_SYSTEM,
    InvalidFhirOutput,
    checked,
    qualitative_risk,
    risk_assessment,
)

WHEN = datetime(2026, 3, 4, 10, 30, tzinfo=timezone(timedelta(hours=1)))
RAISING = [
    Factor("Glucose", "plasma glucose", "183 mg/dL", 0.9),
    Factor("BloodPressure", "diastolic blood pressure", "96 mm[Hg]", 0.2),
]
LOWERING = [Factor("Age", "age", "31 years", -0.4)]


def assessment(**changes: object) -> dict:
    bands = RiskBands.around(0.5)
    risk = 0.612345
    arguments = {
        "patient_ref": "Patient/p-17",
        "risk": risk,
        "band": bands.of([risk])[0],
        "band_index": bands.index(risk),
        "n_bands": len(bands.labels),
        "model": "diabetes",
        "version": 3,
        "threshold": 0.5,
        "basis": ["Observation/o1", "Observation/o2", "Observation/o1", "Patient/p-17"],
        "raising": RAISING,
        "lowering": LOWERING,
        "missing": {"Pregnancies": "not bound to FHIR", "Insulin": "no Observation in 365 days"},
        "occurrence": WHEN,
        "outcome_text": "type 2 diabetes within 5 years",
        "prediction_id": "pred-123",
    }
    arguments.update(changes)
    return risk_assessment(**arguments)


def test_a_risk_assessment_is_valid_r4() -> None:
    resource = assessment()
    assert checked(resource) is resource
    parsed = RiskAssessment.model_validate(resource)
    assert parsed.status == "final"
    assert parsed.subject.reference == "Patient/p-17"


def test_it_carries_the_risk_the_model_and_what_it_read() -> None:
    resource = assessment()
    prediction = resource["prediction"][0]
    assert prediction["probabilityDecimal"] == 0.6123
    assert prediction["outcome"] == {"text": "type 2 diabetes within 5 years"}
    assert prediction["qualitativeRisk"]["text"] == "high"
    assert resource["method"]["text"] == "medserve model diabetes version 3"
    assert resource["method"]["coding"][0]["code"] == "diabetes:3"
    assert resource["identifier"] == [{"system": "urn:medserve:prediction", "value": "pred-123"}]
    # Each resource once, in the order read.
    assert [b["reference"] for b in resource["basis"]] == [
        "Observation/o1",
        "Observation/o2",
        "Patient/p-17",
    ]
    assert datetime.fromisoformat(resource["occurrenceDateTime"]) == WHEN


def test_no_member_is_null_or_empty() -> None:
    resource = assessment(basis=[], raising=[], lowering=[], missing={})
    assert empty_members(resource) == []
    assert "basis" not in resource
    assert [note["text"] for note in resource["note"]] == [
        "Top factors: no input moved the risk notably."
    ]
    checked(resource)


def test_the_empty_member_checker_finds_them_at_any_depth() -> None:
    document = {"a": {"b": [{"c": None}, {"d": ""}, {"e": []}, {"f": {}}], "g": 0, "h": False}}
    assert empty_members(document) == [
        "$.a.b[0].c",
        "$.a.b[1].d",
        "$.a.b[2].e",
        "$.a.b[3].f",
    ]
    assert empty_members(without_empty(document)) == []
    assert without_empty(document) == {"a": {"g": 0, "h": False}}


@pytest.mark.parametrize(
    ("n_bands", "codes"),
    [
        (3, ["low", "moderate", "high"]),
        (2, ["low", "high"]),
        (4, ["low", "moderate", "moderate", "high"]),
    ],
)
def test_bands_map_onto_the_risk_probability_codes(n_bands: int, codes: list[str]) -> None:
    for index, code in enumerate(codes):
        concept = qualitative_risk(index, n_bands, f"band {index}")
        assert concept["coding"][0]["system"] == QUALITATIVE_RISK_SYSTEM
        assert concept["coding"][0]["code"] == code
        assert concept["text"] == f"band {index}"


def test_the_model_s_own_bands_give_the_qualitative_risk() -> None:
    bands = RiskBands((0.3,), ("not at risk", "at risk"))
    for risk, code, label in [(0.1, "low", "not at risk"), (0.7, "high", "at risk")]:
        resource = assessment(
            risk=risk, band=bands.of([risk])[0], band_index=bands.index(risk), n_bands=2
        )
        concept = checked(resource)["prediction"][0]["qualitativeRisk"]
        assert (concept["coding"][0]["code"], concept["text"]) == (code, label)


def test_a_single_band_carries_its_label_without_a_code() -> None:
    assert qualitative_risk(0, 1, "all") == {"text": "all"}


def test_the_note_names_the_top_factors_with_labels_and_units() -> None:
    note = assessment()["note"][0]["text"]
    assert note == (
        "Top factors: raised by plasma glucose = 183 mg/dL, diastolic blood pressure = "
        "96 mm[Hg]; lowered by age = 31 years."
    )


def test_missing_features_are_listed_with_why() -> None:
    note = assessment()["note"][1]["text"]
    assert "Pregnancies: not bound to FHIR" in note
    assert "Insulin: no Observation in 365 days" in note


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda r: r.update(status="done"), "status"),
        (lambda r: r["prediction"][0].update(probabilityDecimal=1.5), r"not in \[0, 1\]"),
        (
            lambda r: r["prediction"][0]["qualitativeRisk"]["coding"][0].update(code="big"),
            "risk-probability",
        ),
        (
            lambda r: r["prediction"][0]["qualitativeRisk"]["coding"][0].update(system="urn:x"),
            "risk-probability",
        ),
        (lambda r: r.update(note=[{"text": ""}]), "empty members"),
        (lambda r: r.update(subject=None), "empty members"),
        (lambda r: r.update(occurrenceDateTime="yesterday"), "occurrenceDateTime"),
        (lambda r: r.update(basis={"reference": "x"}), "basis"),
    ],
)
def test_checked_refuses_a_resource_that_is_not_right(change, problem: str) -> None:
    resource = copy.deepcopy(assessment())
    change(resource)
    with pytest.raises(InvalidFhirOutput, match=problem):
        checked(resource)


def test_an_occurrence_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="time zone"):
        assessment(occurrence=datetime(2026, 3, 4, 10, 30))
    assert assessment(occurrence=datetime(2026, 3, 4, tzinfo=UTC))["occurrenceDateTime"] == (
        "2026-03-04T00:00:00+00:00"
    )


def test_an_operation_outcome_is_valid_r4() -> None:
    outcome = operation_outcome(
        "Observation/o1: unit 'mmol/L' cannot be converted to mg/dL",
        code="value",
        expression="Bundle.entry[2].resource.valueQuantity",
    )
    parsed = OperationOutcome.model_validate(outcome)
    assert parsed.issue[0].severity == "error"
    assert parsed.issue[0].code == "value"
    assert parsed.issue[0].diagnostics.startswith("Observation/o1")
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[2].resource.valueQuantity"]
    assert empty_members(operation_outcome("no expression")) == []


def test_an_operation_outcome_takes_only_fhir_codes() -> None:
    with pytest.raises(ValueError):
        operation_outcome("x", code="bad-request")
    with pytest.raises(ValueError):
        operation_outcome("x", severity="critical")


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "invalid"),
        (422, "invalid"),
        (401, "login"),
        (403, "forbidden"),
        (404, "not-found"),
        (412, "incomplete"),
        (413, "too-costly"),
        (429, "throttled"),
        (500, "exception"),
        (502, "transient"),
        (503, "transient"),
        (504, "timeout"),
        (418, "processing"),
        (599, "exception"),
    ],
)
def test_http_statuses_map_to_issue_types(status: int, code: str) -> None:
    assert issue_code_for(status) == code
    assert code in ISSUE_TYPES
    OperationOutcome.model_validate(operation_outcome("x", code=issue_code_for(status)))
