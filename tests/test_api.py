"""The Python API (`medserve.train`, `medserve.load`, `Model`): DataFrames in and out, over
the same flows as the CLI, so it scores, explains and refuses exactly as `medserve predict`
does, and records a DataFrame's lineage by a stable fingerprint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logit
from typer.testing import CliRunner

import medserve
from medserve.cli import app
from medserve.cli._common import cli_option
from medserve.config import Settings
from medserve.data.io import frame_sha256
from medserve.errors import ConfigError, DataError, ModelNotFound, SchemaError
from medserve.flows import evaluate_stored, predict_file

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TRAIN_OPTIONS = {"target": "num", "positive_if": ">0", "model": "logistic", "cv": 3}


@pytest.fixture(scope="module")
def heart(heart_csv) -> pd.DataFrame:
    return pd.read_csv(heart_csv)


@pytest.fixture(scope="module")
def derivation(heart) -> pd.DataFrame:
    """Cleveland and Hungary, as the README's external-validation example."""
    return heart[heart.dataset.isin(["Cleveland", "Hungary"])]


@pytest.fixture(scope="module")
def va(heart) -> pd.DataFrame:
    """VA Long Beach, indexed by a patient code so that an index is not a row position."""
    rows = heart[heart.dataset == "VA Long Beach"]
    return rows.set_axis([f"va-{i}" for i in range(len(rows))])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, derivation) -> medserve.api.Model:
    home = tmp_path_factory.mktemp("api") / "home"
    return medserve.train(derivation, name="heart", ignore=["dataset"], home=home, **TRAIN_OPTIONS)


@pytest.fixture(scope="module")
def home(trained):
    return trained._settings.home


def test_train_from_a_dataframe_registers_a_version_with_its_lineage(trained, derivation):
    assert (trained.name, trained.version, trained.ref) == ("heart", 1, "heart:1")
    assert trained.family == "logistic"
    assert trained.outcome == "num > 0"
    assert trained.lineage["data_file"] == "DataFrame"
    assert trained.lineage["data_sha256"] == frame_sha256(derivation)
    assert "dataset" not in trained.features and "age" in trained.features
    auroc = trained.metrics["auroc"]
    assert auroc.ci95[0] <= auroc.estimate <= auroc.ci95[1]
    report = json.loads(trained.report_path.read_text())
    assert report["data"]["source"] == "DataFrame"
    assert report["data"]["sha256"] == frame_sha256(derivation)
    assert trained.training is not None and trained.training.n_train == len(derivation)
    assert trained.training.validation.method == "cv"  # every row fits the final model


def test_the_same_frame_trains_to_the_same_fingerprint_and_another_frame_does_not(
    tmp_path, derivation
):
    options = {**TRAIN_OPTIONS, "ignore": ["dataset"], "home": tmp_path}
    first = medserve.train(derivation, name="twice", **options)
    second = medserve.train(derivation.copy(), name="twice", **options)
    assert second.version == 2
    assert first.lineage["data_sha256"] == second.lineage["data_sha256"]
    changed = derivation.copy()
    changed.iloc[0, changed.columns.get_loc("age")] += 1
    assert frame_sha256(changed) != frame_sha256(derivation)
    assert frame_sha256(derivation.set_axis(derivation.index + 1000)) != frame_sha256(derivation)


