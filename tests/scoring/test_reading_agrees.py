"""Every consumer of raw values reads them alike: schema preparation (the reference
pipeline), the HTTP validator, the compiled scorer's encoding and the explanation summary,
for generated schemas and values (numbers, number text with spaces, censored results and
thousands separators, booleans, None, NaN, blank texts and missing words, missing tokens
and training levels in any case with spaces, unseen levels)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from medserve.data import ColumnSpec, Schema
from medserve.data.values import BLANK_TEXTS, ValueReader
from medserve.errors import SchemaError
from medserve.explain import Explanations, explained
from medserve.explain.summary import as_read
from medserve.modeling import TrainedModel
from medserve.modeling.preprocess import MISSING_LEVEL, build_preprocessor
from medserve.scoring.compiled import FastScorer
from medserve.scoring.encoding import Encoding, encoding_of
from medserve.scoring.validation import validate_records

NOT_MEASURED = "not measured"
SPACES = st.sampled_from(["", " ", "  ", "\t", "\n", " \u00a0"])
LEVEL_POOL = ["no", "Yes", "former", "True", "FALSE", "2", "10", "ex smoker", "Ça va", "b"]
TOKEN_POOL = ["unknown", "n.k.", "0", "declined", "99"]
UNSEEN_POOL = ["martian", "maybe", "2.5", "TRUE-ish", "3", "yes please"]
NUMBER_TOKENS = [[], ["0"], ["-1"], ["0", "not done"], ["99"]]


def fitted_model(schema: Schema) -> TrainedModel:
    """A logistic pipeline fitted on rows covering every level and a missing value of each
    column (so the imputer keeps a missing indicator for every number)."""
    levels = schema.column("smoker").categories or []
    n = max(12, 2 * len(levels) + 4)
    frame = pd.DataFrame(
        {
            "lab": [None if i % 5 == 0 else float(1 + i % 19) for i in range(n)],
            "flag": [None if i % 6 == 1 else float(i % 2) for i in range(n)],
            "smoker": [None if i % 7 == 3 else levels[i % len(levels)] for i in range(n)],
        }
    )
    labels = np.array([i % 2 for i in range(n)])
    pipeline = Pipeline(
        [("preprocess", build_preprocessor(schema)), ("model", LogisticRegression())]
    )
    pipeline.fit(schema.prepare(frame), labels)
    return TrainedModel("logistic", schema, pipeline, threshold=0.5, threshold_rule="fixed")


def any_case(text: str) -> st.SearchStrategy[str]:
    flips = st.lists(st.booleans(), min_size=len(text), max_size=len(text))
    return flips.map(
        lambda up: "".join(c.upper() if u else c.lower() for c, u in zip(text, up, strict=True))
    )


def spaced(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(SPACES, texts, SPACES).map("".join)


@st.composite
def schemas(draw) -> Schema:
    levels = draw(st.lists(st.sampled_from(LEVEL_POOL), min_size=1, max_size=4, unique=True))
    tokens = draw(st.lists(st.sampled_from(TOKEN_POOL), max_size=2, unique=True))
    return Schema(
        columns=[
            ColumnSpec(
                name="lab",
                type="numeric",
                minimum=1.0,
                maximum=19.0,
                missing_tokens=draw(st.sampled_from(NUMBER_TOKENS)),
            ),
            ColumnSpec(name="flag", type="binary"),
            ColumnSpec(name="smoker", type="categorical", categories=levels, missing_tokens=tokens),
        ]
    )


@dataclass(frozen=True)
class Expected:
    """What the rule says of a generated value, where the generator knows it."""

    kind: str  # "missing", "level" (a training level), "number", or "any"
    read_as: object = None


def values_for(spec: ColumnSpec) -> st.SearchStrategy[tuple[object, Expected]]:
    missing = Expected("missing")
    reader = ValueReader.of(spec)
    blanks = st.one_of(st.none(), st.just(math.nan), spaced(st.sampled_from(sorted(BLANK_TEXTS))))
    choices = [
        blanks.map(lambda v: (v, missing)),
        spaced(st.sampled_from(sorted(BLANK_TEXTS)).flatmap(any_case)).map(lambda v: (v, missing)),
        st.booleans().map(lambda v: (v, Expected("any"))),
        st.one_of(
            st.integers(-(10**20), 10**20),
            st.floats(allow_nan=False, allow_infinity=True),
            st.sampled_from(
                [10**400, [1], {"code": 1}, "1_000", "inf", "abc", "1,5", "<abc", "<inf"]
            ),
        ).map(lambda v: (v, Expected("any"))),
        spaced(st.sampled_from(UNSEEN_POOL).flatmap(any_case)).map(lambda v: (v, Expected("any"))),
    ]
    if spec.missing_tokens:
        tokens = st.sampled_from(spec.missing_tokens).flatmap(any_case)
        choices.append(spaced(tokens).map(lambda v: (v, missing)))
    if spec.numeric_encoded:
        numbers = st.one_of(st.integers(-50, 50), st.floats(-1e6, 1e6))

        def number(value: float) -> Expected:
            return missing if value in reader.token_numbers else Expected("number", float(value))

        choices.append(numbers.map(lambda v: (v, number(v))))
        choices.append(
            numbers.flatmap(lambda v: spaced(st.just(repr(v)))).map(lambda t: (t, number(float(t))))
        )
        # Censored results read as their limit; thousands grouped by commas are numbers.
        signs = st.sampled_from(["<", ">", "<=", ">=", "≤", "≥", "< ", "> "])
        choices.append(
            st.tuples(signs, numbers).map(lambda p: (p[0] + repr(p[1]), number(float(p[1]))))
        )
        grouped = st.integers(-(10**9), 10**9).map(lambda v: (f"{v:,}", number(float(v))))
        choices.append(grouped)
    else:
        known = [
            level for level in spec.categories or [] if level.lower() not in reader.token_texts
        ]
        if known:
            levels = st.sampled_from(known).flatmap(
                lambda level: spaced(any_case(level)).map(lambda v: (v, Expected("level", level)))
            )
            choices.append(levels)
    return st.one_of(choices)


GOOD = {"lab": 5.0, "flag": 1.0}


def record_with(schema: Schema, column: str, value: object) -> dict:
    record = {**GOOD, "smoker": (schema.column("smoker").categories or [])[0], column: value}
    return record


def failure(action) -> str | None:
    """The message a consumer refuses the value with, after its 'where' prefix; None if read."""
    try:
        action()
    except SchemaError as error:
        return error.message.split(": ", 1)[1]
    return None


@settings(max_examples=100, deadline=None, database=None)
@given(data=st.data(), schema=schemas(), column=st.sampled_from(["lab", "flag", "smoker"]))
def test_prepare_validation_fast_encoding_and_summary_read_every_value_alike(data, schema, column):
    spec = schema.column(column)
    value, expected = data.draw(values_for(spec))
    record = record_with(schema, column, value)
    model = fitted_model(schema)
    encoding = encoding_of(model)
    assert isinstance(encoding, Encoding)
    reader = ValueReader.of(spec)

    problems = validate_records(schema, [record])
    assert all(problem.field == column for problem in problems), problems
    refused = {problem.rule: problem.message.split(": ", 1)[1] for problem in problems}
    prepare_failure = failure(lambda: schema.prepare(pd.DataFrame([record])))
    fast_failure = failure(lambda: encoding.matrix([record]))

    # A value one consumer cannot read, none can, and all say the same.
    assert refused.get("type") == prepare_failure == fast_failure, (value, refused)
    if prepare_failure is not None:
        assert expected.kind == "any", (value, prepare_failure)
        return

    prepared = schema.prepare(pd.DataFrame([record]))
    reference = model.pipeline.named_steps["preprocess"].transform(prepared)
    np.testing.assert_array_equal(encoding.matrix([record]), reference)

    read = prepared[column].iloc[0]
    summary = as_read(record, [ValueReader.of(s) for s in schema.features])[column]
    if pd.isna(read):  # not measured: by every consumer, and only then
        assert "category" not in refused and "range" not in refused
        assert summary is None
        assert expected.kind in ("missing", "any"), (value, expected)
    else:
        assert summary is not None and expected.kind != "missing", (value, summary)

    if spec.numeric_encoded:
        (block,) = [encoding.numeric]
        fast = block.read([record])[0, block.names.index(column)]
        assert (math.isnan(fast) and pd.isna(read)) or fast == read
        if expected.kind == "number":
            assert read == expected.read_as
        return

    (block,) = [b for b in encoding.levels if b.name == column]
    (fast_column,) = block.columns_of([value])
    if pd.isna(read):
        assert fast_column == block.missing_column
        return
    unseen = read not in (spec.categories or [])
    assert ("category" in refused) == unseen == (fast_column is None), (value, read)
    assert summary == (f"{read} (not seen in training)" if unseen else read)
    assert reader.unseen(read) == unseen
    if not unseen:
        assert fast_column == block.column[read]
    if expected.kind == "level":
        assert read == expected.read_as


SMOKER = ColumnSpec(
    name="smoker", type="categorical", categories=["no", "yes"], missing_tokens=["unknown"]
)


@pytest.fixture(scope="module")
def smoker_model() -> TrainedModel:
    schema = Schema(
        columns=[
            ColumnSpec(name="lab", type="numeric", minimum=1.0, maximum=19.0),
            ColumnSpec(name="flag", type="binary"),
            SMOKER,
        ]
    )
    return fitted_model(schema)


def test_unknown_in_another_case_is_not_measured_on_every_path(smoker_model):
    """The issue's case: a categorical column whose missing token is 'unknown' and the
    record {"smoker": "Unknown"} used to score as an unseen level, answer 422 over HTTP
    and read "not measured" in the explanation. Now all say not measured."""
    schema = smoker_model.schema
    unknown = {**GOOD, "smoker": "Unknown"}
    null = {**GOOD, "smoker": None}
    assert pd.isna(schema.prepare(pd.DataFrame([unknown]))["smoker"].iloc[0])
    assert validate_records(schema, [unknown]) == []
    scorer = FastScorer.from_model(smoker_model)
    matrix = scorer.matrix([unknown, null])
    np.testing.assert_array_equal(matrix[0], matrix[1])
    (block,) = scorer.encoding.levels
    assert block.column[MISSING_LEVEL] == block.missing_column
    assert matrix[0, block.missing_column] == 1.0
    np.testing.assert_allclose(
        scorer.risk([unknown]), smoker_model.predict_risk(pd.DataFrame([unknown])), atol=1e-12
    )
    explanations = Explanations(
        space="log-odds",
        method="test",
        columns=("smoker", "lab"),
        base_value=np.array([0.0]),
        contributions=np.array([[0.4, 0.0]]),
    )
    (record,) = explained(explanations, [0.6], ["high"], [unknown], schema)
    assert record["summary"] == f"Risk 0.60 (high). Raised most by: smoker = {NOT_MEASURED}."


def test_summary_shows_a_level_in_its_training_spelling_and_marks_an_unseen_one(smoker_model):
    readers = [ValueReader.of(spec) for spec in smoker_model.schema.features]
    assert as_read({**GOOD, "smoker": " YES "}, readers)["smoker"] == "yes"
    assert as_read({**GOOD, "smoker": "ex"}, readers)["smoker"] == "ex (not seen in training)"
    assert as_read({**GOOD, "lab": "NA"}, readers)["lab"] is None
