"""The fast path scores JSON records exactly as the reference pipeline does, and request
validation names the record, the field and the rule of every problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from medserve.core.risk import risk_logit
from medserve.data import ColumnSpec, Schema, infer_schema, read_table
from medserve.errors import SchemaError
from medserve.modeling import TrainedModel, TrainOptions, make_pipeline, train_model
from medserve.modeling.preprocess import MISSING_LEVEL, encoded_sources
from medserve.modeling.train import labelled_rows
from medserve.scoring.compiled import FastScorer
from medserve.scoring.validation import RecordProblem, plausible_range, validate_records

TARGETS = {"heart": ("num", ">0"), "pima": ("Outcome", None)}

# What JSON clients send beyond the table's own rows: other spellings of the same level,
# JSON booleans, text numbers, missing tokens, a level never seen in training, nulls.
HEART_EDGE_CASES = [
    {"cp": "ASYMPTOMATIC", "fbs": True, "exang": False, "sex": " male ", "restecg": "Normal"},
    {"cp": "chest pain of unknown kind", "thal": "unheard-of defect"},
    {"chol": "0", "trestbps": 0},
    {"chol": 0.0, "fbs": "true", "exang": "FALSE"},
    {"age": "63", "oldpeak": " 2.3 ", "ca": "", "thalch": None},
]
PIMA_EDGE_CASES = [
    {"Insulin": "0", "Glucose": 0.0, "BMI": None},
    {"Age": "50", "SkinThickness": " 0 ", "Pregnancies": 0},
]
EDGE_CASES = {"heart": HEART_EDGE_CASES, "pima": PIMA_EDGE_CASES}


def json_records(frame: pd.DataFrame, schema: Schema) -> list[dict]:
    """Table rows as a JSON client sends them: numbers as numbers, NaN as null."""
    features = frame[schema.feature_names].copy()
    for spec in schema.features:
        if spec.numeric_encoded:
            features[spec.name] = pd.to_numeric(features[spec.name])
    features = features.astype(object).where(features.notna(), None)
    return features.to_dict(orient="records")


def with_edge_cases(row: dict, edge_cases: list[dict]) -> list[dict]:
    """Variants of one row, a record of nulls, and last a record lacking one field."""
    variants = [{**row, **changes} for changes in edge_cases]
    one_field_absent = {k: v for k, v in row.items() if k != sorted(row)[-1]}
    return [*variants, dict.fromkeys(row), one_field_absent]


@dataclass
class Case:
    """A model trained on a bundled table, with that table's rows as JSON records."""

    model: TrainedModel
    rows: list[dict]
    labels: np.ndarray
    edge_cases: list[dict]

    @property
    def records(self) -> list[dict]:
        return [*self.rows, *self.edge_cases]


@pytest.fixture(scope="module")
def tables(heart_csv, pima_csv) -> dict[str, pd.DataFrame]:
    return {"heart": read_table(heart_csv), "pima": read_table(pima_csv)}


@pytest.fixture(scope="module")
def schemas(tables) -> dict[str, Schema]:
    return {
        name: infer_schema(tables[name], target=target, positive_if=positive_if)
        for name, (target, positive_if) in TARGETS.items()
    }


@pytest.fixture(scope="module")
def heart_schema(schemas) -> Schema:
    return schemas["heart"]


@pytest.fixture(scope="module")
def trained(tables, schemas) -> Callable[[str, str], TrainedModel]:
    """Train each (dataset, family) once for the whole module."""
    models: dict[tuple[str, str], TrainedModel] = {}

    def model_for(dataset: str, family: str) -> TrainedModel:
        if (dataset, family) not in models:
            options = TrainOptions(family=family, cv=2)
            models[dataset, family] = train_model(tables[dataset], schemas[dataset], options).model
        return models[dataset, family]

    return model_for


