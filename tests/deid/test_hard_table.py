"""The hard table (tests/deid/hard_table.py): repeated visits, odd column names, non-ASCII
names, relatives. Nothing planted may survive, nothing clinical may change, a second pass
changes nothing, and the report does not call scrubbed notes safe."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from deid.hard_table import HardTable, clinical_changes, make_hard, surviving
from deid.synthetic import make_identified
from medserve.deid import deidentify

KEY = bytes(range(32))


@pytest.fixture(scope="module")
def hard() -> HardTable:
    return make_hard(patients=20, visits=10, seed=5)


@pytest.fixture(scope="module")
def clean(hard: HardTable) -> pd.DataFrame:
    return deidentify(hard.frame, key=KEY).frame


def test_no_planted_identifier_survives_the_hard_table(hard, clean):
    left = Counter(item.kind for item in surviving(clean, hard))
    assert dict(left) == {}
    kinds = {item.kind for item in hard.planted}
    assert {"SSN, 9 digits (soc)", "note: patient name, lower case (non-ASCII)"} <= kinds


def test_clinical_cells_and_words_are_left_as_they_were(hard, clean):
    changes = clinical_changes(clean, hard)
    assert changes["clinical_cells_changed"] == 0
    assert changes["clinical_words_removed"] == 0
    assert changes["clinical_cells"] == 6 * len(hard.frame)


@pytest.mark.parametrize("table", ["hard", "synthetic"])
def test_a_second_pass_changes_nothing(hard, table):
    frame = hard.frame if table == "hard" else make_identified(rows=120, seed=3).frame
    once = deidentify(frame, key=KEY)
    twice = deidentify(once.frame, key=KEY)
    pd.testing.assert_frame_equal(twice.frame, once.frame)
    assert all(outcome.changed == 0 for outcome in twice.columns if outcome.kind != "text")
    pseudonymised = [o.column for o in once.columns if o.action == "pseudonymise"]
    assert pseudonymised and all(
        once.frame[c].str.fullmatch(r"P-[0-9a-f]{16}").all() for c in pseudonymised
    )


def test_scrubbed_notes_are_flagged_for_review_not_declared_safe(hard):
    report = deidentify(hard.frame, key=KEY).report
    assert report.safe_harbor is False
    assert [(flag.column, flag.reason) for flag in report.review] == [("note", "scrubbed_text")]
    assert any("note" in reason for reason in report.not_safe_harbor_because)


def test_what_each_odd_column_was_taken_for(hard):
    outcomes = {o.column: (o.kind, o.action) for o in deidentify(hard.frame, key=KEY).columns}
    assert outcomes["chart"] == ("record_id", "pseudonymise")
    assert outcomes["soc"] == ("ssn", "drop")
    assert outcomes["zip5"] == ("zip", "generalise")
    assert outcomes["yrs_old"] == ("age", "generalise")
    assert outcomes["born"] == ("birth_date", "generalise")
    assert outcomes["guardian_name"] == ("name", "drop")
    assert outcomes["emergency"] == ("name", "drop")
    assert outcomes["callback"] == ("phone", "drop")
    assert outcomes["visit_day"] == ("date", "generalise")
    for column in ("hr", "dx", "ward", "glucose", "platelets", "sodium"):
        assert outcomes[column] == ("none", "keep"), column
