"""The CDS Hooks specification's own JSON examples (tests/fixtures/cds_hooks, extracted by
its extract.py) run through our discovery, request, prefetch, card and feedback code.

Two examples break the spec's own rules, and the checker says so: the ``autolaunchable``
response's card has no ``indicator`` (REQUIRED), and the ``systemActions`` example's action
has no ``description`` (REQUIRED). The prefetch-data example gives ``"user": "123"``, not a
resource: it is refused only when a template reads that key."""

from __future__ import annotations

import json
from pathlib import Path

import jwt
import pytest

from medserve.errors import DataError
from medserve.explain.summary import Factor
from medserve.interop.cds_hooks.cards import (
    action_problems,
    card_problems,
    cards_response,
    response_problems,
    risk_card,
    without_empty,
)
from medserve.interop.cds_hooks.discovery import (
    ServiceEntry,
    discovery_document,
    prefetch_templates,
)
from medserve.interop.cds_hooks.feedback import parse_feedback
from medserve.interop.cds_hooks.request import (
    HookRequest,
    parse_hook_request,
    prefetched_resources,
    resolve_template,
)
from medserve.interop.fhir.binding import Binding

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "cds_hooks"
# The complete JWT the spec shows for its example header, payload and key.
SPEC_TOKEN = (
    "eyJhbGciOiJFUzM4NCIsInR5cCI6IkpXVCIsImtpZCI6ImV4YW1wbGUta2lkIiwiamt1IjoiaHR0cHM6Ly9maGly"
    "LWVoci5leGFtcGxlLmNvbS9qd2tfdXJpIn0.eyJpc3MiOiJodHRwczovL2ZoaXItZWhyLmV4YW1wbGUuY29tLyIs"
    "ImF1ZCI6Imh0dHBzOi8vY2RzLmV4YW1wbGUub3JnL2Nkcy1zZXJ2aWNlcy9zb21lLXNlcnZpY2UiLCJleHAiOjE0"
    "MjI1Njg4NjAsImlhdCI6MTMxMTI4MDk3MCwianRpIjoiZWUyMmIwMjEtZTFiNy00NjExLWJhNWItOGVlYzZhMzNh"
    "YzFlIiwidGVuYW50IjoiMmRkZDZjM2EtOGU5YS00NGM2LWEzMDUtNTIxMTFhZDMwMmEyIn0.d1WfLjGRKlcWB94l"
    "9do4cM8REXeYJLL6SGUBO8VHZhfM8mwKYP70EMxJ67War4TQblEpaQrp11wx5p7oPFm2ETYgCicS84vXWEIYTdjo"
    "oZdooCSDf2L8-i4awdoUwiEb"
)
BINDING = Binding.from_yaml(
    "model: diabetes\nfeatures:\n"
    "  Glucose: {kind: observation, codes: [http://loinc.org|2339-0]}\n"
    "  Age: {kind: age}\n"
)
SERVICE = ServiceEntry(
    "static-patient-greeter", "patient-view", "diabetes", "Diabetes", "Diabetes risk.", BINDING
)
# Which tests use which example: every example file must be used (the last test).
USED: dict[str, list[str]] = {}


def uses(*names: str):
    def mark(test):
        for name in names:
            assert (FIXTURES / f"{name}.json").is_file(), name
            USED.setdefault(name, []).append(test.__name__)
        return test

    return mark


def example(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def https(body: dict) -> dict:
    """The example with its FHIR server on https (the spec's examples use http)."""
    return {**body, "fhirServer": body["fhirServer"].replace("http://", "https://", 1)}


def call(context: dict, **members) -> dict:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": context,
        **members,
    }


# --- discovery ---------------------------------------------------------------------------


def member_types(services: list[dict]) -> dict[str, set[type]]:
    types: dict[str, set[type]] = {}
    for service in services:
        for name, value in service.items():
            types.setdefault(name, set()).add(type(value))
    return types


