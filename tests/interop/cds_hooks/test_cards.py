"""The risk card a clinician reads: summary, indicator from the model's bands, markdown
detail under clinical labels, source, and nothing null or empty."""

from __future__ import annotations

import re
import uuid

import pytest

from medserve.core.documents import without_empty
from medserve.core.risk import RiskBands
from medserve.errors import ConfigError
from medserve.explain.summary import Factor
from medserve.interop.cds_hooks.cards import (
    INDICATORS,
    card_problems,
    cards_response,
    indicator_for,
    override_reasons,
    percent,
    response_problems,
    risk_card,
)

RAISING = [
    Factor("Glucose", "plasma glucose", "183 mg/dL", 0.9),
    Factor("BMI", "body mass index", "38.1 kg/m2", 0.4),
]
LOWERING = [Factor("Age", "age", "31 years", -0.3)]


def card(**changes) -> dict:
    arguments = dict(
        risk=0.42,
        band="high",
        band_index=2,
        n_bands=3,
        threshold=0.35,
        model="diabetes",
        version=3,
        model_title="Diabetes",
        raising=RAISING,
        lowering=LOWERING,
        missing={"Insulin": "no Observation in the last 365 days", "Pregnancies": "not bound"},
        report_url="https://medserve.example.org/v1/models/diabetes/versions/3/report",
    )
    arguments.update(changes)
    return risk_card(**arguments)


def test_summary_gives_the_risk_as_a_percentage_the_band_and_the_model():
    made = card()
    assert made["summary"] == "Diabetes risk 42% (high) — medserve diabetes v3"
    assert card_problems(made) == []


def test_a_title_ending_in_risk_does_not_say_risk_twice():
    assert card(model_title="Diabetes risk")["summary"] == (
        "Diabetes risk 42% (high) — medserve diabetes v3"
    )


@pytest.mark.parametrize("title", ["Diabetes " * 40, "X" * 500, "Diabetes risk " * 20])
def test_a_very_long_title_is_shortened_so_the_summary_stays_under_140_characters(title):
    made = card(model_title=title)
    assert len(made["summary"]) < 140
    assert made["summary"].endswith("… risk 42% (high) — medserve diabetes v3")
    assert card_problems(made) == []


def test_long_model_and_source_names_drop_the_provenance_but_keep_risk_and_band():
    made = card(model="d" * 120, source_label="Hospital decision support " * 3)
    assert len(made["summary"]) < 140
    assert "risk 42% (high)" in made["summary"]
    assert card_problems(made) == []


@pytest.mark.parametrize(
    ("risk", "shown"),
    [(0.42, "42%"), (0.0449, "4%"), (0.004, "0.4%"), (0.0004, "<0.1%"), (0.996, ">99%")],
)
def test_small_and_large_risks_are_not_rounded_to_0_or_100_percent(risk, shown):
    assert percent(risk) == shown


def test_indicator_follows_the_models_bands_against_its_threshold():
    bands = RiskBands.around(0.63)
    n = len(bands.labels)
    seen = {risk: indicator_for(bands.index(risk), n) for risk in (0.1, 0.4, 0.63, 0.9)}
    # Below half the threshold: info; below the threshold: warning; at or above: critical.
    assert seen == {0.1: "info", 0.4: "warning", 0.63: "critical", 0.9: "critical"}
    assert indicator_for(0, 2) == "info" and indicator_for(1, 2) == "critical"
    assert indicator_for(0, 1) == "info"
    assert set(seen.values()) <= set(INDICATORS)


def test_an_impossible_band_is_a_config_error():
    with pytest.raises(ConfigError, match="band 3"):
        indicator_for(3, 3)


def test_detail_lists_factors_under_clinical_labels_the_threshold_and_what_was_missing():
    detail = card()["detail"]
    assert "**Risk 42%** — band **high**" in detail
    assert "threshold is 35%" in detail
    raised = detail.index("**Raised by:**")
    lowered = detail.index("**Lowered by:**")
    assert raised < detail.index("- plasma glucose = 183 mg/dL") < lowered
    assert lowered < detail.index("- age = 31 years")
    assert "- Insulin: no Observation in the last 365 days\n- Pregnancies: not bound" in detail
    assert "Model: diabetes, version 3." in detail