@pytest.fixture(
    scope="module",
    params=[("heart", "logistic"), ("heart", "lightgbm"), ("heart", "mlp"), ("pima", "logistic")],
    ids=lambda param: "-".join(param),
)
def case(request, trained, tables, schemas) -> Case:
    dataset, family = request.param
    labelled, labels, _ = labelled_rows(tables[dataset], schemas[dataset])
    rows = json_records(labelled, schemas[dataset])
    edge_cases = with_edge_cases(rows[0], EDGE_CASES[dataset])
    return Case(trained(dataset, family), rows, labels, edge_cases)


def reference_matrix(model: TrainedModel, records: list[dict]) -> np.ndarray:
    prepared = model.schema.prepare(pd.DataFrame(records))
    return model.pipeline.named_steps["preprocess"].transform(prepared)


def test_fast_matrix_is_the_fitted_preprocessors_output(case):
    model, records = case.model, case.records
    scorer = FastScorer.from_model(model)
    assert scorer.exact_fast_path
    # Bit for bit (NaN where LightGBM keeps it): the same arithmetic in the same order.
    np.testing.assert_array_equal(scorer.matrix(records), reference_matrix(model, records))


def test_fast_risk_equals_the_reference_on_every_row(case):
    model, records = case.model, case.records
    fast = FastScorer.from_model(model).risk(records)
    reference = model.predict_risk(pd.DataFrame(records))
    assert fast.shape == (len(records),)
    if model.family == "mlp":
        # The float32 network gets bitwise the same float32 input as in the reference,
        # in a batch of the same shape, so even its rounding matches.
        np.testing.assert_array_equal(fast, reference)
    else:
        np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_one_record_at_a_time_matches_the_reference(case):
    scorer = FastScorer.from_model(case.model)
    # Not the last edge case: a one-row frame lacking a field is refused by the reference.
    for record in [*case.rows[:20], *case.edge_cases[:-1]]:
        fast = scorer.risk([record])
        reference = case.model.predict_risk(pd.DataFrame([record]))
        np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_recalibrated_risk_equals_the_reference(case):
    # Platt scaling fitted on the model's own risks: a calibrator as training would make.
    raw = case.model.predict_risk(pd.DataFrame(case.rows))
    calibrator = LogisticRegression().fit(risk_logit(raw).reshape(-1, 1), case.labels)
    model = replace(case.model, calibrator=calibrator)
    scorer = FastScorer.from_model(model)
    fast = scorer.risk(case.records)
    np.testing.assert_allclose(fast, model.predict_risk(pd.DataFrame(case.records)), atol=1e-12)
    assert np.abs(fast - scorer.raw_risk(scorer.matrix(case.records))).max() > 1e-3
    one = case.records[:1]
    np.testing.assert_allclose(scorer.risk(one), model.predict_risk(pd.DataFrame(one)), atol=1e-12)


@pytest.fixture(scope="module")
def heart_logistic(trained) -> TrainedModel:
    return trained("heart", "logistic")


def level_columns(model: TrainedModel, name: str) -> np.ndarray:
    sources = encoded_sources(model.pipeline.named_steps["preprocess"])
    return np.flatnonzero(np.array(sources) == name)


def test_unseen_level_encodes_as_no_level_and_missing_as_the_missing_level(
    heart_logistic, tables, heart_schema
):
    record = json_records(tables["heart"], heart_schema)[0]
    unseen = {**record, "cp": "chest pain of unknown kind"}
    missing = {**record, "cp": None}
    shouting = {**record, "cp": "ASYMPTOMATIC"}
    matrix = FastScorer.from_model(heart_logistic).matrix([unseen, missing, shouting])
    cp = matrix[:, level_columns(heart_logistic, "cp")]
    levels = [*heart_schema.column("cp").categories, MISSING_LEVEL]
    assert cp[0].tolist() == [0.0] * len(levels)
    assert cp[1].tolist() == [float(level == MISSING_LEVEL) for level in levels]
    assert cp[2].tolist() == [float(level == "asymptomatic") for level in levels]