@uses("01-discovery-response", "24-extension-discovery")
def test_our_discovery_has_the_spec_examples_member_names_and_types():
    spec_services = example("01-discovery-response")["services"]
    spec_services += example("24-extension-discovery")["services"]
    spec = member_types(spec_services)
    for service in spec_services:
        assert {"hook", "description", "id"} <= set(service)
        assert without_empty(service) == service
    ours = discovery_document(
        [
            SERVICE,
            ServiceEntry("bare", "encounter-discharge", "m", "", "d", BINDING, "Needs glucose."),
        ]
    )
    assert set(ours) == {"services"}
    our_types = member_types(ours["services"])
    assert set(our_types) == set(spec) - {"extension"}
    for name, types in our_types.items():
        assert types == spec[name], name
    for service in ours["services"]:
        for template in service["prefetch"].values():
            assert "{{context.patientId}}" in template


@uses("03-prefetch-template-a1c", "07-prefetch-templates", "26-prefetch-patient-to-greet")
def test_spec_templates_have_our_templates_shape_and_fill_from_a_call():
    request = parse_hook_request(https(example("02-hook-request")), SERVICE)
    for name in (
        "03-prefetch-template-a1c",
        "07-prefetch-templates",
        "26-prefetch-patient-to-greet",
    ):
        templates = example(name)["prefetch"]
        assert all(isinstance(key, str) and isinstance(t, str) for key, t in templates.items())
    ours = prefetch_templates(BINDING, "patient-view")
    assert ours["patient"] == example("07-prefetch-templates")["prefetch"]["patient"]
    assert resolve_template(
        example("03-prefetch-template-a1c")["prefetch"]["hemoglobin-a1c"], request
    ) == ("Observation?patient=1288992&code=4548-4&_count=1&sort:desc=date")
    assert (
        resolve_template(
            example("26-prefetch-patient-to-greet")["prefetch"]["patientToGreet"], request
        )
        == "Patient/1288992"
    )
    # The user is a Practitioner here, so a PractitionerRole token cannot be filled.
    with pytest.raises(DataError, match="userPractitionerRoleId"):
        resolve_template(example("07-prefetch-templates")["prefetch"]["user"], request)


# --- the hook call -----------------------------------------------------------------------


@uses("02-hook-request", "26-prefetch-patient-to-greet")
def test_the_spec_request_parses_once_its_fhir_server_is_https():
    sent = example("02-hook-request")
    with pytest.raises(DataError, match="fhirServer must be an https URL"):
        parse_hook_request(sent, SERVICE)
    request = parse_hook_request(https(sent), SERVICE)
    assert request.hookInstance == sent["hookInstance"]
    assert request.context == sent["context"] and request.patient_id == "1288992"
    assert request.fhirAuthorization.subject == "cds-service4"
    templates = example("26-prefetch-patient-to-greet")["prefetch"]
    assert prefetched_resources(request, templates) == [sent["prefetch"]["patientToGreet"]]
    # The service's own templates are not satisfied by this prefetch: it must fetch.
    assert prefetched_resources(request, prefetch_templates(BINDING, "patient-view")) is None


@uses("09-fhir-authorization")
def test_the_spec_fhir_authorization_parses_and_its_token_stays_hidden():
    authorization = example("09-fhir-authorization")["fhirAuthorization"]
    body = call(
        {"patientId": "1288992"},
        fhirServer="https://ehr.example.org",
        fhirAuthorization=authorization,
    )
    request = parse_hook_request(body, SERVICE)
    assert request.fhirAuthorization.access_token == authorization["access_token"]
    assert request.fhirAuthorization.expires_in == 300
    assert authorization["access_token"] not in repr(request)


