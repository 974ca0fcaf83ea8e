import numpy as np
import pandas as pd
import pytest

from medserve.data import infer_schema, read_schema_file, read_table
from medserve.errors import ConfigError, DataError, SchemaError


def test_heart_types_and_roles_are_inferred(heart_schema):
    kinds = {c.name: (c.type, c.role) for c in heart_schema.columns}
    assert kinds["id"] == ("categorical", "id")
    assert kinds["age"] == ("numeric", "feature")
    assert kinds["sex"] == ("binary", "feature")
    assert kinds["cp"] == ("categorical", "feature")
    assert kinds["num"][1] == "target"
    assert "id" not in heart_schema.feature_names
    assert any("identifier" in n for n in heart_schema.notices)


def test_cholesterol_zero_is_detected_as_unmeasured(heart_schema):
    assert heart_schema.column("chol").missing_tokens == ["0"]
    # The 172 zeros count as not measured (30 cells are blank besides).
    assert heart_schema.column("chol").missing_fraction == pytest.approx((172 + 30) / 920)
    # ST depression of 0 is a real reading (values go below zero): not a missing token.
    assert heart_schema.column("oldpeak").missing_tokens == []


def test_pima_zeros_are_unmeasured_but_pregnancies_zero_is_real(pima_csv):
    schema = infer_schema(read_table(pima_csv), target="Outcome")
    tokens = {c.name: c.missing_tokens for c in schema.columns}
    for column in ("Glucose", "BloodPressure", "SkinThickness", "Insulin", "BMI"):
        assert tokens[column] == ["0"]
    assert tokens["Pregnancies"] == []
    assert schema.outcome.positive == "1"


def test_declared_missing_tokens_win_over_detection(heart):
    schema = infer_schema(heart, target="num", positive_if=">0", missing_tokens={"chol": []})
    assert schema.column("chol").missing_tokens == []
    assert schema.column("chol").minimum == 0.0


def test_prepare_types_values_and_applies_tokens(heart, heart_schema):
    prepared = heart_schema.prepare(heart)
    assert list(prepared.columns) == heart_schema.feature_names
    assert prepared["age"].dtype == float
    assert (
        prepared["chol"].isna().sum() == (heart["chol"] == "0").sum() + heart["chol"].isna().sum()
    )


def test_prepare_names_column_and_row_of_text_in_a_number(heart, heart_schema):
    bad = heart.head(20).copy()
    bad.loc[bad.index[16], "age"] = "abc"
    with pytest.raises(SchemaError, match=r"column 'age' row 17: 'abc' is not a number"):
        heart_schema.prepare(bad)


def test_prepare_names_missing_columns(heart, heart_schema):
    with pytest.raises(SchemaError, match="missing column.*'thalch'"):
        heart_schema.prepare(heart.drop(columns=["thalch"]))


def test_unseen_category_passes_through_and_case_is_forgiven(heart, heart_schema):
    rows = heart.head(2).copy()
    rows["cp"] = ["martian angina", "ASYMPTOMATIC"]
    prepared = heart_schema.prepare(rows)
    assert prepared["cp"].tolist() == ["martian angina", "asymptomatic"]


def test_bool_parquet_levels_match_csv_text_levels(heart, heart_schema):
    rows = heart.head(3).copy()
    rows["fbs"] = [True, False, None]
    assert heart_schema.prepare(rows)["fbs"].tolist()[:2] == ["TRUE", "FALSE"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": "nope"}, "target column 'nope' not found"),
        ({"target": "num"}, r"has 5 values \(0, 1, 2, 3, 4\); define the event"),
        (
            {"target": "num", "positive": "7"},
            r"the event value '7' \(the 'positive' option\) does not occur",
        ),
        ({"target": "num", "positive_if": "big"}, "is not a rule"),
        ({"target": "num", "positive_if": ">9"}, "only one class"),
        ({"target": "sex"}, "say which one is the event with the 'positive' option"),
    ],
)
def test_outcome_definition_errors(heart, kwargs, message):
    with pytest.raises((DataError, ConfigError), match=message):
        infer_schema(heart, **kwargs)


def test_positive_value_defines_event(heart):
    schema = infer_schema(heart, target="sex", positive="Female")
    labels = schema.outcome.binarise(heart["sex"])
    assert labels.sum() == (heart["sex"] == "Female").sum()


def test_entirely_missing_feature_is_an_error_that_says_how_to_fix(heart):
    frame = heart.assign(empty=np.nan)
    with pytest.raises(DataError, match="'empty' are missing in every row.*the 'ignore' option"):
        infer_schema(frame, target="num", positive_if=">0")
    schema = infer_schema(frame, target="num", positive_if=">0", ignore=["empty"])
    assert "empty" not in schema.feature_names


def test_text_and_dates_are_kept_out_of_features():
    n = 60
    frame = pd.DataFrame(
        {
            "admitted": pd.date_range("2020-01-01", periods=n).strftime("%Y-%m-%d"),
            "note": [f"patient {i} reports chest pain since monday morning" for i in range(n)],
            "age": np.arange(n) % 40 + 30,
            "outcome": np.arange(n) % 2,
        }
    )
    schema = infer_schema(frame, target="outcome")
    roles = {c.name: (c.type, c.role) for c in schema.columns}
    assert roles["admitted"] == ("datetime", "time")
    assert roles["note"] == ("text", "text")
    assert schema.feature_names == ["age"]


def test_schema_file_overrides_type_and_role(heart, tmp_path):
    path = tmp_path / "schema.yaml"
    path.write_text("columns:\n  dataset: {role: group}\n  ca: {type: categorical}\n")
    schema = infer_schema(heart, target="num", positive_if=">0", overrides=read_schema_file(path))
    assert schema.column("dataset").role == "group"
    assert schema.column("ca").type == "categorical"
    assert schema.column("ca").categories == ["0", "1", "2", "3"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("columns:\n  nope: {role: id}\n", "not in the data: nope"),
        ("columns:\n  age: {colour: red}\n", "unknown key"),
        ("columns:\n  age: {type: fancy}\n", "column 'age': type"),
        ("columns: [1, 2\n", "does not parse"),
        ("weird: 1\n", "unknown key"),
    ],
)
def test_bad_schema_files_are_explained(heart, tmp_path, content, message):
    path = tmp_path / "schema.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        infer_schema(heart, target="num", positive_if=">0", overrides=read_schema_file(path))
