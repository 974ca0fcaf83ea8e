"""`medserve predict`: scoring a file of patients is in the audit trail, and an output path
that cannot be right is refused before any work, in one line."""

from __future__ import annotations

import pytest

from test_cli import assert_clean_failure, run, run_json, train_heart_args
from test_cli_models import audit_records


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


def test_batch_scoring_leaves_one_audit_record(home, heart_csv, tmp_path):
    run_json(*train_heart_args(heart_csv))
    scored = run_json("predict", "heart", heart_csv, "-o", tmp_path / "scores.csv")
    (record,) = audit_records(home)
    assert (record["route"], record["model"], record["model_version"]) == (
        "cli predict",
        "heart",
        1,
    )
    assert record["n_records"] == scored["rows"] == 920


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("", "is a folder; name the file to write"),
        ("no/such/folder/scores.csv", "does not exist; create it first"),
        ("scores.xlsx", "cannot write '.xlsx' files here; use .parquet or .pq or .csv"),
    ],
    ids=["a-folder", "missing-folder", "unknown-format"],
)
def test_an_output_path_that_cannot_be_right_is_refused_in_one_line(
    home, heart_csv, tmp_path, output, message
):
    run_json(*train_heart_args(heart_csv))
    target = tmp_path / output if output else tmp_path
    result = run("predict", "heart", heart_csv, "-o", target)
    assert_clean_failure(result, message, code=2)
    assert not (tmp_path / "no").exists()
    assert audit_records(home) == []


@pytest.mark.parametrize("command", ["schema", "report"])
def test_schema_and_report_refuse_a_folder_or_a_missing_one(home, heart_csv, tmp_path, command):
    run_json(*train_heart_args(heart_csv))
    first = (heart_csv, "--target", "num") if command == "schema" else ("heart",)
    for target, message in ((tmp_path, "is a folder"), (tmp_path / "no/x.yaml", "create it")):
        result = run(command, *first, "-o", target)
        assert_clean_failure(result, message, code=2)


def test_an_npy_of_only_the_features_is_scored_without_a_label(home, tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 4))
    label = (features[:, 0] + rng.normal(size=200) > 0).astype(float)
    np.save(tmp_path / "train.npy", np.column_stack([features, label]))
    run_json("train", tmp_path / "train.npy", "--model", "logistic", "--cv", "3", "--name", "n")
    np.save(tmp_path / "new.npy", features[:10])
    scored = run_json("predict", "n", tmp_path / "new.npy", "-o", tmp_path / "scores.csv")
    assert scored["rows"] == 10


def test_a_database_error_on_the_audit_trail_is_one_line_and_no_scores(
    home, heart_csv, tmp_path, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from medserve.security.audit import AuditLog

    run_json(*train_heart_args(heart_csv))

    def unwritable(self, entry):
        raise OperationalError("INSERT", {}, Exception("attempt to write a readonly database"))

    monkeypatch.setattr(AuditLog, "append", unwritable)
    out = tmp_path / "scores.csv"
    result = run("predict", "heart", heart_csv, "-o", out)
    assert_clean_failure(result, "the audit record of 'cli predict' could not be written")
    assert "readonly database" in result.output
    assert not out.exists()
