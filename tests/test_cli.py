"""The command line as a new user meets it: real data, a real registry, real exit codes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from typer.testing import CliRunner

from deid.test_cli_deid import FORMULA_PAYLOADS
from medserve.cli import app
from support.reports import files_under

runner = CliRunner()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def run_json(*args: str) -> dict:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_clean_failure(result, message: str, code: int | None = None) -> None:
    assert result.exit_code != 0
    if code is not None:
        assert result.exit_code == code
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def train_heart_args(heart_csv) -> tuple:
    """`medserve train` of the bundled heart data as the module's stored model `heart`."""
    options = ("--target", "num", "--positive-if", ">0", "--model", "logistic", "--cv", "3")
    return ("train", heart_csv, *options, "--name", "heart")


@pytest.fixture(scope="module")
def trained_heart(tmp_path_factory, heart_csv):
    """Trained once for the module; each test gets its own copy of the home."""
    home = tmp_path_factory.mktemp("trained") / "home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        patch.delenv("MEDSERVE_DATABASE_URL", raising=False)
        payload = run_json(*train_heart_args(heart_csv))
    return home, payload


@pytest.fixture
def heart_model(trained_heart, home):
    source, payload = trained_heart
    shutil.copytree(source, home)
    return {**payload, "report": payload["report"].replace(str(source), str(home))}


METRICS = {
    "auroc",
    "auprc",
    "brier",
    "accuracy",
    "sensitivity",
    "specificity",
    "ppv",
    "npv",
    "f1",
    "calibration_slope",
    "calibration_intercept",
}


def test_train_json_has_the_documented_shape(heart_model, home):
    assert heart_model["model"] == "heart"
    assert heart_model["version"] == 1
    assert heart_model["family"] == "logistic"
    assert 0 < heart_model["threshold"] < 1
    assert set(heart_model["metrics"]) == METRICS
    auroc = heart_model["metrics"]["auroc"]
    assert auroc["ci95"][0] <= auroc["estimate"] <= auroc["ci95"][1]
    assert auroc["estimate"] > 0.8
    assert heart_model["n_train"] + heart_model["n_test"] == 920
    assert json.loads(open(heart_model["report"]).read())["data"]["rows"] == 920


def test_versions_increment_and_models_list_and_show(heart_model, heart_csv):
    second = run_json(
        "train",
        heart_csv,
        "--target",
        "num",
        "--positive-if",
        ">0",
        "--model",
        "lightgbm",
        "--cv",
        "3",
        "--name",
        "heart",
    )
    assert second["version"] == 2
    listed = run_json("models", "list")["models"]
    assert [(m["model"], m["version"], m["stage"]) for m in listed] == [
        ("heart", 1, "production"),
        ("heart", 2, "candidate"),
    ]
    # Lean: one line of facts per version (its schema and lineage are in `models show`).
    assert {m["outcome"] for m in listed} == {"num > 0"}
    assert all("schema" not in m and "lineage" not in m for m in listed)
    shown = run_json("models", "show", "heart:2")
    assert shown["family"] == "lightgbm"
    assert shown["lineage"]["libraries"]["scikit-learn"]
    assert len(shown["data_sha256"]) == 64
    assert run_json("models", "show", "heart")["version"] == 1  # production wins
    table = run("models", "list")
    assert table.exit_code == 0 and "heart" in table.output


def test_human_output_shows_leaderboard_metrics_and_paths(home, pima_csv):
    result = run("train", pima_csv, "--target", "Outcome", "--model", "lightgbm", "--cv", "3")
    assert result.exit_code == 0, result.output
    for text in (
        "Cross-validation leaderboard",
        "selected",
        "auroc",
        "Registered",
        "pima-diabetes:1",
        "report:",
        "0 treated as missing",
        "outcome: Outcome = 1 (the event)",
    ):
        assert text in result.output


def test_predict_adds_risk_and_label_and_keeps_extra_columns(heart_model, heart_csv, tmp_path):
    rows = pd.read_csv(heart_csv).head(25).drop(columns=["num"]).assign(ward="B2")
    rows.loc[3, "cp"] = "never seen before"
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = run(
        "predict",
        "heart",
        tmp_path / "new.csv",
        "-o",
        tmp_path / "scored.csv",
        "--score-unseen-levels",
    )
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert list(scored.columns[-2:]) == ["risk", "label"]
    assert (scored["ward"] == "B2").all() and len(scored) == 25
    assert scored["risk"].between(0, 1).all()
    expected = (scored["risk"] >= heart_model["threshold"] - 1e-6).astype(int)
    assert (scored["label"] == expected).all()


