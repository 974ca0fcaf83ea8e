"""`medserve models import NAME --onnx FILE|--transformers DIR --schema FILE`: a model
trained elsewhere registered from the command line, then scored and shown like any other."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from support.imported_models import formula_risk, logistic_onnx, tiny_bert
from test_cli import assert_clean_failure, run, run_json

BACKGROUND = [{"age": 30 + 5 * i, "bmi": 20 + i} for i in range(8)]


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return tmp_path / "home"


@pytest.fixture
def onnx_files(tmp_path):
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "columns": {"age": {"type": "numeric", "min": 0, "max": 120}, "bmi": "numeric"},
                "target": "outcome",
                "output": {"name": "risk"},
                "background": BACKGROUND,
            }
        )
    )
    return logistic_onnx(tmp_path / "model.onnx"), schema


def test_onnx_import_then_predict_then_show(home, tmp_path, onnx_files):
    onnx_file, schema = onnx_files
    result = run("models", "import", "bmi-risk", "--onnx", onnx_file, "--schema", schema)
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert "registered bmi-risk:1 (onnx, stage " in result.stdout
    assert f"from {onnx_file}" in result.stdout.replace("\n", "")
    assert f"sha256 {digest}" in result.stdout.replace("\n", "")
    records = pd.DataFrame({"age": [25.0, 60.0, 85.0], "bmi": [21.0, 33.0, 40.0]})
    records.to_csv(tmp_path / "records.csv", index=False)
    out = tmp_path / "out.csv"
    predicted = run("predict", "bmi-risk", tmp_path / "records.csv", "-o", out)
    assert predicted.exit_code == 0, predicted.output
    np.testing.assert_allclose(
        pd.read_csv(out)["risk"], formula_risk(records.age, records.bmi), atol=1e-6
    )
    shown = run("models", "show", "bmi-risk")
    assert shown.exit_code == 0, shown.output
    assert "outcome: outcome = 1" in shown.stdout and "onnxruntime" in shown.stdout
    described = run_json("models", "show", "bmi-risk")
    assert (described["family"], described["version"]) == ("onnx", 1)
    assert described["lineage"]["imported_files"][0]["sha256"] == digest


def test_import_json_names_the_version_its_files_and_notices(home, onnx_files):
    onnx_file, schema = onnx_files
    payload = run_json("models", "import", "bmi-risk", "--onnx", onnx_file, "--schema", schema)
    assert (payload["ref"], payload["family"]) == ("bmi-risk:1", "onnx")
    assert payload["stage"] == "production"  # a new name
    assert payload["files"][0]["name"] == "model.onnx"
    assert any("threshold is 0.5" in notice for notice in payload["notices"])


def test_transformers_import_from_the_command_line(home, tmp_path):
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  note: {type: text}\ntarget: outcome\nthreshold: 0.4\n")
    folder = tiny_bert(tmp_path / "bert")
    result = run("models", "import", "notes-risk", "--transformers", folder, "--schema", schema)
    assert result.exit_code == 0, result.output
    assert "registered notes-risk:1 (transformers, stage " in result.stdout
    pd.DataFrame({"note": ["chest pain . troponin elevated ."]}).to_csv(
        tmp_path / "notes.csv", index=False
    )
    predicted = run("predict", "notes-risk", tmp_path / "notes.csv", "-o", tmp_path / "out.csv")
    assert predicted.exit_code == 0, predicted.output
    assert 0 < pd.read_csv(tmp_path / "out.csv")["risk"][0] < 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--transformers", "bert"), "give either --onnx FILE or --transformers DIR, not both"),
        (("--name", "other"), "--name is for bundles"),
    ],
)
def test_conflicting_options_are_one_line_usage_errors(home, onnx_files, extra, message):
    onnx_file, schema = onnx_files
    result = run("models", "import", "bmi-risk", "--onnx", onnx_file, "--schema", schema, *extra)
    assert_clean_failure(result, message, code=2)
    assert run_json("models", "list")["models"] == []


def test_missing_schema_is_a_one_line_usage_error(home, onnx_files):
    onnx_file, _ = onnx_files
    result = run("models", "import", "bmi-risk", "--onnx", onnx_file)
    assert_clean_failure(result, "add --schema FILE", code=2)
    assert run_json("models", "list")["models"] == []


def test_an_imported_model_is_not_exported_without_its_weights(home, tmp_path, onnx_files):
    onnx_file, schema = onnx_files
    run_json("models", "import", "bmi-risk", "--onnx", onnx_file, "--schema", schema)
    secret = tmp_path / "passphrase"
    secret.write_text("a long enough passphrase")
    secret.chmod(0o600)
    bundle = tmp_path / "bmi.bundle"
    result = run("models", "export", "bmi-risk:1", "-o", bundle, "--passphrase-file", secret)
    assert_clean_failure(result, "was imported from model files (onnx); a bundle does not carry")
    assert not bundle.exists()
