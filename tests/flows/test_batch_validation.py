"""Batch scoring checks each row by the HTTP API's rule: `medserve predict` names what a row
breaks in a `validation` column and counts it in a notice (or refuses the file with
`--strict`), `evaluate` counts it, and training names a bad value by the file's row."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from medserve.cli import app
from medserve.config import Settings
from medserve.errors import ConfigError, SchemaError
from medserve.flows import TrainRequest, evaluate_stored, predict_file, train_and_register
from medserve.flows.common import load_model
from medserve.scoring.validation import validate_records
from medserve.storage import Registry

runner = CliRunner()


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory, heart_csv):
    home = tmp_path_factory.mktemp("batch") / "home"
    request = TrainRequest(
        data=heart_csv, target="num", positive_if=">0", family="logistic", cv=3, name="heart"
    )
    train_and_register(Settings(home=home), request)
    return home


@pytest.fixture
def settings(trained_home):
    return Settings(home=trained_home)


@pytest.fixture
def rows(heart_csv) -> pd.DataFrame:
    """Ten patients: the 3rd aged 250, the 6th aged 300 with chest pain 'crushing'."""
    rows = pd.read_csv(heart_csv).head(10).drop(columns=["num"])
    rows.loc[2, "age"] = 250
    rows.loc[5, ["age", "cp"]] = [300, "crushing"]
    return rows


def test_predict_names_what_each_row_breaks_and_counts_it_in_a_notice(settings, rows, tmp_path):
    rows = rows.assign(cp=rows.cp.replace("crushing", "asymptomatic"))
    outcome = predict_file(settings, "heart", rows, tmp_path / "out.csv")
    scored = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert scored.validation.tolist() == ["", "", "age: range", "", "", "age: range"] + [""] * 4
    assert (outcome.n_rows, outcome.n_flagged) == (10, 2)
    (notice,) = outcome.notices
    assert "2 of 10 rows hold values the HTTP API refuses" in notice
    assert "'age' range (outside the plausible range) in 2 rows" in notice
    assert "250" not in notice and "300" not in notice  # counts, never patients' values
    assert scored.risk.between(0, 1).all()


def test_the_validation_column_follows_the_http_rule(settings, rows, tmp_path):
    predict_file(settings, "heart", rows, tmp_path / "out.csv", score_unseen_levels=True)
    scored = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert scored.validation[5] == "age: range; cp: category"
    with Registry(settings) as registry:  # the stored model, as the server loads it
        _, model = load_model(registry, "heart")
    http = validate_records(model.schema, json.loads(rows.to_json(orient="records")))
    assert {(p.record, p.field, p.rule) for p in http} == {
        (2, "age", "range"),
        (5, "age", "range"),
        (5, "cp", "category"),
    }


def test_an_unseen_level_still_stops_the_file_unless_asked(settings, rows, tmp_path):
    with pytest.raises(SchemaError, match="column 'cp' row 6: 'crushing' is not a level"):
        predict_file(settings, "heart", rows, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ConfigError, match="unseen levels included"):
        predict_file(
            settings, "heart", rows, tmp_path / "out.csv", strict=True, score_unseen_levels=True
        )


def test_strict_refuses_the_file_in_one_line_and_writes_nothing(trained_home, rows, tmp_path):
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(
        app,
        ["predict", "heart", str(tmp_path / "new.csv"), "-o", str(tmp_path / "out.csv"),
         "--strict"],
        env={"MEDSERVE_HOME": str(trained_home), "COLUMNS": "10000"},
    )  # fmt: skip
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert "column 'age' row 3: 250 is outside the plausible range" in line
    assert "2 rows hold such values" in line and "--strict" in line
    assert not (tmp_path / "out.csv").exists()


def test_predict_json_carries_the_notice(trained_home, rows, tmp_path):
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = runner.invoke(
        app,
        ["predict", "heart", str(tmp_path / "new.csv"), "-o", str(tmp_path / "out.csv"),
         "--score-unseen-levels", "--json"],
        env={"MEDSERVE_HOME": str(trained_home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["flagged_rows"] == 2
    assert "'cp' category (a level never seen in training) in 1 row" in payload["notices"][0]


def test_evaluate_counts_values_the_http_api_refuses(settings, heart_csv, tmp_path):
    labelled = pd.read_csv(heart_csv).head(120)
    labelled.loc[[4, 9], "age"] = [250, 400]
    outcome = evaluate_stored(settings, "heart", labelled, source_name="site B")
    (said,) = [n for n in outcome.notices if "HTTP API refuses" in n]
    assert "2 of 120 rows" in said and "'age' range" in said
    assert said in json.loads(open(outcome.report_path).read())["notices"]


def test_a_bad_training_value_is_named_by_the_row_of_the_table(tmp_path, heart_csv):
    heart = pd.read_csv(heart_csv)
    heart["age"] = heart["age"].astype(object)
    heart.loc[3, "age"] = True  # the 4th data row (line 5 of a file with a header)
    request = TrainRequest(
        data=heart, target="num", positive_if=">0", family="logistic", cv=2, name="x"
    )
    with pytest.raises(SchemaError) as raised:
        train_and_register(Settings(home=tmp_path / "home"), request)
    assert raised.value.message.startswith("column 'age' row 4: true is not a number")
