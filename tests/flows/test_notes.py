"""Which notes training reads, and the de-identification rule that guards them."""

from __future__ import annotations

import pandas as pd
import pytest

from medserve.errors import ConfigError
from medserve.flows import TrainRequest
from medserve.flows.prepare import preview_schema
from support.notes import notes_table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    frame = notes_table(120, seed=2)
    frame.loc[0, "note"] = "Seen by Dr. Jonathan Whitaker on 2021-03-04. Troponin elevated."
    return frame


def _schema(table, **options):
    return preview_schema(TrainRequest(data=table, target="event", source_name="t", **options))


def test_notes_are_refused_until_de_identified(table):
    with pytest.raises(ConfigError, match="'note' is patient text and was not de-identified"):
        _schema(table, text=["note"])


def test_de_identified_notes_are_a_text_feature(table):
    schema = _schema(table, text=["note"], deid=True)
    spec = schema.column("note")
    assert (spec.type, spec.role) == ("text", "feature")
    assert any("read by the text family" in n for n in schema.notices)
    assert not any("'note'" in n and "not used as a feature" in n for n in schema.notices)


def test_auto_reads_the_notes_de_identification_scrubbed(table):
    assert _schema(table, deid=True).column("note").role == "feature"
    assert _schema(table, deid=True, family="logistic").column("note").role != "feature"


def test_without_de_identification_auto_leaves_notes_out_and_says_how(table):
    schema = _schema(table)
    assert schema.column("note").role != "feature"
    assert any("holds free text, not read by the model" in n for n in schema.notices)


def test_the_override_reads_notes_as_written_and_says_not_safe_harbor(table):
    schema = _schema(table, text=["note"], text_not_deidentified=True)
    assert schema.column("note").role == "feature"
    assert schema.deidentification["safe_harbor"] is False
    assert schema.deidentification["notes_not_deidentified"] == ["note"]
    assert "NOT HIPAA Safe Harbor" in schema.notices[0]


def test_an_unknown_notes_column_is_named(table):
    with pytest.raises(ConfigError, match="names column 'notes', which the table does not have"):
        _schema(table, text=["notes"], deid=True)


def _declared(tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  note: {type: text, role: feature}\n")
    return path


def test_notes_a_schema_file_declares_are_under_the_same_rule(table, tmp_path):
    with pytest.raises(ConfigError, match="'note' is patient text and was not de-identified"):
        _schema(table, schema_file=_declared(tmp_path), family="text")
    schema = _schema(
        table, schema_file=_declared(tmp_path), family="text", text_not_deidentified=True
    )
    assert schema.deidentification["safe_harbor"] is False
    assert schema.column("note").categories is None  # no note kept as a level


@pytest.mark.parametrize("column", ["event"])
def test_the_outcome_cannot_be_read_as_a_note(table, column):
    with pytest.raises(ConfigError, match="the table's target column"):
        _schema(table, text=[column], text_not_deidentified=True)
