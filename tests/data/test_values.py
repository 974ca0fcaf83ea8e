"""The one reader of raw values: its documented rule, and its batch forms (a table column,
the scorer's record-major numbers) reading every value exactly as one value is read."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medserve.data import ColumnSpec, Schema
from medserve.data.values import (
    BLANK_TEXTS,
    MISSING_WORDS,
    NumberColumns,
    UnreadableValue,
    ValueReader,
)
from medserve.errors import SchemaError

PIMA_GLUCOSE = ColumnSpec(name="Glucose", type="numeric", missing_tokens=["0"])
LAB = ColumnSpec(name="lab", type="numeric", missing_tokens=["0", "not done"])
FLAG = ColumnSpec(name="flag", type="binary")  # 0/1 numbers, no text levels
SMOKER = ColumnSpec(
    name="smoker", type="categorical", categories=["no", "Yes"], missing_tokens=["unknown"]
)
GRADE = ColumnSpec(name="grade", type="categorical", categories=["1", "2"], missing_tokens=["0"])
COLUMNS = [PIMA_GLUCOSE, LAB, FLAG, SMOKER, GRADE]


def read(spec: ColumnSpec, value: object):
    return ValueReader.of(spec).read(value)


@pytest.mark.parametrize("value", ["0", " 0 ", 0, 0.0, -0.0, "0.0", "0e3"])
def test_a_numeric_missing_token_matches_by_value(value):
    assert read(PIMA_GLUCOSE, value) is None


@pytest.mark.parametrize("value", [None, math.nan, pd.NA, "", "  ", "NA", " n/a ", "NaN", "null"])
def test_blank_values_and_texts_are_not_measured_in_every_kind_of_column(value):
    for spec in COLUMNS:
        assert read(spec, value) is None, spec.name


def test_every_blank_text_in_any_case_is_not_measured():
    for text in BLANK_TEXTS:
        for spelling in (text, text.upper(), f"  {text.title()}\t"):
            assert read(LAB, spelling) is None and read(SMOKER, spelling) is None


@pytest.mark.parametrize(
    ("value", "number"), [(63, 63.0), ("63", 63.0), (" 2.3 ", 2.3), ("1e2", 100.0), (-5, -5.0)]
)
def test_numbers_and_number_text_are_numbers(value, number):
    assert read(LAB, value) == number


@pytest.mark.parametrize("value", ["not done", "NOT DONE", "  Not Done "])
def test_a_text_token_in_a_numeric_column_is_not_measured(value):
    assert read(LAB, value) is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("abc", "'abc' is not a number"),
        ("1_000", "'1_000' is not a number"),
        ("٣", "'٣' is not a number"),  # non-ASCII digits
        (True, "true is not a number"),
        ("Infinity", "'Infinity' is not a finite number"),
        (math.inf, "inf is not a finite number"),
        (10**400, "is not a finite number"),
        ([63], "a list is not a number"),
        ({"value": 63}, "an object is not a number"),
    ],
)
def test_what_is_not_a_number_is_refused(value, message):
    with pytest.raises(UnreadableValue, match=message):
        ValueReader.of(LAB).number(value)


@pytest.mark.parametrize("word", sorted(MISSING_WORDS))
def test_the_usual_words_for_no_value_are_not_measured_in_every_kind_of_column(word):
    for spec in COLUMNS:
        for spelling in (word, word.upper(), f" {word.title()} "):
            assert read(spec, spelling) is None, (spec.name, spelling)


def test_a_model_that_learned_a_missing_word_as_a_level_keeps_reading_it_so():
    stored = ColumnSpec(name="smoker", type="categorical", categories=["no", "Unknown", "yes"])
    assert read(stored, " UNKNOWN ") == "Unknown"
    assert read(stored, "n/a") is None  # the blank texts are never levels


@pytest.mark.parametrize(
    ("text", "number"),
    [("1,265.0", 1265.0), ("12,000", 12000.0), ("-1,234", -1234.0), ("1,234,567.25", 1234567.25)],
)
def test_thousands_grouped_by_commas_in_threes_are_numbers(text, number):
    assert read(LAB, text) == number


@pytest.mark.parametrize("text", ["1,5", "1,2345", "12,34", ",123", "1,,000", "1,000,00"])
def test_a_comma_that_groups_no_thousands_is_no_number(text):
    with pytest.raises(UnreadableValue, match="is not a number"):
        ValueReader.of(LAB).number(text)


@pytest.mark.parametrize(
    ("text", "number"),
    [("<2", 2.0), ("< 0.5", 0.5), (">400", 400.0), (">= 1,000", 1000.0), ("<=3", 3.0),
     ("≤0.1", 0.1), ("≥ 7", 7.0), ("<-1", -1.0)],
)  # fmt: skip
def test_a_censored_result_reads_as_its_limit(text, number):
    assert read(LAB, text) == number


@pytest.mark.parametrize("text", ["<abc", "<", "< inf", ">nan", "<<2", "2<"])
def test_a_sign_before_no_number_is_no_censored_result(text):
    with pytest.raises(UnreadableValue, match="is not a number"):
        ValueReader.of(LAB).number(text)


def test_a_censored_text_declared_missing_is_missing_and_its_limit_stays_a_number():
    spec = ColumnSpec(name="troponin", type="numeric", missing_tokens=["<0.01"])
    assert read(spec, "<0.01") is None and read(spec, "0.01") == 0.01 and read(spec, 0.01) == 0.01


def test_booleans_are_one_and_zero_only_in_a_binary_number_column():
    assert [read(FLAG, True), read(FLAG, False), read(FLAG, "1")] == [1.0, 0.0, 1.0]
    with pytest.raises(UnreadableValue, match="false is not a number"):
        read(LAB, False)


@pytest.mark.parametrize("value", ["unknown", "Unknown", " UNKNOWN ", "unKnown\n"])
def test_a_level_missing_token_matches_in_any_case_and_spacing(value):
    assert read(SMOKER, value) is None


@pytest.mark.parametrize(("value", "level"), [(" YES ", "Yes"), ("yes", "Yes"), ("NO", "no")])
def test_levels_match_in_any_case_and_take_the_training_spelling(value, level):
    reader = ValueReader.of(SMOKER)
    assert reader.level(value) == level and not reader.unseen(level)


def test_a_level_never_seen_in_training_is_unseen_and_kept_as_sent():
    reader = ValueReader.of(SMOKER)
    assert reader.level("  former smoker ") == "former smoker"
    assert reader.unseen("former smoker")


def test_numbers_and_booleans_are_levels_in_short_form():
    reader = ValueReader.of(GRADE)
    assert [reader.level(2), reader.level(2.0), reader.level(" 1 ")] == ["2", "2", "1"]
    # The token "0" matches by value, as in a numeric column.
    assert [reader.level(0), reader.level("0.0"), reader.level(-0.0)] == [None, None, None]
    assert ValueReader.of(SMOKER).level(True) == "True"
    with pytest.raises(UnreadableValue, match="a list cannot be a level"):
        reader.level(["1"])


def test_a_missing_token_wins_over_a_training_level():
    spec = ColumnSpec(name="smoker", type="categorical", categories=["no", "Unknown"])
    spec.missing_tokens = ["unknown"]
    assert read(spec, "Unknown") is None


def test_a_column_without_recorded_levels_has_no_unseen_level():
    reader = ValueReader.of(ColumnSpec(name="site", type="categorical"))
    assert reader.level("Ward 7") == "Ward 7" and not reader.unseen("Ward 7")


def test_prepare_reads_the_missing_token_in_any_case_as_not_measured():
    schema = Schema(columns=[SMOKER])
    prepared = schema.prepare(pd.DataFrame({"smoker": ["Unknown", " YES ", "former", None]}))
    assert prepared["smoker"].tolist()[1:3] == ["Yes", "former"]
    assert pd.isna(prepared["smoker"].iloc[0]) and pd.isna(prepared["smoker"].iloc[3])


def test_unseen_level_names_the_row_the_column_and_the_known_levels():
    schema = Schema(columns=[LAB, SMOKER])
    frame = pd.DataFrame({"lab": [1, 2, 3], "smoker": ["no", "former", "ex"]})
    assert schema.unseen_level(frame) == (
        "column 'smoker' row 2: 'former' is not a level seen in training; expected one of "
        "'no', 'Yes' (any case), or an empty cell; 2 rows of 'smoker' have such levels"
    )
    assert schema.unseen_level(frame.assign(smoker=["NO", "unknown", None])) is None


def test_prepare_names_the_row_of_a_boolean_in_a_numeric_column():
    schema = Schema(columns=[LAB, FLAG])
    frame = pd.DataFrame({"lab": [1.0, 2.0], "flag": [True, False]})
    assert schema.prepare(frame)["flag"].tolist() == [1.0, 0.0]
    with pytest.raises(SchemaError, match=r"column 'lab' row 2: false is not a number"):
        schema.prepare(pd.DataFrame({"lab": [1, False], "flag": [0, 1]}, dtype=object))


# --- batch forms read every value as one value is read ---------------------------------

TEXTS = st.sampled_from(
    ["0", " 0 ", "0.0", "63", " 2.3 ", "", "NA", "none", "abc", "unknown", " UNKNOWN ", "YES",
     "no", "former", "1", "2", "2.0", "Infinity", "1_000", "not done", "1,265.0", "1,5",
     "<2", "> 400", "<0", "-", "Unk", "<abc"]
)  # fmt: skip
VALUES = st.one_of(
    TEXTS,
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([[1], {"a": 1}, 10**400]),
)


def one_by_one(read, values: list) -> tuple[list, int | None]:
    """What ``read`` makes of each value, and the position of the first it cannot read."""
    found = []
    for position, value in enumerate(values):
        try:
            found.append(read(value))
        except UnreadableValue:
            return found, position
    return found, None


def batch(read_column, column) -> tuple[list, int | None]:
    try:
        return list(read_column(column)), None
    except UnreadableValue as error:
        return [], error.position


def same_readings(batched: list, single: list) -> bool:
    def key(value):
        return (
            "missing"
            if value is None or (isinstance(value, float) and math.isnan(value))
            else value
        )

    return [key(v) for v in batched] == [key(v) for v in single]


@settings(max_examples=300, deadline=None, database=None)
@given(spec=st.sampled_from(COLUMNS), values=st.lists(VALUES, max_size=8))
def test_a_table_column_reads_each_value_as_one_value_is_read(spec, values):
    reader = ValueReader.of(spec)
    read_one = reader.number if reader.numeric else reader.level
    read_column = reader.numbers if reader.numeric else reader.levels
    single, bad = one_by_one(read_one, values)
    columns = [pd.Series(values, dtype=object)]
    if all(isinstance(value, str) for value in values):
        columns.append(pd.Series(values, dtype="str"))
    if all(type(value) is float or type(value) is int and abs(value) < 2**53 for value in values):
        columns.append(pd.Series(values, dtype=float))
    for column in columns:
        batched, batch_bad = batch(read_column, column)
        assert batch_bad == bad, (column.dtype, values)
        if bad is None:
            assert same_readings(batched, single), (column.dtype, values, batched, single)


@settings(max_examples=300, deadline=None, database=None)
@given(values=st.lists(st.tuples(VALUES, VALUES), max_size=6))
def test_the_scorers_number_batches_read_each_value_as_one_value_is_read(values):
    readers = (ValueReader.of(PIMA_GLUCOSE), ValueReader.of(FLAG))
    flat = [value for pair in values for value in pair]
    single, bad = [], None
    for position, value in enumerate(flat):
        try:
            single.append(readers[position % 2].number(value))
        except UnreadableValue:
            bad = position
            break
    try:
        batched, batch_bad = NumberColumns.of(readers).read(flat).ravel().tolist(), None
    except UnreadableValue as error:
        batched, batch_bad = [], error.position
    assert batch_bad == bad
    if bad is None:
        assert same_readings(batched, single)


@settings(max_examples=100, deadline=None, database=None)
@given(numbers=st.lists(st.one_of(st.none(), st.integers(-2, 2), st.floats(-5, 5)), max_size=8))
def test_plain_json_numbers_take_the_one_numpy_call_and_apply_the_tokens(numbers):
    readers = (ValueReader.of(PIMA_GLUCOSE),)
    batched = NumberColumns.of(readers).read(list(numbers)).ravel().tolist()
    assert same_readings(batched, [readers[0].number(n) for n in numbers])
