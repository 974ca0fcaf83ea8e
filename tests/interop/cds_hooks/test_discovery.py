"""Discovery: one service per opted-in model, its prefetch derived from its binding."""

from __future__ import annotations

import pytest

from medserve.errors import ConfigError
from medserve.interop.cds_hooks.cards import without_empty
from medserve.interop.cds_hooks.discovery import (
    HOOKS,
    ServiceEntry,
    discovery_document,
    prefetch_templates,
)
from medserve.interop.fhir.binding import Binding

DIABETES = Binding.from_yaml(
    """
model: diabetes
features:
  Glucose:
    kind: observation
    codes: [http://loinc.org|2345-7, http://loinc.org|2339-0]
    unit: mg/dL
  BloodPressure:
    kind: observation
    codes: [http://loinc.org|85354-9, http://loinc.org|8462-4]
    component: [http://loinc.org|8462-4]
    unit: mm[Hg]
  BMI: {kind: observation, codes: [http://loinc.org|39156-5, http://loinc.org|2339-0]}
  Age: {kind: age}
  Pregnancies: null
"""
)
HEART = Binding.from_yaml(
    """
model: heart
features:
  age: {kind: age}
  sex: {kind: gender, levels: {male: Male, female: Female}}
  diabetic: {kind: condition, codes: [http://snomed.info/sct|44054006, http://snomed.info/sct|73211009]}
"""
)
DEMOGRAPHIC = Binding.from_yaml(
    "model: m\nfeatures:\n  age: {kind: age}\n  sex: {kind: gender, levels: {male: M}}\n"
)


def entry(**changes) -> ServiceEntry:
    fields = dict(
        id="diabetes-risk",
        hook="patient-view",
        model="diabetes",
        title="Diabetes risk",
        description="Risk of diabetes from glucose, blood pressure, BMI and age.",
        binding=DIABETES,
    )
    fields.update(changes)
    return ServiceEntry(**fields)


def test_observation_template_searches_every_bound_code_once_in_binding_order():
    templates = prefetch_templates(DIABETES, "patient-view")
    assert templates == {
        "patient": "Patient/{{context.patientId}}",
        "observations": "Observation?patient={{context.patientId}}&code="
        "http://loinc.org|2345-7,http://loinc.org|2339-0,http://loinc.org|85354-9,"
        "http://loinc.org|8462-4,http://loinc.org|39156-5",
    }


def test_condition_template_only_when_the_binding_reads_conditions():
    templates = prefetch_templates(HEART, "patient-view")
    assert templates == {
        "patient": "Patient/{{context.patientId}}",
        "conditions": "Condition?patient={{context.patientId}}&code="
        "http://snomed.info/sct|44054006,http://snomed.info/sct|73211009",
    }
    assert prefetch_templates(DEMOGRAPHIC, "patient-view") == {
        "patient": "Patient/{{context.patientId}}"
    }


def test_encounter_discharge_asks_for_the_same_data():
    for binding in (DIABETES, HEART):
        assert prefetch_templates(binding, "encounter-discharge") == prefetch_templates(
            binding, "patient-view"
        )
    with pytest.raises(ConfigError, match="order-sign"):
        prefetch_templates(DIABETES, "order-sign")


def test_discovery_lists_each_service_with_the_spec_members():
    document = discovery_document(
        [
            entry(),
            entry(hook="encounter-discharge"),
            entry(id="heart", model="heart", binding=HEART),
        ]
    )
    assert [(s["id"], s["hook"]) for s in document["services"]] == [
        ("diabetes-risk", "patient-view"),
        ("diabetes-risk", "encounter-discharge"),
        ("heart", "patient-view"),
    ]
    first = document["services"][0]
    assert list(first) == ["hook", "title", "description", "id", "prefetch"]
    assert first["prefetch"] == prefetch_templates(DIABETES, "patient-view")
    assert without_empty(document) == document


def test_an_untitled_service_omits_title_and_usage_requirements_show_when_given():
    (service,) = discovery_document([entry(title="")])["services"]
    assert "title" not in service and "usageRequirements" not in service
    (service,) = discovery_document([entry(usage_requirements="Needs glucose in the record.")])[
        "services"
    ]
    assert service["usageRequirements"] == "Needs glucose in the record."


def test_no_services_is_an_empty_list():
    assert discovery_document([]) == {"services": []}


def test_one_id_may_not_be_listed_twice_for_the_same_hook():
    with pytest.raises(ConfigError, match="listed twice"):
        discovery_document([entry(), entry(model="other")])


@pytest.mark.parametrize(
    "bad", ["diabetes risk", "a/b", "", "x" * 65, "risk?x=1", "Diabetes", "-risk", "a~b"]
)
def test_a_service_id_must_be_one_url_path_segment(bad):
    with pytest.raises(ConfigError, match="path segment"):
        entry(id=bad)


def test_a_service_needs_a_supported_hook_and_a_description():
    with pytest.raises(ConfigError, match="order-sign"):
        entry(hook="order-sign")
    with pytest.raises(ConfigError, match="description"):
        entry(description="  ")
    assert HOOKS[0] == "patient-view"