def test_predict_explain_adds_summary_and_additive_contributions(heart_model, heart_csv, tmp_path):
    rows = pd.read_csv(heart_csv).head(30).drop(columns=["num"])
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = run("predict", "heart", tmp_path / "new.csv", "-o", tmp_path / "x.csv", "--explain")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(tmp_path / "x.csv")
    assert list(scored.columns[-5:]) == [
        "risk",
        "label",
        "risk_band",
        "explanation_summary",
        "explanation",
    ]
    for _, row in scored.iterrows():
        explanation = json.loads(row["explanation"])
        assert explanation["space"] == "log-odds"
        assert "id" not in explanation["contributions"]  # identifiers are not model inputs
        total = explanation["base_value"] + sum(explanation["contributions"].values())
        assert abs(expit(total) - row["risk"]) <= 5e-7  # risk is written rounded to 6 places
        assert row["explanation_summary"].startswith(f"Risk {row['risk']:.2f} ({row['risk_band']})")


def test_predict_refuses_an_unseen_level_as_the_http_api_does(heart_model, heart_csv, tmp_path):
    rows = pd.read_csv(heart_csv).head(10).drop(columns=["num"])
    rows.loc[4, "cp"] = "never seen before"
    rows.loc[7, "cp"] = " ASYMPTOMATIC "  # a known level in another case and spacing is fine
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = run("predict", "heart", tmp_path / "new.csv", "-o", tmp_path / "out.csv")
    assert_clean_failure(
        result,
        "column 'cp' row 5: 'never seen before' is not a level seen in training; expected "
        "one of 'asymptomatic', 'atypical angina'",
        code=2,
    )
    assert "--score-unseen-levels" in result.output
    assert not (tmp_path / "out.csv").exists()
    option = run(
        "predict",
        "heart",
        tmp_path / "new.csv",
        "-o",
        tmp_path / "out.csv",
        "--score-unseen-levels",
        "--explain",
    )
    assert option.exit_code == 0, option.output
    scored = pd.read_csv(tmp_path / "out.csv")
    assert scored["risk"].between(0, 1).all() and len(scored) == 10


def test_predict_names_column_and_row_of_text_in_numbers(heart_model, heart_csv, tmp_path):
    rows = pd.read_csv(heart_csv).head(10)
    rows["age"] = rows["age"].astype(str)
    rows.loc[6, "age"] = "sixty"
    rows.to_csv(tmp_path / "bad.csv", index=False)
    result = run("predict", "heart", tmp_path / "bad.csv", "-o", tmp_path / "out.csv")
    assert_clean_failure(result, "column 'age' row 7: 'sixty' is not a number")
    assert not (tmp_path / "out.csv").exists()


def test_external_validation_readme_example(home, heart_csv, tmp_path):
    heart = pd.read_csv(heart_csv)
    heart[heart.dataset.isin(["Cleveland", "Hungary"])].to_csv(
        tmp_path / "derivation.csv", index=False
    )
    heart[heart.dataset == "VA Long Beach"].to_csv(tmp_path / "va.csv", index=False)
    trained = run_json(
        "train",
        tmp_path / "derivation.csv",
        "--target",
        "num",
        "--positive-if",
        ">0",
        "--ignore",
        "dataset",
        "--name",
        "heart-ch",
    )
    validated = run_json("evaluate", "heart-ch", tmp_path / "va.csv")
    assert validated["n_rows"] == 200
    assert set(validated["metrics"]) == METRICS
    assert 0.5 < validated["metrics"]["auroc"]["estimate"] < trained["metrics"]["auroc"]["estimate"]
    assert json.loads(open(validated["report"]).read())["kind"] == "external validation"


