"""`medserve fhir bind`: a proposal from the model's columns and a curated LOINC table,
edited by a person, then stored once it fits the model; and the clinical labels and
units a schema file gives, which explanations use."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from medserve.config import Settings
from medserve.storage import Registry
from medserve.storage.bindings import BindingStore
from test_cli import assert_clean_failure, run, run_json

SCHEMA = """\
columns:
  Glucose: {label: plasma glucose, unit: mg/dL}
  BMI: {label: body mass index, unit: kg/m2}
  Age: {label: age, unit: years}
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory, pima_csv):
    home = tmp_path_factory.mktemp("fhir-cli") / "home"
    schema = home.parent / "pima.schema.yaml"
    schema.write_text(SCHEMA)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEDSERVE_HOME", str(home))
        patch.delenv("MEDSERVE_DATABASE_URL", raising=False)
        run_json(
            "train", pima_csv, "--target", "Outcome", "--model", "logistic", "--cv", "3",
            "--name", "pima", "--schema", schema,
        )  # fmt: skip
    return home


@pytest.fixture
def in_home(home, monkeypatch):
    monkeypatch.setenv("MEDSERVE_HOME", str(home))
    monkeypatch.delenv("MEDSERVE_DATABASE_URL", raising=False)
    return home


def test_propose_edit_store(in_home, tmp_path):
    proposal = tmp_path / "pima.fhir.yaml"
    result = run("fhir", "bind", "pima", "-o", proposal, "--cds", "patient-view")
    assert result.exit_code == 0, result.output
    assert "Pregnancies" in result.stderr and "--file" in result.stderr
    document = yaml.safe_load(proposal.read_text())
    assert "http://loinc.org|2339-0" in document["features"]["Glucose"]["codes"]
    assert document["features"]["Pregnancies"] is None
    assert document["cds"]["hooks"] == ["patient-view"]
    # Nothing is stored until the person has read (and edited) it.
    with Registry(Settings(home=in_home)) as registry:
        assert BindingStore(registry.engine).get("pima", 1, "default") is None
    document["features"]["Glucose"]["lookback_days"] = 730
    proposal.write_text(yaml.safe_dump(document))
    stored = run_json("fhir", "bind", "pima", "--file", proposal)
    assert stored["version"] == 1 and "Pregnancies" in stored["unbound"]
    shown = run_json("fhir", "bind", "pima")
    assert shown["stored"] is True
    assert shown["binding"]["features"]["Glucose"]["lookback_days"] == 730


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        ("model: heart\nfeatures: {}\n", "binds model 'heart'"),
        ("model: pima\nfeatures: {Glucose: {kind: age}}\n", "leaves out"),
        ("model: pima\nfeatures: {Nope: null}\n", "does not read"),
        ("model: pima\nfeatures: {Age: {kind: agee}}\n", "features.Age"),
        ("model: [\n", "not valid YAML"),
    ],
)
def test_a_binding_that_does_not_fit_is_refused_in_one_line(in_home, tmp_path, edit, said):
    path = tmp_path / "bad.yaml"
    path.write_text(edit)
    assert_clean_failure(run("fhir", "bind", "pima", "--file", path), said, code=2)


def test_explanations_name_inputs_by_their_clinical_labels_and_units(in_home, tmp_path, pima_csv):
    rows = pd.read_csv(pima_csv).drop(columns=["Outcome"]).head(20)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    result = run("predict", "pima", tmp_path / "rows.csv", "-o", tmp_path / "out.csv", "--explain")
    assert result.exit_code == 0, result.output
    summaries = " ".join(pd.read_csv(tmp_path / "out.csv")["explanation_summary"])
    assert "plasma glucose = " in summaries and " mg/dL" in summaries
    assert "Glucose = " not in summaries


def test_a_binding_in_another_unit_than_the_model_learnt_is_refused(in_home, tmp_path):
    shown = run_json("fhir", "bind", "pima")["binding"]
    shown["features"]["Glucose"]["unit"] = "mmol/L"
    path = tmp_path / "mmol.yaml"
    path.write_text(yaml.safe_dump(shown))
    assert_clean_failure(run("fhir", "bind", "pima", "--file", path), "learnt it in mg/dL", code=2)


def test_a_site_that_is_not_the_files_is_refused(in_home, tmp_path):
    shown = run_json("fhir", "bind", "pima")["binding"]
    path = tmp_path / "default-site.yaml"
    path.write_text(yaml.safe_dump(shown))
    refused = run("fhir", "bind", "pima", "--file", path, "--site", "hospital-b")
    assert_clean_failure(refused, "site 'default', not 'hospital-b'", code=2)
    assert "--site" in refused.stderr