def test_sections_without_factors_or_missing_inputs_are_left_out():
    detail = card(raising=[], lowering=[], missing={})["detail"]
    assert "Raised by" not in detail and "Lowered by" not in detail and "Missing" not in detail


def test_markdown_in_a_value_or_label_cannot_become_a_link_or_html():
    evil = [Factor("note", "note [click](https://evil.example)", "<img src=x>", 0.5)]
    detail = card(raising=evil, missing={"a*b*": "_why_"})["detail"]
    # Every bracket and angle bracket from the record is escaped, so none is active.
    assert re.findall(r"(?<!\\)[\[\]<>]", detail) == []
    assert r"note \[click\](https://evil.example) = \<img src=x\>" in detail
    assert r"a\*b\*: \_why\_" in detail


def test_source_links_to_the_report_and_is_just_a_label_without_one():
    made = card()
    assert made["source"] == {
        "label": "medserve",
        "url": "https://medserve.example.org/v1/models/diabetes/versions/3/report",
    }
    assert card(report_url=None)["source"] == {"label": "medserve"}
    topic = {"system": "https://medserve.example.org/topics", "code": "risk", "display": "Risk"}
    assert card(topic=topic)["source"]["topic"] == topic


def test_uuid_is_fresh_unless_given_and_no_suggestions_or_links_are_invented():
    first, second = card(), card()
    assert uuid.UUID(first["uuid"]).version == 4 and first["uuid"] != second["uuid"]
    assert card(card_uuid="4e0a3a1e-3283-4575-ab82-028d55fe2719")["uuid"] == (
        "4e0a3a1e-3283-4575-ab82-028d55fe2719"
    )
    assert not {"suggestions", "selectionBehavior", "links", "overrideReasons"} & set(first)


def test_override_reasons_are_codings_with_a_display():
    reasons = override_reasons("https://medserve.example.org/cds-hooks/override-reason")
    made = card(override_reasons=reasons)
    assert made["overrideReasons"] == reasons
    assert all(reason["display"] for reason in reasons)
    assert card_problems(made) == []


def test_without_empty_drops_null_and_empty_members_at_any_depth_but_keeps_false_and_zero():
    value = {
        "a": None,
        "b": "",
        "c": [],
        "d": {},
        "e": {"f": {"g": None}, "h": [None, "", {}, 0]},
        "i": False,
        "j": 0,
        "k": [{"l": []}, "x"],
    }
    assert without_empty(value) == {"e": {"h": [0]}, "i": False, "j": 0, "k": ["x"]}


def test_cards_response_wraps_cards_and_keeps_an_empty_list():
    assert cards_response([]) == {"cards": []}
    made = card()
    response = cards_response([made])
    assert response == {"cards": [made]}
    assert response_problems(response) == []


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"summary": None}, "summary is null"),
        ({"summary": "x" * 140}, "summary is 140 characters"),
        ({"indicator": "urgent"}, "indicator is required"),
        ({"source": {"url": "https://x"}}, "source is required, with a label"),
        ({"uuid": 7}, "uuid must be a string"),
        ({"detail": ""}, "detail is null or empty"),
        ({"links": [{"label": "x", "url": "https://x", "type": "web"}]}, "links[0].type"),
        ({"suggestions": [{"label": "Order"}]}, "selectionBehavior is required"),
        ({"overrideReasons": [{"code": "a", "system": "s"}]}, "overrideReasons[0].display"),
        ({"source": {"label": "x", "topic": {}}}, "source.topic is null or empty"),
    ],
)
def test_card_problems_names_what_breaks_the_spec(broken, problem):
    base = {"summary": "Risk 42% (high)", "indicator": "info", "source": {"label": "medserve"}}
    problems = card_problems({**base, **broken})
    assert any(problem in line for line in problems), problems


def test_card_problems_refuses_what_is_not_a_card():
    assert card_problems([]) == ["a card must be a JSON object"]
    assert response_problems({"cards": None}) == [
        "cards is required (an array, empty when there is no advice)"
    ]
