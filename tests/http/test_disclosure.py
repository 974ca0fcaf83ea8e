"""What a served model publishes of its training data: never a value of a column that
de-identification kept but flagged for review, never a raw extreme, never a long list of
levels.

The served model is the heart model, registered as `train --deid` would have stored it
had de-identification kept and flagged two of its features (``chol``, a number, and
``thal``, levels): the publishing rule is what is under test, whatever flagged them."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from typer.testing import CliRunner

from medserve.cli import app as cli_app
from medserve.config import Settings
from medserve.data.disclosure import MAX_PUBLISHED_LEVELS, widened_bounds
from medserve.flows import TrainRequest, train_and_register
from medserve.http.app import create_app
from support.servers import copy_models


@pytest.mark.parametrize(
    ("low", "high", "shown"),
    [
        (28.0, 77.0, (25.0, 80.0)),
        (85.0, 603.0, (50.0, 650.0)),
        (-2.6, 6.2, (-3.0, 6.5)),
        (123456789.0, 987654321.0, (100000000.0, 1000000000.0)),
        (-3.7, 2.1, (-4.0, 2.5)),
        (5.0, 5.0, (5.0, 5.0)),
    ],
)
def test_ranges_are_shown_rounded_outward_and_rounding_twice_changes_nothing(low, high, shown):
    assert widened_bounds(low, high) == shown
    assert widened_bounds(*shown) == shown


FLAGGED = ["chol", "thal"]


@pytest.fixture
def flagged_service(tmp_path, seed_home, serve_app):
    settings = Settings(home=tmp_path / "home")

    def flag(model) -> None:  # the model carries its schema, as training stores it
        model.schema.deidentification = {"review": FLAGGED}

    copy_models(seed_home, settings, names={"heart"}, change=flag)
    return serve_app(create_app(settings), settings)


@pytest.fixture(scope="module")
def planted(heart_csv) -> set[str]:
    """What training saw of the flagged columns: their levels and their extremes."""
    frame = pd.read_csv(heart_csv)
    chol = frame["chol"].dropna()
    return {"fixed defect", "reversable defect", f"{chol.max():g}", "603"}


def published(planted: set[str], body: str) -> list[str]:
    """The planted values found in ``body``; a number as a number (603 or 603.0), not as
    the digits of another one (0.16035, a metric; 6031) nor of a hex digest (a603f…)."""

    def found(value: str) -> bool:
        if not value.replace(".", "").isdigit():
            return value in body
        return re.search(rf"(?<![\w.]){re.escape(value)}(?:\.0+)?(?![\w.])", body) is not None

    return [value for value in planted if found(value)]


def test_the_model_routes_publish_nothing_of_a_flagged_column(flagged_service, planted):
    with flagged_service.client("predictor") as client:
        shown = client.get("/v1/models/heart").json()
        version = client.get("/v1/models/heart/versions/1").text
    columns = {c["name"]: c for c in shown["columns"]}
    assert set(FLAGGED) <= set(columns)  # still features of the model
    assert columns["chol"]["training_range"] is None
    assert columns["chol"]["accepted_range"] is None
    assert columns["thal"]["categories"] is None
    body = json.dumps(shown) + version
    assert published(planted, body) == []
    # Ages are shown, rounded outward: the youngest and oldest patients are not.
    assert columns["age"]["training_range"] == [25.0, 80.0]


def test_a_refused_record_names_no_level_nor_range_of_a_flagged_column(
    flagged_service, planted, heart_records
):
    record = {**heart_records[0], "chol": 90_000, "thal": "bed 1-AB"}
    with flagged_service.client("predictor") as client:
        response = client.post("/v1/models/heart/predict", json={"records": [record]})
    assert response.status_code == 422
    assert published(planted, response.text) == [], response.text
    assert "'chol'" in response.text and "'thal'" in response.text
    assert "not shown" in response.text


def test_models_show_publishes_nothing_of_a_flagged_column(flagged_service, planted, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(flagged_service.settings.home))
    runner = CliRunner()
    as_json = runner.invoke(cli_app, ["models", "show", "heart", "--json"])
    as_table = runner.invoke(cli_app, ["models", "show", "heart"], env={"COLUMNS": "200"})
    assert as_json.exit_code == 0 and as_table.exit_code == 0, as_json.output
    for output in (as_json.stdout, as_table.stdout):
        assert published(planted, output) == []
    ages = next(c for c in json.loads(as_json.stdout)["schema"]["columns"] if c["name"] == "age")
    assert (ages["minimum"], ages["maximum"]) == (25.0, 80.0)


def test_a_string_column_with_many_levels_is_not_a_feature_unless_declared(tmp_path, heart_csv):
    frame = pd.read_csv(heart_csv)
    frame["guardian"] = [f"Guardian {i % 120:03d}" for i in range(len(frame))]
    path = tmp_path / "heart_guardians.csv"
    frame.to_csv(path, index=False)
    outcome = train_and_register(
        Settings(home=tmp_path / "home"),
        TrainRequest(
            data=path, name="heart", target="num", positive_if=">0", family="logistic", cv=3
        ),
    )
    guardian = outcome.schema.column("guardian")
    assert guardian.role != "feature" and guardian.categories is None
    assert any("'guardian' has 120 different values" in notice for notice in outcome.schema.notices)
    assert MAX_PUBLISHED_LEVELS < 120


def test_a_missing_token_that_is_free_text_or_a_code_is_not_shown():
    from medserve.data.disclosure import shown_tokens
    from medserve.data.schema import ColumnSpec

    spec = ColumnSpec(
        name="chol",
        type="numeric",
        missing_tokens=[
            "0",
            "unknown",
            "haemolysed",
            "pt John Smith refused the draw",
            "MRN 44172",
        ],
    )
    assert shown_tokens(spec, frozenset()) == ["0", "unknown", "haemolysed"]
    assert shown_tokens(spec, frozenset({"chol"})) == []
