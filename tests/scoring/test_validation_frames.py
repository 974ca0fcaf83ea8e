"""A table is checked column by column (``frame_problems``) with exactly the HTTP API's rule
for each record: the same problems, messages and order as ``RecordValidator`` gives for the
records of ``DataFrame.to_dict("records")``, for messy tables of every column type (NaN and
pandas NA, text in numeric columns, booleans, missing tokens in any case, unseen levels,
values out of range, infinity, lists and objects, withheld columns)."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medserve.data import ColumnSpec, Schema
from medserve.data.values import ValueReader
from medserve.scoring.validation import RecordValidator, frame_problems, rules_broken

SCHEMA = Schema(
    columns=[
        ColumnSpec(
            name="lab", type="numeric", minimum=1.0, maximum=19.0, missing_tokens=["0", "not done"]
        ),
        ColumnSpec(name="dose", type="numeric"),  # no range recorded: only readability
        ColumnSpec(name="flag", type="binary", minimum=0.0, maximum=1.0),
        ColumnSpec(
            name="smoker",
            type="categorical",
            categories=["no", "unknown", "yes"],  # a missing word kept as a level
            missing_tokens=["n.k."],
        ),
        ColumnSpec(name="grade", type="categorical", categories=["1", "2", "3"]),
        # Flagged by de-identification's review: refusals show neither levels nor range.
        ColumnSpec(name="site", type="categorical", categories=["north", "south"]),
        ColumnSpec(name="score", type="numeric", minimum=10.0, maximum=12.0),
        ColumnSpec(name="outcome", type="binary", role="target"),
    ],
    deidentification={"review": ["site", "score"]},
)
FEATURES = SCHEMA.feature_names

TEXTS = [
    "", "  ", "NA", "?", "null", "unknown", " Unknown ", "n.k.", "N.K.", "not done", "NOT DONE",
    "0", " 0 ", "-0", "0.0", "1", "2", " 2.0 ", "3", "12", " 12 ", "1,265.0", "1,5", "12,000",
    "<2", ">= 400", "≤0.1", "1_000", "abc", "Infinity", "-inf", "250", "-5", "1e3", "true",
    "False", "no", "YES", " yes ", "martian", "north", "SOUTH", "east", "x" * 60, "٣",
]  # fmt: skip
NUMBERS = [
    0.0, -0.0, 0.5, 1.0, 2.0, 2.5, 3.0, 11.0, 12.0, 19.0, 25.0, 250.0, -5.0, 1e300, -1e-300,
    math.inf, -math.inf, math.nan,
]  # fmt: skip
OBJECTS = [
    None, math.nan, np.nan, pd.NA, pd.NaT, True, False, np.True_, np.bool_(False), 0, 1, 2, 3,
    250, -5, 10**30, 10**400, np.int64(3), np.float32(2.5), np.float64(250.0), Decimal("3.5"),
    Decimal("-0"), Decimal("NaN"), pd.Timestamp("2020-01-02"), np.datetime64("2020-01-03"),
    [1], {"code": 4}, ("a",),
    *NUMBERS, *TEXTS,
]  # fmt: skip

numbers = st.one_of(
    st.sampled_from(NUMBERS), st.floats(allow_nan=True, allow_infinity=True, width=64)
)
integers = st.one_of(st.sampled_from([0, 1, 2, 3, 12, 19, 20, 250, -5]), st.integers(-1000, 1000))
texts = st.one_of(st.sampled_from(TEXTS), st.text(max_size=6))


def column_of(kind: str, draw, n: int) -> pd.Series:
    """``n`` values of one column type, with missing values where the type can hold them."""

    def values(strategy: st.SearchStrategy, *, missing: bool = False) -> list:
        strategy = st.one_of(st.none(), strategy) if missing else strategy
        return draw(st.lists(strategy, min_size=n, max_size=n))

    if kind == "object":
        return pd.Series(values(st.sampled_from(OBJECTS)), dtype=object)
    if kind in ("float64", "float32"):
        with np.errstate(over="ignore"):  # beyond float32's range: infinity
            return pd.Series(values(numbers), dtype="float64").astype(kind)
    if kind == "int64":
        return pd.Series(values(integers), dtype=kind)
    if kind == "uint8":
        return pd.Series(values(st.integers(0, 255)), dtype=kind)
    if kind == "Int64":
        return pd.Series(values(integers, missing=True), dtype=kind)
    if kind == "Float64":
        finite = st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from(NUMBERS[:15])
        return pd.Series(values(finite, missing=True), dtype=kind)
    if kind in ("bool", "boolean"):
        return pd.Series(values(st.booleans(), missing=kind == "boolean"), dtype=kind)
    if kind in ("str", "string", "category"):
        dtype = pd.StringDtype("python") if kind == "string" else kind  # NA, not NaN
        return pd.Series(values(texts, missing=True), dtype=dtype)
    assert kind == "datetime64[ns]"
    days = st.integers(0, 3).map(lambda day: pd.Timestamp(2020, 1, 1 + day))
    return pd.Series(values(days, missing=True), dtype=kind)


KINDS = [
    "object", "float64", "float32", "int64", "uint8", "Int64", "Float64", "bool", "boolean",
    "str", "string", "category", "datetime64[ns]",
]  # fmt: skip


@st.composite
def messy_frames(draw) -> pd.DataFrame:
    n = draw(st.integers(0, 25))
    columns = {name: column_of(draw(st.sampled_from(KINDS)), draw, n) for name in FEATURES}
    frame = pd.DataFrame(columns)
    frame["note"] = "kept, not checked"
    if draw(st.booleans()):  # record = row position, whatever the index says
        frame.index = pd.Index(draw(st.permutations(range(100, 100 + n))))
    order = draw(st.permutations(list(frame.columns)))
    return frame[order]


def row_by_row(validator: RecordValidator, frame: pd.DataFrame):
    """The reference: the per-record validator on each row as a JSON-like record."""
    return validator.problems(frame[validator.feature_names].to_dict("records"))


VALIDATOR = RecordValidator(SCHEMA)


@settings(max_examples=300, deadline=None, database=None)
@given(frame=messy_frames())
def test_column_wise_check_finds_what_the_record_check_finds(frame):
    expected = row_by_row(VALIDATOR, frame)
    found = frame_problems(VALIDATOR, frame)
    assert found == expected
    assert all(type(problem.record) is int for problem in found)
    assert rules_broken(found, len(frame)) == rules_broken(expected, len(frame))


def test_every_kind_of_value_in_one_object_column_is_judged_as_a_record_would_be():
    frame = pd.DataFrame({name: pd.Series(OBJECTS, dtype=object) for name in FEATURES})
    found = frame_problems(VALIDATOR, frame)
    assert found == row_by_row(VALIDATOR, frame)
    assert {problem.rule for problem in found} == {"type", "range", "category"}


def test_problems_come_in_row_then_feature_order_across_columns(heart, heart_schema):
    rows = pd.concat([heart] * 3, ignore_index=True).drop(columns=["num"])
    rows.loc[0, "cp"] = "chest pain"
    rows.loc[1, ["age", "thal"]] = ["old", "odd"]
    rows.loc[4, "chol"] = "9000"
    rows.loc[2000, "age"] = "250"
    validator = RecordValidator(heart_schema)
    found = frame_problems(validator, rows)
    assert [(p.record, p.field, p.rule) for p in found] == [
        (0, "cp", "category"),
        (1, "age", "type"),
        (1, "thal", "category"),
        (4, "chol", "range"),
        (2000, "age", "range"),
    ]
    assert found[1].message == "record 1, field 'age': 'old' is not a number"
    assert found == row_by_row(validator, rows)
    assert rules_broken(found, len(rows))[:2] == ["cp: category", "age: type; thal: category"]


def test_a_withheld_column_is_refused_without_its_levels_or_range():
    frame = pd.DataFrame({name: [None] for name in FEATURES})
    frame["site"], frame["score"] = ["east"], [40.0]
    found = frame_problems(VALIDATOR, frame)
    assert [problem.field for problem in found] == ["site", "score"]
    assert "levels are not shown" in found[0].message and "north" not in found[0].message
    assert found[1].message.endswith("(not shown: de-identification flagged its values)")


def test_a_table_without_a_feature_column_has_no_row_problems():
    frame = pd.DataFrame({name: ["abc"] for name in FEATURES if name != "grade"})
    assert frame_problems(VALIDATOR, frame) == []


@pytest.mark.parametrize("text_columns", [True, False])
def test_a_table_reads_each_distinct_value_once_not_each_row(
    monkeypatch, heart, heart_schema, text_columns
):
    """The cost of a large file is its distinct values (and its numbers out of range), not
    its rows: a thousand copies of a table are read as often as the table itself."""
    rows = pd.concat([heart.head(20)] * 1000, ignore_index=True)
    if not text_columns:
        for name in ("age", "trestbps", "chol", "thalch", "oldpeak"):
            rows[name] = pd.to_numeric(rows[name])
    reads = {"number": 0, "level": 0}
    for method in reads:
        original = getattr(ValueReader, method)

        def counted(self, value, original=original, method=method):
            reads[method] += 1
            return original(self, value)

        monkeypatch.setattr(ValueReader, method, counted)
    validator = RecordValidator(heart_schema)
    assert frame_problems(validator, rows) == []
    distinct = sum(rows.head(20)[name].nunique(dropna=False) for name in validator.feature_names)
    assert 0 < sum(reads.values()) <= distinct
