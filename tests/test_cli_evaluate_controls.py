"""`medserve evaluate --positive/--positive-if` and its side-by-side account, as a user
meets them."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from medserve.cli import app

runner = CliRunner()


@pytest.fixture
def coded(tmp_path, monkeypatch, heart_csv):
    """A home with `heart` trained on 'disease' coded 1/0, and the same rows coded yes/no."""
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    heart = pd.read_csv(heart_csv)
    heart["disease"] = (heart.pop("num") > 0).astype(int)
    heart.to_csv(tmp_path / "dev.csv", index=False)
    heart.assign(disease=heart.disease.map({1: "yes", 0: "no"})).to_csv(
        tmp_path / "site.csv", index=False
    )
    trained = runner.invoke(
        app,
        ["train", str(tmp_path / "dev.csv"), "--target", "disease", "--model", "logistic",
         "--cv", "3", "--name", "heart", "--json"],
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    return tmp_path / "site.csv"


def test_evaluate_names_the_codes_and_the_flags_when_the_outcome_is_coded_otherwise(coded):
    result = runner.invoke(app, ["evaluate", "heart", str(coded)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "'no' (411)" in result.output and "'yes' (509)" in result.output, result.output
    assert "--positive " in result.output and "--positive-if" in result.output, result.output


def test_evaluate_positive_defines_the_event_of_the_external_data(coded):
    result = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["n_events"] == 509
    assert set(payload["comparison"]) == {"development", "external"}
    shown = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes"])
    assert shown.exit_code == 0, shown.output
    assert "development" in shown.stdout and "calibration_intercept" in shown.stdout
