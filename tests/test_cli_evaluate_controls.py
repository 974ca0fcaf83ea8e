"""`medserve evaluate --positive/--positive-if`, `--strict`, its side-by-side account and
its audit record, as a user meets them."""

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
    assert set(payload["comparison"]) == {"development", "external", "warnings"}
    shown = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes"])
    assert shown.exit_code == 0, shown.output
    assert "development" in shown.stdout and "calibration_intercept" in shown.stdout


def evaluation_reports(coded) -> list:
    return sorted((coded.parent / "home/reports/heart/v1").glob("evaluation-*"))


def test_evaluate_leaves_one_audit_record_without_values(coded):
    from test_cli_models import audit_records

    result = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes", "--json"])
    assert result.exit_code == 0, result.output
    (record,) = audit_records(coded.parent / "home")
    assert (record["route"], record["method"], record["model"], record["model_version"]) == (
        "cli evaluate",
        "CLI",
        "heart",
        1,
    )
    assert record["n_records"] == json.loads(result.stdout)["n_rows"] == 920


def test_no_report_when_the_audit_trail_cannot_be_written(coded):
    """An audit head that fails its check cannot be extended: the command fails in one
    line and writes no report (fail closed)."""
    from sqlalchemy import text

    from medserve.config import Settings
    from medserve.security.local_audit import record_local_action
    from medserve.storage import Registry

    settings = Settings(home=coded.parent / "home")
    with Registry(settings) as registry:
        record_local_action(settings, registry.engine, "models show", registry.get("heart"))
        with registry.engine.begin() as connection:
            connection.execute(text("UPDATE audit_head SET mac = :mac"), {"mac": "0" * 64})
    result = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes"])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "audit head fails its MAC check" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert evaluation_reports(coded) == []


def test_strict_refuses_a_file_the_http_api_would_refuse_in_one_line(coded):
    site = pd.read_csv(coded)
    site.loc[4, "cp"] = "telepathic angina"
    site.to_csv(coded, index=False)
    result = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes", "--strict"])
    assert result.exit_code == 2, result.output
    assert "column 'cp' row 5: " in result.output and "--strict" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert evaluation_reports(coded) == []

    lenient = runner.invoke(app, ["evaluate", "heart", str(coded), "--positive", "yes", "--json"])
    assert lenient.exit_code == 0, lenient.output
    notices = json.loads(lenient.stdout)["notices"]
    assert any(n.startswith("1 of 920 rows hold values the HTTP API refuses") for n in notices)
