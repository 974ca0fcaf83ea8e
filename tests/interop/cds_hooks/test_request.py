"""The hook call: parsed and checked, its prefetch flattened into the patient's resources,
and the templates satisfied by a real FHIR server as an EHR would."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from medserve.errors import DataError
from medserve.interop.cds_hooks.discovery import ServiceEntry, prefetch_templates
from medserve.interop.cds_hooks.request import (
    can_fetch,
    parse_hook_request,
    prefetched_resources,
    resolve_template,
)
from medserve.interop.fhir.binding import Binding

FHIR_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "fhir"
BINDING = Binding.from_yaml(
    """
model: diabetes
features:
  Glucose: {kind: observation, codes: [http://loinc.org|2345-7, http://loinc.org|2339-0]}
  BloodPressure:
    kind: observation
    codes: [http://loinc.org|85354-9]
    component: [http://loinc.org|8462-4]
  BMI: {kind: observation, codes: [http://loinc.org|39156-5]}
  Age: {kind: age}
"""
)
SERVICE = ServiceEntry("diabetes-risk", "patient-view", "diabetes", "Diabetes", "Risk.", BINDING)
TEMPLATES = prefetch_templates(BINDING, "patient-view")
PATIENT = {"resourceType": "Patient", "id": "p1", "birthDate": "1970-05-01", "gender": "female"}


def observation(id_: str, code: str, patient: str = "Patient/p1") -> dict:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": patient},
    }


def searchset(*resources: dict, **extra) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": resource, "search": {"mode": "match"}} for resource in resources],
        **extra,
    }


def body(**changes) -> dict:
    sent = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "fhirServer": "https://ehr.example.org/fhir",
        "fhirAuthorization": {
            "access_token": "secret-token-value",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "medserve",
        },
        "context": {"userId": "Practitioner/abc", "patientId": "p1"},
        "prefetch": {
            "patient": PATIENT,
            "observations": searchset(observation("o1", "2339-0"), observation("o2", "39156-5")),
        },
    }
    sent.update(changes)
    return {key: value for key, value in sent.items() if value is not None}


def test_a_complete_call_parses_and_its_prefetch_gives_the_resources():
    request = parse_hook_request(body(), SERVICE)
    assert request.patient_id == "p1" and request.user_id == "Practitioner/abc"
    assert request.encounter_id is None
    assert can_fetch(request)
    resources = prefetched_resources(request, TEMPLATES)
    assert [(r["resourceType"], r["id"]) for r in resources] == [
        ("Patient", "p1"),
        ("Observation", "o1"),
        ("Observation", "o2"),
    ]


def test_the_access_token_never_shows_in_a_repr():
    request = parse_hook_request(body(), SERVICE)
    assert "secret-token-value" not in repr(request)
    assert "secret-token-value" not in str(request)
    assert request.fhirAuthorization.access_token == "secret-token-value"


def test_extensions_are_kept():
    request = parse_hook_request(body(extension={"com.example.x": 1}), SERVICE)
    assert request.model_extra == {"extension": {"com.example.x": 1}}


@pytest.mark.parametrize(
    ("sent", "named"),
    [
        ([], "must be a JSON object"),
        (body(hook=""), "hook"),
        (body(hookInstance="call-7"), "hookInstance must be a UUID"),
        (body(context="p1"), "context"),
        (body(context={"userId": "Practitioner/abc"}), "context.patientId is required"),
        (body(context={"patientId": 17}), "context.patientId is required"),
        (body(context={"patientId": "p1", "encounterId": 4}), "context.encounterId"),
        (body(fhirServer="ehr.example.org/fhir"), "fhirServer must be the FHIR server's"),
        (body(fhirServer="ftp://ehr.example.org"), "fhirServer"),
        (body(fhirServer="http://ehr.example.org/fhir"), "fhirServer must be an https URL"),
        (body(fhirServer=None), "fhirServer is required when fhirAuthorization"),
        (body(prefetch=[]), "prefetch"),
    ],
)
def test_malformed_calls_are_refused_naming_the_field(sent, named):
    with pytest.raises(DataError, match=named) as raised:
        parse_hook_request(sent, SERVICE)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("access_token", "", "fhirAuthorization.access_token"),
        ("token_type", "MAC", "fhirAuthorization.token_type must be 'Bearer'"),
        ("expires_in", "soon", "fhirAuthorization.expires_in"),
        ("scope", None, "fhirAuthorization.scope is required"),
        ("subject", None, "fhirAuthorization.subject is required"),
    ],
)
def test_fhir_authorization_needs_the_fields_the_spec_requires(field, value, named):
    authorization = dict(body()["fhirAuthorization"], **{field: value})
    authorization = {key: item for key, item in authorization.items() if item is not None}
    with pytest.raises(DataError, match=named) as raised:
        parse_hook_request(body(fhirAuthorization=authorization), SERVICE)
    # The message names the field, never the token sent.
    assert "secret-token-value" not in str(raised.value)


def test_a_bearer_token_type_is_case_insensitive():
    authorization = dict(body()["fhirAuthorization"], token_type="bearer")
    assert parse_hook_request(body(fhirAuthorization=authorization), SERVICE)


def test_a_call_for_another_hook_is_refused():
    with pytest.raises(DataError, match="answers the 'patient-view' hook, not 'order-sign'"):
        parse_hook_request(body(hook="order-sign"), SERVICE)


@pytest.mark.parametrize(
    "server", ["http://127.0.0.1:8080/fhir", "http://localhost/fhir", "http://[::1]:9/fhir"]
)
def test_plain_http_only_for_a_loopback_server_and_only_when_allowed(server):
    assert parse_hook_request(body(fhirServer=server), SERVICE).fhirServer == server
    with pytest.raises(DataError, match="https"):
        parse_hook_request(body(fhirServer=server), SERVICE, allow_http_loopback=False)


def test_without_server_and_token_the_service_cannot_fetch():
    request = parse_hook_request(body(fhirServer=None, fhirAuthorization=None), SERVICE)
    assert not can_fetch(request)
    request = parse_hook_request(body(fhirAuthorization=None), SERVICE)
    assert not can_fetch(request)


def test_a_missing_prefetch_key_means_fetch_it():
    prefetch = {"patient": PATIENT}
    request = parse_hook_request(body(prefetch=prefetch), SERVICE)
    assert prefetched_resources(request, TEMPLATES) is None
    assert prefetched_resources(parse_hook_request(body(prefetch=None), SERVICE), TEMPLATES) is None


def test_null_is_a_satisfied_template_with_no_data():
    request = parse_hook_request(body(prefetch={"patient": PATIENT, "observations": None}), SERVICE)
    assert prefetched_resources(request, TEMPLATES) == [PATIENT]


def test_an_operation_outcome_or_a_paged_bundle_means_fetch_it():
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]}
    paged = searchset(observation("o1", "2339-0"), link=[{"relation": "next", "url": "x"}])
    for value in (outcome, paged):
        request = parse_hook_request(
            body(prefetch={"patient": PATIENT, "observations": value}), SERVICE
        )
        assert prefetched_resources(request, TEMPLATES) is None


def test_search_warnings_are_left_out_and_a_resource_under_two_keys_counted_once():
    warning = {"resourceType": "OperationOutcome", "issue": [{"severity": "warning"}]}
    bundle = searchset(observation("o1", "2339-0"))
    bundle["entry"].append({"resource": warning, "search": {"mode": "outcome"}})
    prefetch = {"patient": PATIENT, "observations": bundle, "again": searchset(PATIENT)}
    request = parse_hook_request(body(prefetch=prefetch), SERVICE)
    resources = prefetched_resources(request, {**TEMPLATES, "again": "Patient?_id=p1"})
    assert [r["id"] for r in resources] == ["p1", "o1"]


def test_keys_the_service_did_not_ask_for_are_not_read():
    prefetch = {"patient": PATIENT, "observations": None, "user": "123"}
    request = parse_hook_request(body(prefetch=prefetch), SERVICE)
    assert prefetched_resources(request, TEMPLATES) == [PATIENT]


@pytest.mark.parametrize("value", ["123", {"id": "p1"}, searchset({"resourceType": 5})])
def test_a_value_that_is_not_a_resource_is_refused_naming_the_key(value):
    request = parse_hook_request(
        body(prefetch={"patient": PATIENT, "observations": value}), SERVICE
    )
    with pytest.raises(DataError, match="prefetch.observations"):
        prefetched_resources(request, TEMPLATES)


@pytest.mark.parametrize(
    "prefetch",
    [
        {"patient": dict(PATIENT, id="p2"), "observations": None},
        {"patient": PATIENT, "observations": searchset(observation("o1", "2339-0", "Patient/p2"))},
        {
            "patient": PATIENT,
            "observations": searchset(
                observation("o1", "2339-0", "https://ehr.example.org/fhir/Patient/p2/_history/1")
            ),
        },
    ],
)
def test_a_prefetch_holding_another_patients_data_is_never_scored(prefetch):
    request = parse_hook_request(body(prefetch=prefetch), SERVICE)
    with pytest.raises(DataError, match="patient other than the one in context") as raised:
        prefetched_resources(request, TEMPLATES)
    assert "p2" not in str(raised.value)


def test_resolve_template_fills_context_and_user_tokens_url_encoded():
    request = parse_hook_request(
        body(context={"userId": "PractitionerRole/r 1", "patientId": "a/b"}), SERVICE
    )
    assert resolve_template("Patient/{{context.patientId}}", request) == "Patient/a%2Fb"
    assert resolve_template("PractitionerRole?_id={{userPractitionerRoleId}}", request) == (
        "PractitionerRole?_id=r%201"
    )
    with pytest.raises(DataError, match="userPractitionerId"):
        resolve_template("Practitioner/{{userPractitionerId}}", request)
    with pytest.raises(DataError, match="context.encounterId"):
        resolve_template("Encounter/{{context.encounterId}}", request)


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory):
    from support.fhir_server import running_fhir_server

    with running_fhir_server(tmp_path_factory.mktemp("sekmet")) as server:
        yield server


def test_templates_satisfied_by_a_real_fhir_server_give_the_bound_observations(fhir_server):
    """As an EHR does: fill each template, GET it from the FHIR server, send the answers
    as prefetch. The resources that come back are the patient and exactly the
    observations the binding's codes name."""
    bundle = json.loads((FHIR_FIXTURES / "patient-1.json").read_text())
    patient_id = fhir_server.load(bundle)
    request = parse_hook_request(body(context={"patientId": patient_id}, prefetch=None), SERVICE)
    prefetch = {}
    for key, template in TEMPLATES.items():
        url = f"{fhir_server.base_url}/{resolve_template(template, request)}"
        answer = httpx.get(url, headers=fhir_server.headers, timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        prefetch[key] = answer.json()
    called = parse_hook_request(body(context={"patientId": patient_id}, prefetch=prefetch), SERVICE)
    resources = prefetched_resources(called, TEMPLATES)
    assert resources is not None
    assert resources[0]["resourceType"] == "Patient" and resources[0]["id"] == patient_id
    codes = {
        coding["code"]
        for resource in resources[1:]
        for coding in resource["code"]["coding"]
        if coding["system"] == "http://loinc.org"
    }
    wanted = {"2345-7", "2339-0", "85354-9", "39156-5"}
    assert codes & wanted >= {"2339-0", "85354-9", "39156-5"}
    # Nothing the binding does not read (HbA1c, lipids) came with it.
    sent_codes = {
        coding["code"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "Observation"
        for coding in entry["resource"]["code"]["coding"]
    }
    assert sent_codes - wanted, "the fixture should hold observations the binding ignores"
    assert all({c["code"] for c in r["code"]["coding"]} & wanted for r in resources[1:]), sorted(
        codes - wanted
    )