@uses("07-prefetch-templates", "08-prefetch-data")
def test_the_spec_prefetch_data_flattens_and_its_missing_key_means_fetch():
    templates = example("07-prefetch-templates")["prefetch"]
    prefetch = example("08-prefetch-data")["prefetch"]
    request = parse_hook_request(call({"patientId": "1288992"}, prefetch=prefetch), SERVICE)
    # diabetes-type2 is missing: the EHR did not satisfy it, so the service fetches.
    assert prefetched_resources(request, templates) is None
    satisfied = {key: templates[key] for key in ("patient", "hemoglobin-a1c")}
    resources = prefetched_resources(request, satisfied)
    assert [r["resourceType"] for r in resources] == ["Patient", "Observation"]
    assert resources[1]["code"]["coding"][0]["code"] == "4548-4"
    # "user": "123" is not a resource; refused only when a template reads it.
    with pytest.raises(DataError, match="prefetch.user must be a FHIR resource"):
        prefetched_resources(request, {"user": templates["user"]})


@uses("25-context-patient-view", "04-context-token")
def test_spec_patient_view_contexts_parse():
    for name, patient_id in (("25-context-patient-view", "1288992"), ("04-context-token", "123")):
        request = parse_hook_request(call(example(name)["context"]), SERVICE)
        assert request.patient_id == patient_id


@uses("05-context-draft-orders", "06-context-draft-orders-with-id", "27-context-hook-definition")
def test_only_root_level_primitive_context_fields_are_prefetch_tokens():
    orders = HookRequest.model_validate(call(example("05-context-draft-orders")["context"]))
    assert resolve_template("Encounter/{{context.encounterId}}", orders) == "Encounter/456"
    with pytest.raises(DataError, match="context.draftOrders"):
        resolve_template("Bundle/{{context.draftOrders}}", orders)
    with_id = HookRequest.model_validate(
        call(example("06-context-draft-orders-with-id")["context"])
    )
    assert resolve_template("MedicationRequest/{{context.medicationRequestId}}", with_id) == (
        "MedicationRequest/123"
    )
    generic = HookRequest.model_validate(call(example("27-context-hook-definition")["context"]))
    assert resolve_template("X?n={{context.anotherField}}", generic) == "X?n=123"
    with pytest.raises(DataError, match="context.someObject"):
        resolve_template("X?o={{context.someObject}}", generic)
    # None of these contexts names a patient: a risk service refuses them.
    for name in (
        "05-context-draft-orders",
        "06-context-draft-orders-with-id",
        "27-context-hook-definition",
    ):
        with pytest.raises(DataError, match="context.patientId is required"):
            parse_hook_request(call(example(name)["context"]), SERVICE)
    # The hook-definition example's empty array is what the spec forbids elsewhere.
    assert "moreObjects" not in without_empty(example("27-context-hook-definition"))["context"]


@uses("23-extension-request")
def test_the_extension_request_keeps_its_extension_but_names_no_patient():
    sent = example("23-extension-request")
    assert HookRequest.model_validate(sent).model_extra == {"extension": sent["extension"]}
    with pytest.raises(DataError, match="context.patientId is required"):
        parse_hook_request(sent, SERVICE)
    fixed = https({**sent, "context": {**sent["context"], "patientId": "1288992"}})
    assert parse_hook_request(fixed, SERVICE).model_extra["extension"] == sent["extension"]


# --- cards -------------------------------------------------------------------------------


@uses("10-response-no-cards", "17-response-cards")
def test_spec_responses_pass_the_conformance_checker_and_so_does_ours():
    assert response_problems(example("10-response-no-cards")) == []
    spec = example("17-response-cards")
    assert response_problems(spec) == []
    ours = risk_card(
        risk=0.42,
        band="high",
        band_index=2,
        n_bands=3,
        threshold=0.35,
        model="diabetes",
        version=3,
        model_title="Diabetes",
        raising=[Factor("Glucose", "plasma glucose", "183 mg/dL", 0.9)],
        lowering=[],
        missing={"Insulin": "not bound"},
        report_url="https://medserve.example.org/v1/models/diabetes/versions/3/report",
    )
    assert response_problems(cards_response([ours])) == []
    spec_card = spec["cards"][0]
    for name, value in ours.items():
        assert type(value) is type(spec_card[name]), name
    assert set(ours["source"]) <= set(spec_card["source"])