def test_evaluate_says_which_levels_training_never_saw(home, heart_csv, tmp_path):
    """External data often holds levels the derivation data did not (here: the hospital).
    They are scored as no known level, and the result and report say so."""
    heart = pd.read_csv(heart_csv)
    heart[heart.dataset.isin(["Cleveland", "Hungary"])].to_csv(tmp_path / "dev.csv", index=False)
    heart[heart.dataset == "VA Long Beach"].to_csv(tmp_path / "va.csv", index=False)
    run_json(
        "train", tmp_path / "dev.csv", "--target", "num", "--positive-if", ">0",
        "--model", "logistic", "--cv", "3", "--name", "heart-ch",
    )  # fmt: skip
    validated = run_json("evaluate", "heart-ch", tmp_path / "va.csv")
    said = [n for n in validated["notices"] if "never seen in training" in n]
    assert said and "'dataset' in 200 rows" in said[0], validated["notices"]
    stored = json.loads(open(validated["report"]).read())
    assert any("'dataset' in 200 rows" in n for n in stored["notices"]), stored["notices"]


def test_npy_trains_without_target(home, tmp_path, pima_csv):
    data = pd.read_csv(pima_csv).to_numpy(dtype=float)
    np.save(tmp_path / "medical_data.npy", data)
    payload = run_json("train", tmp_path / "medical_data.npy", "--model", "logistic")
    assert payload["model"] == "medical-data"
    assert payload["metrics"]["auroc"]["estimate"] > 0.75


def test_parquet_trains(home, tmp_path, pima_csv):
    pd.read_csv(pima_csv).to_parquet(tmp_path / "pima.parquet")
    payload = run_json(
        "train",
        tmp_path / "pima.parquet",
        "--target",
        "Outcome",
        "--model",
        "lightgbm",
        "--cv",
        "3",
    )
    assert payload["family"] == "lightgbm" and payload["metrics"]["auroc"]["estimate"] > 0.75


def test_threshold_for_sensitivity(home, pima_csv):
    payload = run_json(
        "train",
        pima_csv,
        "--target",
        "Outcome",
        "--model",
        "logistic",
        "--threshold-for",
        "sensitivity=0.90",
    )
    assert payload["metrics"]["sensitivity"]["estimate"] > 0.8


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["missing.csv", "--target", "y"], "no such file"),
        ("x", ["data.xlsx", "--target", "y"], "unsupported file type '.xlsx'"),
        ("", ["empty.csv", "--target", "y"], "the file is empty"),
        ("a,b,y\n", ["header.csv", "--target", "y"], "has column names but no rows"),
        ("a,y\n1,0\n2,0\n", ["oneclass.csv", "--target", "y"], "only one class"),
        (
            "a,y\n1,0\n",
            ["notarget.csv", "--target", "outcome"],
            "target column 'outcome' not found",
        ),
        ("a,y\n1,0\n2,1\n3,2\n", ["three.csv", "--target", "y"], "--positive-if"),
    ],
)
def test_bad_training_input_gives_one_clear_line(home, tmp_path, make, args, message):
    if make is not None:
        (tmp_path / args[0]).write_text(make)
    result = run("train", tmp_path / args[0], *args[1:])
    assert_clean_failure(result, message)


def test_entirely_missing_feature_and_too_few_events(home, tmp_path, heart_csv):
    heart = pd.read_csv(heart_csv).assign(troponin=np.nan)
    heart.to_csv(tmp_path / "h.csv", index=False)
    result = run("train", tmp_path / "h.csv", "--target", "num", "--positive-if", ">0")
    assert_clean_failure(result, "'troponin' are missing in every row")
    few = pd.concat([heart[heart.num == 0], heart[heart.num > 0].head(5)])
    few.drop(columns="troponin").to_csv(tmp_path / "few.csv", index=False)
    result = run("train", tmp_path / "few.csv", "--target", "num", "--positive-if", ">0")
    assert_clean_failure(result, "only 5 rows in the smaller outcome class")


def test_unknown_model_and_version(heart_model, heart_csv, tmp_path):
    assert_clean_failure(run("models", "show", "nope"), "no model named 'nope'", code=3)
    assert_clean_failure(run("models", "show", "heart:9"), "heart", code=3)
    result = run("predict", "nope", heart_csv, "-o", tmp_path / "o.csv")
    assert_clean_failure(result, "no model named 'nope'", code=3)


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def interrupt_once_written(path, data, **kwargs):
    """The file lands whole, then the process is interrupted."""
    from medserve.core.files import write_file_atomic

    write_file_atomic(path, data, **kwargs)
    raise KeyboardInterrupt


