"""`medserve train --validation/--time-limit` as a user meets them: what the figures were
measured on, the optimism of the bootstrap, and clear errors that register nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from medserve.cli import app
from medserve.cli._common import EXIT_CODES
from medserve.config import Settings
from medserve.errors import ConfigError, DataError
from medserve.storage import Registry
from support.reports import lists_in

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def train(csv, *options: str):
    args = ["train", str(csv), "--target", "Outcome", "--cv", "3", "--name", "pima", *options]
    return runner.invoke(app, args)


def registered(home) -> list[str]:
    if not (home / "medserve.db").exists():
        return []
    with Registry(Settings(home=home)) as registry:
        return [v.ref for v in registry.list()]


def test_the_default_measures_out_of_fold_and_fits_the_final_model_on_every_row(home, pima_csv):
    result = train(pima_csv, "--model", "logistic", "--json")
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["validation"]["method"] == "cv" and trained["n_test"] == 0
    assert trained["validation"]["final_model"] == "all 768 rows"
    assert "out-of-fold predictions of 3-fold cross-validation (768 rows)" in (
        trained["validation"]["measured_on"]
    )
    # Aggregates only, though every row is measured: no list as long as the rows.
    report = json.loads(Path(trained["report"]).read_text())
    assert report["evaluated_rows"]["n"] == 768
    assert not any(len(values) >= 768 for values in lists_in(report))
    shown = train(pima_csv, "--model", "logistic")
    assert "Metrics on out-of-fold predictions of 3-fold cross-validation (768 rows)" in (
        " ".join(shown.output.split())
    )


def test_bootstrap_shows_the_optimism_beside_the_apparent_figures(home, pima_csv):
    result = train(pima_csv, "--model", "lightgbm", "--validation", "bootstrap")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "auroc: apparent" in text and "optimism +" in text and "corrected" in text
    report = json.loads((home / "reports").rglob("report.json").__next__().read_text())
    assert report["validation"]["method"] == "bootstrap"
    rows = {row["metric"]: row for row in report["validation"]["optimism"]}
    # The headline AUROC is the corrected one, not the apparent one.
    assert report["metrics"]["auroc"]["estimate"] == pytest.approx(rows["auroc"]["corrected"])


def test_bootstrap_on_a_table_too_small_says_why_and_registers_nothing(home, tmp_path, pima_csv):
    pima = pd.read_csv(pima_csv)
    small = pd.concat([pima[pima.Outcome == 1].head(12), pima[pima.Outcome == 0].head(60)])
    small.to_csv(tmp_path / "small.csv", index=False)
    result = train(tmp_path / "small.csv", "--validation", "bootstrap")
    assert result.exit_code == EXIT_CODES[DataError], result.output
    assert "too small to bootstrap (--validation bootstrap)" in " ".join(result.output.split())
    assert "use --validation cv" in " ".join(result.output.split())
    assert "Traceback" not in result.output and registered(home) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "must be more than 0 seconds"), ("0.000001", "too short to fit any model")],
)
def test_a_time_limit_that_cannot_work_is_one_line_and_registers_nothing(
    home, pima_csv, value, message
):
    result = train(pima_csv, "--time-limit", value)
    assert result.exit_code == EXIT_CODES[ConfigError], result.output
    assert message in result.output and "--time-limit" in result.output
    assert "Traceback" not in result.output and registered(home) == []


def test_an_unknown_validation_method_names_the_choices(home, pima_csv):
    result = train(pima_csv, "--validation", "loo")
    assert result.exit_code == EXIT_CODES[ConfigError], result.output
    assert "unknown validation method 'loo' (--validation)" in result.output
    assert registered(home) == []