def test_the_fingerprint_is_the_same_in_another_interpreter(heart_csv):
    code = (
        "import sys, pandas as pd; from medserve.data.io import frame_sha256; "
        "print(frame_sha256(pd.read_csv(sys.argv[1])))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, str(heart_csv)], capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == frame_sha256(pd.read_csv(heart_csv))


def test_a_source_name_names_the_data_and_the_model(tmp_path, derivation):
    model = medserve.train(
        derivation, source_name="Cleveland+Hungary 2024", home=tmp_path, **TRAIN_OPTIONS
    )
    assert model.name == "cleveland-hungary-2024"
    assert model.lineage["data_file"] == "Cleveland+Hungary 2024"


def test_a_dataframe_without_a_name_is_refused_before_training(tmp_path, derivation):
    with pytest.raises(ConfigError, match="give the 'name' option"):
        medserve.train(derivation, home=tmp_path, **TRAIN_OPTIONS)


def test_load_returns_the_registered_version(trained, home):
    model = medserve.load("heart", home=home)
    assert model.ref == trained.ref
    assert model.threshold == trained.threshold
    assert "heart:1" in repr(model)
    with pytest.raises(ModelNotFound):
        medserve.load("no-such-model", home=home)


def test_predict_keeps_the_index_and_equals_what_the_cli_writes(trained, home, va, tmp_path):
    rows = va.iloc[::7]
    scored = trained.predict(rows)
    assert list(scored.columns) == ["risk", "label", "risk_band"]
    assert scored.index.equals(rows.index)
    assert scored.risk.between(0, 1).all()
    assert (scored.label == (scored.risk >= trained.threshold).astype(int)).all()
    assert set(scored.risk_band) <= {"low", "moderate", "high"}
    np.testing.assert_array_equal(trained.predict_risk(rows), scored.risk.to_numpy())

    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = runner.invoke(
        app,
        ["predict", "heart", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "cli.csv")],
        env={"MEDSERVE_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    cli = pd.read_csv(tmp_path / "cli.csv")
    np.testing.assert_allclose(cli.risk, scored.risk, atol=5e-7)
    np.testing.assert_array_equal(cli.label, scored.label)


def test_batch_predict_flow_takes_a_dataframe_as_it_takes_the_file(home, va, tmp_path):
    rows = va.head(20)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    settings = Settings(home=home)
    predict_file(settings, "heart", tmp_path / "rows.csv", tmp_path / "from-file.csv")
    predict_file(settings, "heart", rows, tmp_path / "from-frame.csv")
    from_file = pd.read_csv(tmp_path / "from-file.csv")
    from_frame = pd.read_csv(tmp_path / "from-frame.csv")
    np.testing.assert_allclose(from_frame.risk, from_file.risk, atol=1e-12)
    np.testing.assert_array_equal(from_frame.label, from_file.label)


def test_explain_takes_each_risk_apart_as_the_cli_does(trained, home, va, tmp_path):
    rows = va.head(12)
    explanation = trained.explain(rows)
    assert len(explanation) == len(rows)
    assert explanation.space == "log-odds"
    assert list(explanation.contributions.columns) == trained.features
    assert explanation.contributions.index.equals(rows.index)
    np.testing.assert_allclose(explanation.log_odds, logit(explanation.risk), atol=1e-6)
    np.testing.assert_allclose(explanation.risk, trained.predict(rows).risk, atol=1e-12)

    rows.to_csv(tmp_path / "rows.csv", index=False)
    predict_file(
        Settings(home=home), "heart", tmp_path / "rows.csv", tmp_path / "out.csv", explain=True
    )
    cli = pd.read_csv(tmp_path / "out.csv")
    # the sentence shows values as given: the file's "3.0" where the frame holds 3
    as_read = trained.explain(tmp_path / "rows.csv")
    assert cli.explanation_summary.tolist() == as_read.summary.tolist()
    assert cli.risk_band.tolist() == explanation.risk_band.tolist()
    first = json.loads(cli.explanation[0])
    record = explanation.records()[0]
    assert record["base_value"] == pytest.approx(first["base_value"])
    assert record["contributions"] == pytest.approx(first["contributions"])


def test_evaluate_on_another_hospital_returns_metrics_with_intervals(trained, va):
    outcome = trained.evaluate(va, target="num", source_name="VA Long Beach")
    assert outcome.n_rows == len(va)
    assert 0 < outcome.n_events < outcome.n_rows
    for name in ("auroc", "brier", "calibration_slope"):
        metric = outcome.metrics[name]
        assert metric.ci95[0] <= metric.estimate <= metric.ci95[1], name
    report = json.loads(open(outcome.report_path).read())
    assert report["data"]["source"] == "VA Long Beach"
    assert report["data"]["sha256"] == frame_sha256(va)


def test_evaluation_of_a_frame_equals_that_of_its_file(home, va, tmp_path):
    va.to_csv(tmp_path / "va.csv", index=False)
    settings = Settings(home=home)
    from_file = evaluate_stored(settings, "heart", tmp_path / "va.csv")
    from_frame = evaluate_stored(settings, "heart", pd.read_csv(tmp_path / "va.csv"))
    for name, metric in from_file.metrics.items():
        assert from_frame.metrics[name].estimate == pytest.approx(metric.estimate, nan_ok=True)


def test_an_unseen_level_is_refused_with_the_error_the_cli_shows(trained, home, va, tmp_path):
    rows = va.head(5).copy()
    rows.iloc[2, rows.columns.get_loc("cp")] = "telepathic angina"
    with pytest.raises(SchemaError) as raised:
        trained.predict(rows)
    assert "column 'cp' row 3" in raised.value.message
    assert "the 'score_unseen_levels' option" in raised.value.message
    with pytest.raises(SchemaError) as in_explain:
        trained.explain(rows)
    assert in_explain.value.message == raised.value.message

    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = runner.invoke(
        app,
        ["predict", "heart", str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv")],
        env={"MEDSERVE_HOME": str(home), "COLUMNS": "10000"},
    )
    assert result.exit_code == 2
    assert raised.value.render(cli_option) in result.output

    scored = trained.predict(rows, score_unseen_levels=True)
    assert scored.risk.between(0, 1).all()
    summary = trained.explain(rows, score_unseen_levels=True).summary.iloc[2]
    assert "cp = " not in summary or "cp = telepathic angina (not seen in training)" in summary


def test_a_missing_column_is_a_readable_schema_error(trained, va):
    with pytest.raises(SchemaError, match=r"missing column\(s\) 'age'; the model needs age"):
        trained.predict(va.drop(columns=["age"]))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pd.DataFrame({0: [1.0], 1: [2.0]}), "column names must be text"),
        (pd.DataFrame({"age": []}), "has column names but no rows"),
        ({"age": 63}, "expected a pandas DataFrame or a file path, got dict"),
    ],
)
def test_unusable_input_is_a_data_error(trained, data, message):
    with pytest.raises(DataError, match=message):
        trained.predict(data)