def refuse_new_rows(home) -> None:
    """The database itself refuses the row (as a full disk or a broken constraint would)."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(home / "medserve.db")) as database, database:
        database.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON model_versions "
            "BEGIN SELECT RAISE(ABORT, 'no room for the row'); END"
        )


@pytest.mark.parametrize(
    ("crash", "code"),
    [
        # The artifact is written; the row's transaction has not started.
        (("medserve.storage.registry.lock_for_write", interrupt), 130),
        # The version is claimed, the database refuses the row.
        ("refuse the row", 5),
        # Inside the row's transaction, while the JSON report is written.
        (("medserve.storage.registry.write_file_atomic", interrupt), 130),
        # Inside the row's transaction, the JSON report lands, then the process stops.
        (("medserve.storage.registry.write_file_atomic", interrupt_once_written), 130),
        # The report's page is rendered before registration.
        (("medserve.flows.register.render_html", interrupt), 130),
    ],
    ids=["after-artifact", "during-row", "during-json-report", "json-report-landed", "page"],
)
def test_crash_mid_training_leaves_registry_as_it_was(
    heart_model, heart_csv, home, monkeypatch, crash, code
):
    artifacts_before = files_under(home / "artifacts")
    reports_before = files_under(home / "reports")
    with monkeypatch.context() as patch:
        if crash == "refuse the row":
            refuse_new_rows(home)
        else:
            patch.setattr(*crash)
        result = run(*train_heart_args(heart_csv))
        assert result.exit_code == code, result.output
    listed = run_json("models", "list")["models"]
    assert [(m["model"], m["version"]) for m in listed] == [("heart", 1)]
    assert files_under(home / "artifacts") == artifacts_before
    assert files_under(home / "reports") == reports_before


def test_schema_command_writes_an_override_file_train_accepts(home, heart_csv, tmp_path):
    result = run(
        "schema", heart_csv, "--target", "num", "--positive-if", ">0", "-o", tmp_path / "heart.yaml"
    )
    assert result.exit_code == 0, result.output
    text = (
        (tmp_path / "heart.yaml")
        .read_text()
        .replace(
            "dataset:\n    type: categorical\n    role: feature",
            "dataset:\n    type: categorical\n    role: group",
        )
    )
    (tmp_path / "heart.yaml").write_text(text)
    payload = run_json(
        "train", heart_csv, "--schema", tmp_path / "heart.yaml", "--model", "logistic", "--cv", "3"
    )
    shown = run_json("models", "show", payload["model"])
    roles = {c["name"]: c["role"] for c in shown["schema"]["columns"]}
    assert roles["dataset"] == "group"


@pytest.mark.parametrize("payload", FORMULA_PAYLOADS)
def test_predict_output_cells_that_a_spreadsheet_would_run_are_made_inert(
    heart_model, heart_csv, tmp_path, payload
):
    rows = pd.read_csv(heart_csv).head(4).drop(columns=["num"])
    rows = rows.assign(ward=["B2", payload, "B2", "B2"], delta=["-5", "+2.5", "-1e3", "42"])
    rows.to_csv(tmp_path / "new.csv", index=False, lineterminator="\r\n")  # CR cell quoted
    result = run("predict", "heart", tmp_path / "new.csv", "-o", tmp_path / "scored.csv")
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(tmp_path / "scored.csv", dtype=str, keep_default_na=False)
    assert scored["ward"].tolist() == ["B2", "'" + payload, "B2", "B2"]  # one row each
    assert scored["delta"].tolist() == ["-5", "+2.5", "-1e3", "42"]
    assert pd.to_numeric(scored["risk"]).between(0, 1).all()
    raw = run("predict", "heart", tmp_path / "new.csv", "-o", tmp_path / "raw.csv", "--raw-cells")
    assert raw.exit_code == 0, raw.output
    raw_cells = pd.read_csv(tmp_path / "raw.csv", dtype=str, keep_default_na=False)
    assert raw_cells["ward"].tolist() == ["B2", payload, "B2", "B2"]
