"""The TRIPOD+AI checklist: every item once, software items pointing to sections the report
has, and the items people write answered once the model card supplies them."""

from __future__ import annotations

from typing import Any

import pytest

from medserve.errors import ConfigError
from medserve.evaluation.model_card import IntendedUse, ModelCard, read_model_card
from medserve.evaluation.report_types import TripodChecklist
from medserve.evaluation.tripod import ITEMS, tripod_checklist
from medserve.reporting.html import render_html
from support.reports import synthetic_report

# TRIPOD+AI (Collins et al., BMJ 2024), as the report lists it.
REQUIRED = [
    *("1", "2", "3a", "3b", "3c", "4", "5", "6", "7", "8a", "8b", "8c", "9", "10", "11"),
    *("12a", "12b", "12c", "12d", "12e", "12f", "12g", "13", "14", "15", "16", "17"),
    *("18a", "18b", "18c", "18d", "18e", "18f", "19", "20", "21", "22", "23a", "23b"),
    *("24", "25", "26", "27a", "27b", "27c"),
]
SOFTWARE = [
    *("5", "7", "8a", "9", "10", "11", "12a", "12b", "12c", "12d", "12e", "12f", "12g"),
    *("13", "14", "15", "16", "20", "21", "22", "23a", "24", "27a"),
]
WRITTEN = ["3a", "3b", "3c", "17", "18a", "18b", "18c", "18d", "18e", "18f", "19", "25", "26"]
WRITTEN += ["27b", "27c"]
# The model card's keys that answer no TRIPOD+AI item of their own.
INTENDED_USE_ONLY = {"intended_users", "out_of_scope", "contact"}


def full_card() -> ModelCard:
    text = {key: f"Our {key}." for key in ModelCard.model_fields if key != "limitations"}
    return ModelCard(**text, limitations=["Old data."])


def resolve(document: dict[str, Any], where: str) -> Any:
    """The value at a dotted path of the report's JSON (KeyError if it is not there)."""
    value: Any = document
    for part in where.split("."):
        value = value[part]
    return value


@pytest.fixture(scope="module")
def report():
    return synthetic_report()


def test_the_checklist_lists_every_item_once_in_order(report):
    items = [row.item for row in report.tripod.items]
    assert items == REQUIRED
    assert all(row.title for row in report.tripod.items)


def test_items_the_software_fills_point_to_sections_the_report_has(report):
    document = report.model_dump(mode="json")
    rows = {row.item: row for row in report.tripod.items}
    for item in SOFTWARE:
        row = rows[item]
        if row.status == "answered":
            assert row.where is not None and resolve(document, row.where) is not None, item
            assert row.answer, item
    assert rows["8a"].answer == "outcome: y = 1"
    assert rows["23a"].answer.startswith("AUROC ") and "95% CI" in rows["23a"].answer
    assert rows["10"].status == "to be written"  # this report has no sample-size section


def test_items_people_write_are_to_be_written_until_the_card_supplies_them(report):
    rows = {row.item: row for row in report.tripod.items}
    for item in WRITTEN:
        assert rows[item].status == "to be written", item
        assert rows[item].where.startswith("model_card."), item
    with_card = synthetic_report(card=full_card())
    rows = {row.item: row for row in with_card.tripod.items}
    for item in WRITTEN:
        assert rows[item].status == "answered", item
        assert rows[item].answer, item
    assert rows["3a"].answer == "Our background." and rows["3a"].where == "model_card.background"
    assert rows["3b"].where == "intended_use" and "Our intended_use." in rows["3b"].answer
    assert rows["26"].answer == "Old data."


def test_every_model_card_key_answers_one_item():
    keys = [item.key for item in ITEMS if hasattr(item, "key")]
    assert len(keys) == len(set(keys))
    card_keys = set(ModelCard.model_fields) - INTENDED_USE_ONLY - {"intended_use", "limitations"}
    assert set(keys) == card_keys
    # The intended-use section keeps its own fields only.
    assert "background" not in IntendedUse.model_fields


def test_a_card_can_say_an_item_does_not_apply():
    card = ModelCard(outcome_blinding="Not applicable.", conflicts_of_interest="None.")
    rows = {row.item: row for row in tripod_checklist(synthetic_report(), card).items}
    assert rows["8c"].status == "not applicable"
    assert rows["18b"].status == "answered"  # "none" is an answer, not "does not apply"


def test_the_card_is_read_from_yaml_or_json_and_unknown_keys_are_still_refused(tmp_path):
    yaml_card = tmp_path / "card.yaml"
    yaml_card.write_text("background: Chest pain is common.\nfunding: None.\n")
    assert read_model_card(yaml_card).background == "Chest pain is common."
    json_card = tmp_path / "card.json"
    json_card.write_text('{"ethics_approval": "IRB 2024-17", "limitations": "Old."}')
    card = read_model_card(json_card)
    assert card.ethics_approval == "IRB 2024-17" and card.limitations == ["Old."]
    typo = tmp_path / "typo.yaml"
    typo.write_text("backgroud: x\n")
    with pytest.raises(ConfigError, match="unknown key 'backgroud'.*background"):
        read_model_card(typo)


def test_the_page_shows_the_checklist(report):
    page = render_html(synthetic_report(card=ModelCard(background="Chest <b>pain</b>.")))
    assert 'id="tripod"' in page and "TRIPOD+AI checklist" in page
    assert "to be written" in page and "model card <code>funding</code>" in page
    assert "Chest &lt;b&gt;pain&lt;/b&gt;." in page


def test_the_checklist_is_a_typed_section(report):
    assert isinstance(report.tripod, TripodChecklist)
    assert report.tripod.guideline.startswith("TRIPOD+AI")