def test_scorer_refuses_a_value_it_cannot_read(heart_logistic, tables, heart_schema):
    record = json_records(tables["heart"], heart_schema)[0]
    scorer = FastScorer.from_model(heart_logistic)
    with pytest.raises(SchemaError, match=r"record 1, field 'age': 'abc' is not a number"):
        scorer.risk([record, {**record, "age": "abc"}])
    with pytest.raises(SchemaError, match=r"record 0, field 'cp': a list cannot be a level"):
        scorer.risk([{**record, "cp": ["asymptomatic"]}])


def test_no_records_score_to_no_risks(heart_logistic):
    assert FastScorer.from_model(heart_logistic).risk([]).shape == (0,)


def test_unrecognised_family_falls_back_to_the_reference_pipeline(
    heart_logistic, tables, heart_schema
):
    records = json_records(tables["heart"], heart_schema)[:50]
    unknown = replace(heart_logistic, family="experimental")
    scorer = FastScorer.from_model(unknown)
    assert not scorer.exact_fast_path
    np.testing.assert_array_equal(scorer.risk(records), unknown.predict_risk(pd.DataFrame(records)))
    with pytest.raises(ValueError, match="no fast encoding"):
        scorer.matrix(records)


@pytest.mark.filterwarnings("ignore:Missing values detected:UserWarning")
def test_ebm_scores_through_the_reference_pipeline(tables, heart_schema):
    frame = tables["heart"]
    # A small EBM (one bag, no interactions) keeps the test quick; the route is the same.
    pipeline = make_pipeline("ebm", heart_schema).set_params(
        model__outer_bags=1, model__interactions=0, model__max_rounds=100
    )
    rows, labels, _ = labelled_rows(frame, heart_schema)
    pipeline.fit(heart_schema.prepare(rows), labels)
    model = TrainedModel("ebm", heart_schema, pipeline, threshold=0.5, threshold_rule="fixed")
    rows = json_records(frame, heart_schema)
    records = [*rows[:30], *with_edge_cases(rows[0], HEART_EDGE_CASES)]
    scorer = FastScorer.from_model(model)
    assert not scorer.exact_fast_path
    np.testing.assert_array_equal(scorer.risk(records), model.predict_risk(pd.DataFrame(records)))


# --- validation -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def heart_record(tables, heart_schema) -> dict:
    return json_records(tables["heart"], heart_schema)[0]


def rules(problems: list[RecordProblem]) -> list[tuple[int, str, str]]:
    return [(p.record, p.field, p.rule) for p in problems]


def test_every_row_of_the_training_data_is_valid(tables, schemas):
    for name in TARGETS:
        records = json_records(tables[name], schemas[name])
        assert validate_records(schemas[name], records) == []


def test_plausible_range_widens_the_training_range_by_half_its_span(heart_schema, schemas):
    # The training range is stored rounded outward (ages 28-77 as 25-80), then widened.
    assert plausible_range(heart_schema.column("age")) == (0.0, 107.5)
    # Never below zero for a quantity never negative in training; negatives stay possible.
    assert plausible_range(heart_schema.column("chol")) == (0.0, 950.0)
    assert plausible_range(heart_schema.column("oldpeak")) == pytest.approx((-7.75, 11.25))
    assert plausible_range(schemas["pima"].column("Pregnancies")) == (0.0, 30.0)
    assert plausible_range(heart_schema.column("cp")) is None