@uses("18-response-autolaunchable", "16-response-system-actions")
def test_the_checker_finds_what_two_spec_examples_leave_out():
    assert response_problems(example("18-response-autolaunchable")) == [
        "cards[0]: indicator is required, one of info, warning, critical"
    ]
    assert response_problems(example("16-response-system-actions")) == [
        "systemActions[0].description is required (a string)"
    ]


@uses("11-card-source", "15-card-override-reasons")
def test_the_spec_source_and_override_reasons_make_a_valid_card():
    card = {
        "summary": "Risk 42% (high)",
        "indicator": "warning",
        **example("11-card-source"),
        **example("15-card-override-reasons"),
    }
    assert card_problems(card) == []
    card["overrideReasons"][0].pop("display")
    assert card_problems(card) == ["overrideReasons[0].display is required (a string)"]


@uses("12-action-create", "13-action-update", "14-action-delete")
def test_the_spec_actions_pass_the_action_checker():
    for name in ("12-action-create", "13-action-update", "14-action-delete"):
        assert action_problems(example(name)) == [], name
    assert action_problems({"type": "create", "description": "x"}) == [
        "action.resource is required to create"
    ]


# --- feedback ----------------------------------------------------------------------------


@uses("19-feedback-accepted", "20-feedback-overridden", "21-feedback-overridden-with-reason")
def test_spec_feedback_parses():
    (accepted,) = parse_feedback(example("19-feedback-accepted"))
    assert accepted.outcome == "accepted"
    assert [s.id for s in accepted.acceptedSuggestions] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]
    (plain,) = parse_feedback(example("20-feedback-overridden"))
    assert plain.outcome == "overridden" and plain.reason_codes() == [] and not plain.comment_given
    (reasoned,) = parse_feedback(example("21-feedback-overridden-with-reason"))
    assert reasoned.card == "9368d37b-283f-44a0-93ea-547cebab93ed"
    assert reasoned.reason_codes() == [
        {"system": "https://example.com/cds-hooks/override-reason-system", "code": "d7ecf885"}
    ]
    assert reasoned.comment_given
    assert "A comment entered by the clinician." not in repr(reasoned)


# --- the EHR's signed JWT ----------------------------------------------------------------


@uses("22-jwt-example")
def test_the_spec_jwt_example_signs_and_verifies_with_its_keys():
    parts = example("22-jwt-example")
    assert {"alg", "kid", "typ"} <= set(parts["header"]) and parts["header"]["typ"] == "JWT"
    assert {"iss", "aud", "exp", "iat", "jti"} <= set(parts["payload"])
    audience = "https://cds.example.org/cds-services/some-service"  # the URL called
    assert parts["payload"]["aud"] == audience
    key = jwt.PyJWKSet.from_dict(parts["jwk_set"])[parts["header"]["kid"]]
    no_expiry = {"verify_exp": False}  # the example expired in 2015
    claims = jwt.decode(SPEC_TOKEN, key, algorithms=["ES384"], audience=audience, options=no_expiry)
    assert claims == parts["payload"]
    assert jwt.get_unverified_header(SPEC_TOKEN) == parts["header"]
    signer = jwt.PyJWK(parts["private_jwk"])
    ours = jwt.encode(parts["payload"], signer.key, algorithm="ES384", headers=parts["header"])
    assert (
        jwt.decode(ours, key, algorithms=["ES384"], audience=audience, options=no_expiry)
        == (parts["payload"])
    )


def test_every_spec_example_is_used_by_a_test():
    files = {path.stem for path in FIXTURES.glob("*.json")}
    assert len(files) == 27
    assert set(USED) == files, sorted(files - set(USED))
    # Each example kept verbatim because it is not strict JSON has its repaired twin.
    assert {path.stem for path in FIXTURES.glob("*.txt")} <= files