def test_import_medserve_is_light_and_its_api_loads_on_first_use():
    code = (
        "import json, sys, medserve\n"
        "heavy = ('pandas', 'numpy', 'sklearn', 'scipy', 'sqlalchemy', 'medserve.api')\n"
        "before = [m for m in heavy if m in sys.modules]\n"
        "train = medserve.train\n"
        "print(json.dumps({'before': before, 'after': 'medserve.api' in sys.modules,\n"
        "                  'same': train is sys.modules['medserve.api'].train,\n"
        "                  'all': sorted(medserve.__all__)}))\n"
    )
    answer = json.loads(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    assert answer["before"] == []
    assert answer["after"] and answer["same"]
    assert {"train", "load", "Model", "MedserveError"} <= set(answer["all"])
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        medserve.nonsense  # noqa: B018


def test_the_readme_python_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python\n", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    environment = {**os.environ, "MEDSERVE_HOME": str(tmp_path / "home")}
    environment.pop("MEDSERVE_DATABASE_URL", None)
    ran = subprocess.run(
        [sys.executable, "-c", example], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    assert ran.returncode == 0, ran.stderr
    assert "<medserve.Model heart-py:1 (logistic, production): risk of num > 0" in ran.stdout
    assert "Raised most by" in ran.stdout


def test_scoring_and_explaining_frames_are_audited_as_the_cli_is(tmp_path, derivation, va):
    """Patients' records scored in a notebook are in the same trail as `medserve predict`:
    who, which model, how many; never a value."""
    from test_cli_models import audit_records

    home = tmp_path / "home"
    model = medserve.train(derivation, name="heart", ignore=["dataset"], home=home, **TRAIN_OPTIONS)
    model.predict(va.head(7))
    model.explain(va.head(3))
    records = audit_records(home)
    assert [(r["route"], r["method"], r["model"], r["n_records"]) for r in records] == [
        ("python predict", "PYTHON", "heart", 7),
        ("python explain", "PYTHON", "heart", 3),
    ]


def test_no_answer_when_the_audit_trail_cannot_be_written(tmp_path, derivation, va, monkeypatch):
    from medserve.security.audit import AuditLog

    model = medserve.train(
        derivation, name="heart", ignore=["dataset"], home=tmp_path / "home", **TRAIN_OPTIONS
    )

    def refuse(self, entry):
        raise OSError("disk full")

    monkeypatch.setattr(AuditLog, "append", refuse)
    with pytest.raises(medserve.RegistryError, match=r"could not be written \(disk full\)"):
        model.predict(va.head(2))


def test_evaluating_a_frame_is_audited_as_the_cli_is(trained, home, va):
    from test_cli_models import audit_records

    def evaluations() -> list[tuple]:
        return [
            (r["method"], r["model"], r["model_version"], r["n_records"])
            for r in audit_records(home)
            if r["route"] == "python evaluate"
        ]

    before = evaluations()
    outcome = trained.evaluate(va, target="num")
    assert evaluations() == [*before, ("PYTHON", "heart", 1, outcome.n_rows)]


def test_no_evaluation_report_when_the_audit_trail_cannot_be_written(
    trained, home, va, monkeypatch
):
    from medserve.security.audit import AuditLog

    def refuse(self, entry):
        raise OSError("disk full")

    reports = home / "reports/heart/v1"
    before = sorted(reports.glob("evaluation-*"))
    monkeypatch.setattr(AuditLog, "append", refuse)
    with pytest.raises(medserve.RegistryError, match=r"could not be written \(disk full\)"):
        trained.evaluate(va, target="num")
    assert sorted(reports.glob("evaluation-*")) == before