def test_absent_field_is_required(heart_schema, heart_record):
    record = {k: v for k, v in heart_record.items() if k != "age"}
    problems = validate_records(heart_schema, [heart_record, heart_record, record])
    assert rules(problems) == [(2, "age", "required")]
    assert problems[0].message.startswith("record 2, field 'age': missing")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("age", "abc", "record 0, field 'age': 'abc' is not a number"),
        ("age", True, "record 0, field 'age': true is not a number"),
        ("age", {"value": 63}, "record 0, field 'age': an object is not a number"),
        ("age", [63], "record 0, field 'age': a list is not a number"),
        ("age", "1_000", "record 0, field 'age': '1_000' is not a number"),
        ("chol", "Infinity", "record 0, field 'chol': 'Infinity' is not a finite number"),
        ("cp", ["asymptomatic"], "record 0, field 'cp': a list cannot be a level"),
        ("cp", {"code": 4}, "record 0, field 'cp': an object cannot be a level"),
    ],
)
def test_value_of_the_wrong_kind_breaks_the_type_rule(
    heart_schema, heart_record, field, value, message
):
    problems = validate_records(heart_schema, [{**heart_record, field: value}])
    assert rules(problems) == [(0, field, "type")]
    assert problems[0].message == message


def test_value_far_outside_training_breaks_the_range_rule(heart_schema, heart_record):
    records = [{**heart_record, "age": 250}, {**heart_record, "chol": -5, "oldpeak": -5}]
    problems = validate_records(heart_schema, records)
    assert rules(problems) == [(0, "age", "range"), (1, "chol", "range")]
    assert problems[0].message == (
        "record 0, field 'age': 250 is outside the plausible range 0 to 107.5 seen in "
        "training (25 to 80, rounded)"
    )


def test_missing_tokens_are_missing_not_out_of_range(heart_schema, heart_record):
    records = [{**heart_record, "chol": 0}, {**heart_record, "chol": "0", "trestbps": 0.0}]
    assert validate_records(heart_schema, records) == []


def test_unseen_level_breaks_the_category_rule(heart_schema, heart_record):
    problems = validate_records(heart_schema, [{**heart_record, "cp": "chest pain"}])
    assert rules(problems) == [(0, "cp", "category")]
    assert problems[0].message.startswith(
        "record 0, field 'cp': 'chest pain' is not a level seen in training; expected one of "
        "'asymptomatic', 'atypical angina'"
    )


def test_levels_match_in_any_case_and_as_json_booleans(heart_schema, heart_record):
    record = {
        **heart_record,
        "cp": "ASYMPTOMATIC",
        "sex": " male ",
        "fbs": True,
        "exang": "false",
        "restecg": "Normal",
    }
    assert validate_records(heart_schema, [record]) == []


def test_numeric_levels_are_canonicalised_like_the_schema_does():
    schema = Schema(
        columns=[
            ColumnSpec(name="grade", type="categorical", categories=["1", "2", "3"]),
            ColumnSpec(name="smoker", type="binary", categories=["False", "True"]),
        ]
    )
    valid = [{"grade": 2}, {"grade": 2.0}, {"grade": " 3 "}, {"grade": "1"}]
    assert validate_records(schema, [{**r, "smoker": False} for r in valid]) == []
    problems = validate_records(schema, [{"grade": 2.5, "smoker": "yes"}])
    assert rules(problems) == [(0, "grade", "category"), (0, "smoker", "category")]


def test_nulls_numeric_strings_and_extra_keys_pass(heart_schema, heart_record):
    all_null = dict.fromkeys(heart_schema.feature_names)
    text_numbers = {**heart_record, "age": "63", "oldpeak": " 2.3 ", "ca": ""}
    extra = {**heart_record, "patient_note": "seen in clinic", "num": 2}
    assert validate_records(heart_schema, [all_null, text_numbers, extra]) == []


def test_problems_come_in_record_then_feature_order(heart_schema, heart_record):
    records = [
        heart_record,
        {**heart_record, "thal": "odd", "age": "old"},
        "not a record",
        {k: v for k, v in heart_record.items() if k != "sex"} | {"chol": 9000},
    ]
    problems = validate_records(heart_schema, records)
    assert rules(problems) == [
        (1, "age", "type"),
        (1, "thal", "category"),
        (2, "", "type"),
        (3, "sex", "required"),
        (3, "chol", "range"),
    ]
